"""The distributed placements: where each mode puts the agents (modes), pipeline mode's rollout rank,
genetic mode's population, elastic restarts, and where the updates run. They import the core, never a
tool."""
