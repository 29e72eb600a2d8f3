"""Genetic mode: P independent learners that periodically share what the best of them learned.

Every rank is a full MADDPG learner with its own envs, buffer and exploration streams (and, by
default, its own initial weights). At each sync, every rank's fitness (measured then, see below)
and hyperparameters are all-gathered, then:

- strategy `critic` (the study's): the best rank (ties: the lowest rank) broadcasts its critic
  and target critic, and with `sync_optimizer` the critic's Adam state, in one tensor. Actors
  are never synced. The critics are the learning agents' only: a fixed prey has none.
- strategy `none`: no sync ever; the population's rows still gather every learner's returns.
  The control arm: P learners in parallel without sharing anything.
- strategy `pbt` (Population Based Training, as Ray Tune's): the bottom ceil(P * quantile)
  ranks each copy a whole learner (actor, critic, targets, optimizers, noise scale) from one of
  the top as many, drawn at random, then multiply its actor and critic learning rates, its targets'
  soft-update rate tau (at most 1) and its exploration noise each by a factor drawn from `perturb`
  (default 0.8 or 1.2). A copy keeps its own random streams, so the two learners explore
  differently from then on.

With `share_experience`, whatever the strategy, every learner's buffer also receives the others'
transitions, all-gathered at every episode end (SharedExperience): each learns from P times the
experience it collects, at the same updates per env step.

At the end, the run names its best learner (`select_best`): every learner's predators play the
common opponents (evaluation.SUITE) on start states of their own, none of which fitness or the
training evaluations ever saw, and the best mean is written to best_learner.json.

A learner's fitness is measured afresh at every sync, against `genetic.fitness_opponent`: its own
prey (`own`, the study's), every learner's prey in turn (`pool`, the default: against a learning
prey, its own predator_return would reward a weak partner as much as strong predators), the
shipped weak or strong prey, or a random prey (`Fitness`).

Syncs fall every `sync_every` env steps per learner (`constant`), or with `adaptive` at
periods sync_every * growth**k for k = 0, 1, ..., each clamped to [min_period, max_period]:
growth > 1 syncs often early and ever more rarely (to a cap), growth < 1 the reverse (the
study's proposal: rare early syncs, which leave early exploration alone). The draws of a
round come from a generator seeded by (seed, round), so every rank makes the same plan
without another message.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from maddpg.core import seeding
from maddpg.core.buffer import ReplayBuffer, States
from maddpg.core.comm import Comm
from maddpg.core.config import Config, EnvConfig, FitnessOpponent, GeneticConfig, PreyMode, Schedule, Strategy
from maddpg.core.envs import VecEnv
from maddpg.core.evaluation import SUITE, evaluate
from maddpg.core.learner import Maddpg, Prey
from maddpg.core.pretrained import SHIPPED, for_actions
from maddpg.core.prey import FrozenPrey, prey_actor, prey_policy

HYPERPARAMETERS = ("actor_lr", "critic_lr", "tau", "noise_scale")  # what pbt perturbs, as logged
BEST_LEARNER_FILE = "best_learner.json"  # in the run directory: select_best's choice at the final checkpoint
STREAMS = ("generator", "update_generator")  # a learner's random streams, which a pbt copy does not take


def sync_period(cfg: GeneticConfig, round_: int) -> int:
    """Env steps per learner from sync `round_` to the next."""
    if cfg.schedule == Schedule.constant:
        return cfg.sync_every
    return min(max(round(cfg.sync_every * cfg.growth**round_), cfg.min_period), cfg.max_period)


def best_rank(fitness: Sequence[float]) -> int:
    """The fittest rank; ties go to the lowest rank."""
    return max(range(len(fitness)), key=lambda rank: (fitness[rank], -rank))


def pbt_plan(fitness: Sequence[float], quantile: float, generator: torch.Generator) -> dict[int, int]:
    """{bottom rank: the top rank it copies}: the ceil(P * quantile) least fit ranks (at most half of
    them), each drawing one of as many fittest ranks. Ties rank the lower rank as fitter."""
    order = sorted(range(len(fitness)), key=lambda rank: (-fitness[rank], rank))  # fittest first
    k = min(math.ceil(len(fitness) * quantile), len(fitness) // 2)
    top, bottom = order[:k], order[len(order) - k :]
    return {rank: top[int(torch.randint(k, (), generator=generator))] for rank in sorted(bottom)}


def hyperparameters(learner: Maddpg) -> list[float]:
    """The values pbt perturbs, in HYPERPARAMETERS order."""
    return [learner.actor_opt.param_groups[0]["lr"], learner.critic_opt.param_groups[0]["lr"], learner.tau,
            learner.noise_scale]  # fmt: skip


def perturbed(values: Sequence[float], factors: torch.Tensor) -> list[float]:
    """pbt's new hyperparameters: `values` times `factors`, tau at most 1 (past it the targets would overshoot)."""
    new = (torch.tensor(values, dtype=torch.float64) * factors).tolist()
    tau = HYPERPARAMETERS.index("tau")
    new[tau] = min(new[tau], 1.0)
    return new


def set_hyperparameters(learner: Maddpg, values: Sequence[float]) -> None:
    actor_lr, critic_lr, learner.tau, learner.noise_scale = values
    for optimizer, lr in ((learner.actor_opt, actor_lr), (learner.critic_opt, critic_lr)):
        for group in optimizer.param_groups:
            group["lr"] = lr


def suite_prey(name: str, cfg: Config, env: VecEnv, device: torch.device) -> Prey:
    """A prey that does not learn, by name (weak and strong: those of the run's action type). An
    evaluation plays a copy of it on streams of its own: the streams it is built with are never drawn."""
    unused = (torch.Generator(), torch.Generator())
    return prey_policy(for_actions(name, cfg.env.actions), cfg.env, env.obs_dim, env.act_dim, device, unused)


def judge(cfg: Config, env: VecEnv, learner: Maddpg) -> Maddpg:
    """A Maddpg holding the predators' actors alone, to play them against any prey; copy the learner's
    predator rows in (`actor.load_rows`) before each use. It never explores or updates: no stream is drawn."""
    k = cfg.env.num_adversaries
    return Maddpg(env.obs_dims, env.act_dim, k, cfg.maddpg, None, torch.Generator(), torch.Generator(), learner.device,
                  discrete=cfg.env.discrete)  # fmt: skip


class Fitness:
    """A learner's fitness, measured afresh at every sync: the noise-free predator_return of its
    predators on the evaluation start states against genetic.fitness_opponent: its own prey (own: its
    prey actors when the prey learns), every learner's prey in turn (pool; with a prey that does not
    learn, every learner faces the same prey, so pool is own), the shipped weak or strong prey of the
    run's action type, or a random prey. The opponent draws from streams keyed by (train.seed,
    FITNESS, round), the same for every learner of a round. Every rank calls it together (pool
    gathers the prey)."""

    def __init__(self, cfg: Config, comm: Comm, learner: Maddpg, env: VecEnv):
        self.cfg, self.comm, self.learner, self.env = cfg, comm, learner, env
        opponent = cfg.genetic.fitness_opponent
        if opponent == FitnessOpponent.pool and cfg.prey.mode != PreyMode.learn:
            opponent = FitnessOpponent.own
        self.opponent, self.prey = opponent, self._prey(opponent)
        # For any other opponent than the learner's own prey, the predators' actors alone (judge).
        self.judge = None if opponent == FitnessOpponent.own else judge(cfg, env, learner)

    def _prey(self, opponent: FitnessOpponent) -> Prey | None:
        """The shipped prey or the random prey that `opponent` names; None for own and pool."""
        if opponent in (FitnessOpponent.own, FitnessOpponent.pool):
            return None
        return suite_prey(opponent.value, self.cfg, self.env, self.learner.device)

    def __call__(self, round_: int) -> float:
        """This learner's fitness at sync `round_`."""
        if self.judge is None:
            return self._predator_return(self.learner, None, round_)
        k = self.cfg.env.num_adversaries
        rows = self.learner.actor.rows()  # (n_learners, P): predators first
        self.judge.actor.load_rows(rows[:k])  # the weights of now
        if self.opponent != FitnessOpponent.pool:
            return self._predator_return(self.judge, self.prey, round_)
        every_prey = self.comm.all_gather_agents(rows[None, k:])[0]  # (P * n_prey, P)
        env, cfg, returns = self.env, self.cfg, []
        for prey_rows in every_prey.split(rows.shape[0] - k):
            actor = prey_actor(prey_rows, env.obs_dim, cfg.maddpg.hidden, env.act_dim, cfg.env.discrete)
            returns.append(self._predator_return(self.judge, FrozenPrey(actor), round_))
        return sum(returns) / len(returns)

    def _predator_return(self, player: Maddpg, opponent: Prey | None, round_: int) -> float:
        return evaluate(player, self.env, self.cfg.train.seed, round_, opponent, seeding.FITNESS)["predator_return"]


class Population:
    """This rank's part in the population: the sync schedule and the syncs. `measure(round)` scores
    the learner at each sync (Fitness)."""

    def __init__(self, cfg: GeneticConfig, comm: Comm, learner: Maddpg, seed: int, measure: Callable[[int], float]):
        self.cfg, self.comm, self.learner, self.seed, self.measure = cfg, comm, learner, seed, measure
        self.round = 0
        self.next_sync = sync_period(cfg, 0)  # env steps per learner
        self.experience: SharedExperience | None = None

    def shared(self, buffer: ReplayBuffer) -> ReplayBuffer | SharedExperience:
        """The buffer the learner fills and samples: with share_experience, one that also receives the
        other learners' transitions at every episode end (`end_episode`); else `buffer` itself."""
        if self.cfg.share_experience:
            self.experience = SharedExperience(buffer, self.comm)
            return self.experience
        return buffer

    def end_episode(self) -> None:
        """Every rank together, at every episode end: share the episode's transitions (share_experience)."""
        if self.experience is not None:
            self.experience.share()

    def gather_evaluation(self, row: dict) -> dict:
        """Every rank's predator_return in this evaluation, their best and mean, as row fields. Every
        rank calls it together."""
        mine = torch.tensor([[row["predator_return"]]], device=self.learner.device)  # NCCL moves device tensors
        returns = self.comm.all_gather_agents(mine)[0].tolist()
        per_rank = {f"predator_return/rank{rank}": value for rank, value in enumerate(returns)}
        return per_rank | {"population_best_predator_return": max(returns),
                           "population_mean_predator_return": sum(returns) / len(returns),
                           "fitness_opponent": self.cfg.fitness_opponent.value}  # fmt: skip

    def due(self, steps_per_learner: int) -> bool:
        """A sync round is due (never with strategy none: the learners run on their own)."""
        return self.cfg.strategy != Strategy.none and steps_per_learner >= self.next_sync

    def sync(self, env_steps: int, steps_per_learner: int) -> dict:
        """One sync round, on every rank together -> its log row (the same on every rank but `seconds`).
        Every rank measures its fitness now, at `env_steps` (a pool measurement gathers the prey)."""
        start = time.perf_counter()
        values = [self.measure(self.round), env_steps, *hyperparameters(self.learner)]
        mine = torch.tensor([[values]], dtype=torch.float64, device=self.learner.device)  # lrs need float64
        table = self.comm.all_gather_agents(mine)[0]  # (P, 2 + len(HYPERPARAMETERS))
        fitness, hypers = table[:, 0].tolist(), table[:, 2:].tolist()
        row = {"round": self.round, "env_steps": env_steps, "env_steps_per_learner": steps_per_learner}
        row["fitness"], row["fitness_opponent"] = fitness, self.cfg.fitness_opponent.value
        row["fitness_env_steps"] = [int(steps) for steps in table[:, 1].tolist()]  # when each fitness was measured
        if self.cfg.strategy == Strategy.critic:
            row["winner"] = best_rank(fitness)
            row["bytes_sent"] = self._broadcast_critic(row["winner"])
        else:
            generator = seeding.generator(self.seed, seeding.PBT, self.round)  # the same plan on every rank
            plan = pbt_plan(fitness, self.cfg.quantile, generator)
            factors = torch.tensor(self.cfg.perturb, dtype=torch.float64)
            for rank, source in plan.items():
                draws = torch.randint(len(factors), (len(HYPERPARAMETERS),), generator=generator)
                hypers[rank] = perturbed(hypers[source], factors[draws])
            row["copies"] = {str(rank): source for rank, source in plan.items()}
            row["bytes_sent"] = self._copy_learners(plan, hypers[self.comm.rank])
        row["hyperparameters"] = [dict(zip(HYPERPARAMETERS, values, strict=True)) for values in hypers]
        self.round += 1
        self.next_sync += sync_period(self.cfg, self.round)
        row["next_sync"] = self.next_sync
        row["seconds"] = time.perf_counter() - start
        self.comm.seconds += row["seconds"]
        return row

    def _critic_tensors(self) -> list[torch.Tensor]:
        learner = self.learner
        tensors = [*learner.critic.parameters(), *learner.target_critic.parameters()]
        if self.cfg.sync_optimizer:  # empty before the first update, on every rank alike
            for state in (learner.critic_opt.state[p] for p in learner.critic.parameters()):
                tensors += [state[key] for key in ("exp_avg", "exp_avg_sq", "step") if key in state]
        return tensors

    def _broadcast_critic(self, winner: int) -> int:
        """The winner's critic tensors to every rank, in one broadcast -> bytes delivered to the others."""
        tensors = self._critic_tensors()
        flat = _flatten_dense_tensors([t.detach().float() for t in tensors])
        if self.comm.world_size > 1:
            dist.broadcast(flat, src=winner)
        if self.comm.rank != winner:
            with torch.no_grad():
                for tensor, value in zip(tensors, _unflatten_dense_tensors(flat, tensors), strict=True):
                    tensor.copy_(value)
        return flat.numel() * flat.element_size() * (self.comm.world_size - 1)

    def _copy_learners(self, plan: dict[int, int], my_hypers: list[float]) -> int:
        """Send each source's whole learner to the ranks that copy it; a copier then takes its
        perturbed hyperparameters. -> bytes sent by all sources."""
        sent, rank, device = 0, self.comm.rank, self.learner.device
        for copier, source in plan.items():
            if rank == source:
                state = self.learner.state_dict()
                for stream in STREAMS:  # the copier keeps its own random streams
                    del state[stream]
                buffer = io.BytesIO()
                torch.save(state, buffer)
                payload = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8).to(device)
                dist.send(torch.tensor([payload.numel()], device=device), copier)
                dist.send(payload, copier)
                sent += payload.numel()
            elif rank == copier:
                size = torch.zeros(1, dtype=torch.long, device=device)
                dist.recv(size, source)
                payload = torch.empty(int(size), dtype=torch.uint8, device=device)
                dist.recv(payload, source)
                state = torch.load(io.BytesIO(payload.cpu().numpy().tobytes()), map_location=device, weights_only=True)
                own = {stream: getattr(self.learner, stream).get_state() for stream in STREAMS}
                self.learner.load_state_dict(state | own)
                set_hyperparameters(self.learner, my_hypers)
        return int(self.comm.all_gather_agents(torch.tensor([[sent]], device=device)).sum())

    def state_dict(self) -> dict:
        return {"round": self.round, "next_sync": self.next_sync}

    def load_state_dict(self, state: dict) -> None:
        self.round, self.next_sync = state["round"], state["next_sync"]  # older checkpoints' "history" is unused


class SharedExperience:
    """genetic.share_experience: this learner's replay buffer, which also receives every other learner's
    transitions. What the learner collects goes into its buffer at once and into an outbox; at every
    episode end (`share`, every rank together, before any checkpoint, so the outbox is empty in every
    one) the outboxes are all-gathered and each learner adds the others', in rank order. The buffer
    was built to hold P * maddpg.buffer_size transitions (train.build), so it reaches as far back in
    env steps per learner as a learner's alone. Sampling, size and checkpoints are the buffer's."""

    def __init__(self, buffer: ReplayBuffer, comm: Comm):
        self.buffer, self.comm, self.outbox = buffer, comm, []
        self.sample, self.nbytes = buffer.sample, buffer.nbytes
        self.state_dict, self.load_state_dict = buffer.state_dict, buffer.load_state_dict

    @property
    def size(self) -> int:
        return self.buffer.size

    def add(self, batch: States) -> None:
        self.buffer.add(batch)
        self.outbox.append(batch)

    def share(self) -> int:
        """Every learner's transitions since the last share into every other learner's buffer -> the bytes
        this rank received. Every rank holds as many (the same env copies, the same episode length)."""
        mine = [torch.cat(field) for field in zip(*self.outbox, strict=True)]
        self.outbox = []
        flat = _flatten_dense_tensors([field.double() for field in mine])  # one message whatever the dtypes
        every = self.comm.all_gather_agents(flat[None, None])[0]  # (P, numel)
        for rank, row in enumerate(every):
            if rank != self.comm.rank:
                fields = _unflatten_dense_tensors(row, mine)
                self.buffer.add(States(*(value.to(field.dtype) for value, field in zip(fields, mine, strict=True))))
        return (len(every) - 1) * flat.numel() * flat.element_size()


def selection_opponents(env: EnvConfig) -> tuple[str, ...]:
    """The prey a run's best learner is chosen against: SUITE, less the shipped prey when the run's teams
    are not the default ones they were trained for (3 predators, 1 prey, 2 obstacles)."""
    teams, default = (env.num_adversaries, env.num_good, env.num_obstacles), EnvConfig()
    if teams == (default.num_adversaries, default.num_good, default.num_obstacles):
        return SUITE
    return tuple(name for name in SUITE if name not in SHIPPED)


def select_best(cfg: Config, comm: Comm, learner: Maddpg, env: VecEnv) -> dict:
    """The population's best learner, chosen at the end of a run: every learner's predators play
    `env.n_envs` (genetic.select_episodes) noise-free episodes against each of selection_opponents,
    from start states seeded by (train.seed, SELECT), which neither the training evaluations nor
    fitness ever use; the prey's draws are keyed by that seed too. Every rank calls it together -> {"rank": the best
    mean's (ties: the lowest), "learners": [{prey: mean predator_return, ..., "mean": ...} per rank]}."""
    seed = seeding.derive_seeds(cfg.train.seed, seeding.SELECT)[0]
    predators = judge(cfg, env, learner)
    predators.actor.load_rows(learner.actor.rows()[: cfg.env.num_adversaries])
    opponents = selection_opponents(cfg.env)
    returns = []
    for name in opponents:
        prey = suite_prey(name, cfg, env, learner.device)
        returns.append(evaluate(predators, env, seed, 0, prey, seeding.SELECT)["predator_return"])
    mine = torch.tensor([[returns]], dtype=torch.float64, device=learner.device)
    table = comm.all_gather_agents(mine)[0].tolist()  # (P, len(SUITE))
    learners = [dict(zip(opponents, row, strict=True)) | {"mean": sum(row) / len(row)} for row in table]
    return {"rank": best_rank([scores["mean"] for scores in learners]), "episodes": env.n_envs, "seed": seed,
            "opponents": list(opponents), "learners": learners}  # fmt: skip
