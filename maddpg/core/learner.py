"""The MADDPG algorithm, once: acting with exploration, the critic and actor updates, soft target updates."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from maddpg.core.buffer import Batch
from maddpg.core.config import ExploreConfig, MaddpgConfig
from maddpg.core.networks import StackedMLP


class Prey(Protocol):
    """A prey that does not learn (maddpg/core/prey.py, maddpg/core/scripted.py): its actions when acting, and
    the actions its critics' targets bootstrap with."""

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, n_prey, O) -> actions (B, n_prey, A) (discrete: scores whose argmax is played)."""

    def target_act(self, obs: torch.Tensor) -> torch.Tensor: ...

    def with_streams(self, generators: tuple[torch.Generator, torch.Generator]) -> Prey:
        """The same prey drawing from `generators` alone (itself when it draws nothing): an evaluation
        plays such a copy, so that it never draws from the training streams."""


def exploration_scale(initial: float, cfg: ExploreConfig, step: int) -> float:
    """Linear decay by `cfg.decay` per env transition down to the floor (never raised above `initial`)."""
    return max(min(initial, cfg.floor), initial - cfg.decay * step)


def explore(actions: torch.Tensor, epsilon: float, noise_std: float, generator: torch.Generator) -> torch.Tensor:
    """actions (..., A) in [0, 1]: per agent, with probability `epsilon` a uniform random action,
    otherwise the action plus Gaussian noise, clipped to [0, 1]."""
    device = actions.device
    noise = torch.randn(actions.shape, generator=generator, device=device)
    noisy = (actions + noise_std * noise).clamp_(0.0, 1.0)
    uniform = torch.rand(actions.shape, generator=generator, device=device)
    pick_uniform = torch.rand((*actions.shape[:-1], 1), generator=generator, device=device) < epsilon
    return torch.where(pick_uniform, uniform, noisy)


def one_hot(index: torch.Tensor, n: int) -> torch.Tensor:
    """index (...) -> float one-hot (..., n)."""
    return torch.nn.functional.one_hot(index, n).float()


def gumbel_softmax(logits: torch.Tensor, uniform: torch.Tensor, temperature: float, hard: bool) -> torch.Tensor:
    """A relaxed one-hot sample of the categorical distribution softmax(logits), from uniform draws U
    of the same shape: softmax((logits + G) / temperature), G = -log(-log U) a Gumbel sample. `hard`:
    the one-hot of its argmax forward and the relaxed sample's gradient backward (straight-through)."""
    perturbed = logits - uniform.log().neg_().log_()
    if temperature != 1.0:
        perturbed = perturbed / temperature
    # softmax by hand: torch.softmax over a last dimension of 5 took 4x as long on the CPU (measured)
    weights = (perturbed - perturbed.detach().amax(-1, keepdim=True)).exp()
    soft = weights / weights.sum(-1, keepdim=True)
    if not hard:
        return soft
    return one_hot(soft.argmax(-1), soft.shape[-1]) - soft.detach() + soft


def explore_discrete(logits: torch.Tensor, epsilon: float, generator: torch.Generator) -> torch.Tensor:
    """logits (..., A) -> one-hot actions: per agent, with probability `epsilon` a uniform random move,
    otherwise a sample of the policy (the argmax of the logits plus Gumbel noise)."""
    device, n = logits.device, logits.shape[-1]
    gumbel = torch.rand(logits.shape, generator=generator, device=device).log_().neg_().log_().neg_()
    uniform = torch.randint(n, logits.shape[:-1], generator=generator, device=device)
    pick_uniform = torch.rand(logits.shape[:-1], generator=generator, device=device) < epsilon
    return one_hot(torch.where(pick_uniform, uniform, (logits + gumbel).argmax(-1)), n)


def no_reduce(grads: list[torch.Tensor]) -> None:
    """Gradients stay as computed: one process, or ranks that own different agents."""


def identity(actions: torch.Tensor) -> torch.Tensor:
    """Every learner's actions are already here: the gather of a process that holds all agents."""
    return actions


class Maddpg:
    """Actors and centralised critics of learning agents, as one stack each.

    Learning agents are agents 0..n_learners-1 (predators first, as in mpe2); the rest are
    prey played by `prey`. Critic i sees every agent's (real-width) observation and action.

    Actions are (..., A) in [0, 1] or, with `discrete`, one-hot: the actors then output logits,
    acting samples them (argmax without exploration), and the critics see one-hot actions from the
    buffer and Gumbel-softmax samples of the (target) actors (Lowe et al. 2017; see MaddpgConfig).
    A prey's actions become the one-hot of their argmax.

    Acting explores with `generator`; the updates draw their Gumbel noise from `update_generator`, so
    that the acting stream sees the same draws whether the updates run in this process or elsewhere
    (pipeline mode's rank 0 acts while its learner ranks update).

    A distributed mode decides placement and communication only, through three arguments:
    `agents`, the learning agents whose networks this process holds (default: all);
    `gather`, which turns their actions (B, len(agents), A) into every learner's
    (B, n_learners, A) (identity when all are local); and `reduce_grads`, applied to the
    gradients between backward and the optimizer step (e.g. averaging over replicas).
    """

    def __init__(
        self,
        obs_dims: Sequence[int],
        act_dim: int,
        n_learners: int,
        cfg: MaddpgConfig,
        prey: Prey | None,
        generator: torch.Generator,
        update_generator: torch.Generator,
        device: torch.device | str = "cpu",
        agents: Sequence[int] | None = None,
        gather: Callable[[torch.Tensor], torch.Tensor] = identity,
        reduce_grads: Callable[[list[torch.Tensor]], None] = no_reduce,
        discrete: bool = False,
    ):
        self.cfg, self.prey, self.generator, self.device = cfg, prey, generator, torch.device(device)
        self.update_generator = update_generator
        self.discrete = discrete
        self.gather, self.reduce_grads = gather, reduce_grads
        self.agents = list(range(n_learners) if agents is None else agents)
        if self.agents != list(range(self.agents[0], self.agents[-1] + 1)):
            raise ValueError(f"a process holds consecutive learning agents, not {self.agents}")
        self.span = slice(self.agents[0], self.agents[-1] + 1)  # a view, where a list would copy
        self.n_agents, self.n_learners, self.act_dim = len(obs_dims), n_learners, act_dim
        self.obs_dim = max(obs_dims)
        # Columns of the flattened padded observations (N * O) that hold real values.
        self.obs_cols = torch.tensor(
            [i * self.obs_dim + j for i, width in enumerate(obs_dims) for j in range(width)], device=device
        )
        critic_in = len(self.obs_cols) + self.n_agents * act_dim
        # Every learner's networks are initialised, then the local ones kept: agent i starts from
        # the same weights whichever rank holds it.
        actor = StackedMLP(
            n_learners, self.obs_dim, cfg.hidden, act_dim, sigmoid_output=not discrete, fan_in=obs_dims[:n_learners]
        )
        critic = StackedMLP(n_learners, critic_in, cfg.hidden, 1)
        self.actor, self.critic = actor.select(self.agents).to(device), critic.select(self.agents).to(device)
        # Every process keeps the target actors of *all* learners: critic targets then need no
        # message per update, only a gather of the online actors at each soft update.
        self.target_actor = copy.deepcopy(actor).to(device).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        # Parameter lists, built once: nn.Module.parameters() walks the module tree on every call.
        # The Parameters themselves never change after this (load_state_dict copies in place), as
        # the optimizers below also assume.
        self.actor_params, self.critic_params = list(self.actor.parameters()), list(self.critic.parameters())
        self.target_actor_params = list(self.target_actor.parameters())
        self.target_critic_params = list(self.target_critic.parameters())
        # Adam is elementwise, so one optimizer over the stack equals one optimizer per agent (tested).
        # The fused kernel took 10-15% off a default-size update on this CPU against foreach.
        self.actor_opt = torch.optim.Adam(self.actor_params, lr=cfg.actor_lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic_params, lr=cfg.critic_lr, fused=True)
        # Critic input columns of each local learner's own action: (n, A), with `local` (n, 1) to index the stack.
        first_action_col = len(self.obs_cols) + act_dim * torch.tensor(self.agents, device=device)
        self.own_cols = first_action_col[:, None] + torch.arange(act_dim, device=device)
        self.local = torch.arange(len(self.agents), device=device)[:, None]
        self.updates = 0
        self.noise_scale = 1.0  # multiplies the Gaussian exploration noise (genetic mode's pbt tunes it)
        self.tau = cfg.tau  # the targets' soft-update rate (genetic mode's pbt tunes it)

    # -- acting ----------------------------------------------------------------------------

    def learner_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, N, O) -> the local learners' actor outputs (B, len(agents), A): actions, or logits."""
        return self.actor(obs[:, self.span].transpose(0, 1)).transpose(0, 1)

    def sample(self, logits: torch.Tensor, learners: slice = slice(None)) -> torch.Tensor:
        """logits (n, B, A) of the learners `learners` -> their Gumbel-softmax samples (MaddpgConfig).
        The noise is drawn for every learner and sliced, so ranks that hold different agents draw alike."""
        shape = (self.n_learners, *logits.shape[1:])
        uniform = torch.rand(shape, generator=self.update_generator, device=self.device)
        return gumbel_softmax(logits, uniform[learners], self.cfg.gumbel_temperature, self.cfg.straight_through)

    def with_prey(
        self, learners: torch.Tensor, obs: torch.Tensor, target: bool = False, prey: Prey | None = None
    ) -> torch.Tensor:
        """Every learner's actions (B, n_learners, A) and the prey's (acting, or for critic targets) -> (B, N, A).
        `prey` plays the prey (default: the learner's own, `self.prey`; none when the prey learns)."""
        prey = self.prey if prey is None else prey
        if prey is None:
            return learners
        prey_obs = obs[:, self.n_learners :]
        prey = prey.target_act(prey_obs) if target else prey.act(prey_obs)
        if self.discrete:
            prey = one_hot(prey.argmax(-1), self.act_dim)
        return torch.cat([learners, prey], dim=1)

    def target_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, N, O) -> every agent's action for critic targets (B, N, A): every learner's target
        actor (discrete: a Gumbel-softmax sample of it), then the prey's target action."""
        learners = self.target_actor(obs[:, : self.n_learners].transpose(0, 1))  # (n_learners, B, A)
        learners = self.sample(learners) if self.discrete else learners
        return self.with_prey(learners.transpose(0, 1), obs, target=True)

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, epsilon: float = 0.0, noise_std: float = 0.0, prey: Prey | None = None
    ) -> torch.Tensor:
        """obs (E, N, O) -> actions (E, N, A); exploration (either scale > 0) applies to the learning
        agents only. Discrete actions explore by sampling the policy, and by epsilon's uniform moves.
        `prey` plays the prey (default: `self.prey`), e.g. an evaluation's copy of it on streams of its own.

        Exploration draws for every learner from `generator`, so ranks that share its seed
        agree on the joint action without another message.
        """
        out = self.gather(self.learner_actions(obs))  # (E, n_learners, A)
        if epsilon == 0 and noise_std == 0:
            acts = one_hot(out.argmax(-1), self.act_dim) if self.discrete else out
        elif self.discrete:
            acts = explore_discrete(out, epsilon, self.generator)
        else:
            acts = explore(out, epsilon, noise_std * self.noise_scale, self.generator)
        return self.with_prey(acts, obs, prey=prey)

    # -- learning --------------------------------------------------------------------------

    def critic_input(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs (B, N, O), act (B, N, A) -> (B, D): real observation columns, then all actions."""
        # index_select, not `[:, self.obs_cols]`: the same copy without advanced indexing's setup (~30 us).
        return torch.cat([obs.flatten(1).index_select(1, self.obs_cols), act.flatten(1)], dim=1)

    def q_values(self, critic: StackedMLP, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Every local learner's critic on the same joint input -> (len(agents), B)."""
        return critic.forward_shared(self.critic_input(obs, act)).squeeze(-1)

    def critic_losses(self, batch: Batch) -> torch.Tensor:
        """Every local learner's TD loss -> (len(agents),). Targets use the target actors of *all* agents."""
        with torch.no_grad():
            next_act = self.target_actions(batch.next_obs)  # (B, N, A)
            q_next = self.q_values(self.target_critic, batch.next_obs, next_act)  # (n, B)
            # Episodes end by time-limit truncation, which is not terminal: `terminal` is 0 there and
            # the target bootstraps from the true final observation stored as next_obs.
            target = batch.rew[:, self.span].T + self.cfg.gamma * (1.0 - batch.terminal) * q_next
        q = self.q_values(self.critic, batch.obs, batch.act)
        return (q - target).pow(2).mean(dim=1)

    def actor_losses(self, batch: Batch) -> torch.Tensor:
        """Every local learner's policy loss -> (len(agents),): critic i scores agent i's current-policy
        action (discrete: its Gumbel-softmax sample) together with the other agents' buffer actions
        (Lowe et al. 2017)."""
        out = self.actor(batch.obs[:, self.span].transpose(0, 1))  # (n, B, A)
        policy = self.sample(out, self.span) if self.discrete else out
        # Critic i's input is the buffer's joint input with agent i's action replaced by its policy's.
        # Its first layer is linear, so that is the shared input's output plus (policy - buffer action)
        # times the weight rows of agent i's action columns.
        change = policy - batch.act[:, self.span].transpose(0, 1)
        own_rows = self.critic.layers[0].weight[self.local, self.own_cols]  # (n, A, H)
        q = self.critic.forward_shared(self.critic_input(batch.obs, batch.act), torch.bmm(change, own_rows))
        loss = -q.squeeze(-1).mean(dim=1)
        if self.discrete:  # the paper's penalty on the logits' size
            loss = loss + self.cfg.logit_penalty * out.square().mean(dim=(1, 2))
        return loss

    def update(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One MADDPG update of every local learning agent -> (critic_loss, actor_loss), each (len(agents),).

        Agents are independent, so the gradient of a summed loss is each agent's own gradient.
        """
        critic_loss = self.critic_losses(batch)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.sum().backward()
        self.reduce_grads([p.grad for p in self.critic_params])
        self.critic_opt.step()

        actor_loss = self.actor_losses(batch)
        self.actor_opt.zero_grad(set_to_none=True)
        # The actor loss trains the actors only: `inputs` leaves the critic's weight gradients
        # uncomputed and its .grad untouched, with no requires_grad state to switch off and back on
        # (as fast as switching it on the cached parameters, measured; no module walk either way).
        actor_loss.sum().backward(inputs=self.actor_params)
        self.reduce_grads([p.grad for p in self.actor_params])
        self.actor_opt.step()

        self.updates += 1
        if self.updates % self.cfg.target_update_every == 0:
            self.soft_update()
        return critic_loss.detach(), actor_loss.detach()

    @torch.no_grad()
    def soft_update(self) -> None:
        """target <- tau * online + (1 - tau) * target, for the local critics and every learner's actor."""
        tau = self.tau
        torch._foreach_lerp_(self.target_critic_params, self.critic_params, tau)
        online_actors = self.gather(self.actor.rows()[None])[0]  # (n_learners, P): one message
        torch._foreach_lerp_(self.target_actor_params, self.target_actor.row_views(online_actors), tau)

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_actor": self.target_actor.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
            "noise_scale": self.noise_scale,
            "tau": self.tau,
            "generator": self.generator.get_state(),
            "update_generator": self.update_generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "critic", "target_actor", "target_critic", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.updates, self.noise_scale = state["updates"], state["noise_scale"]
        self.tau = state.get("tau", self.cfg.tau)  # checkpoints written before pbt tuned it: the config's
        self.generator.set_state(state["generator"])
        if "update_generator" in state:  # checkpoints written before it existed keep the stream build derived
            self.update_generator.set_state(state["update_generator"])
