"""The core: configuration, the environments and the twin, networks, the MADDPG learner, the replay buffer,
checkpoints, evaluation, the opponents and what the project ships. It imports no distributed placement and
no tool."""
