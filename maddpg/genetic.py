"""Genetic mode: P independent learners that periodically share what the best of them learned.

Every rank is a full MADDPG learner with its own envs, buffer and exploration streams (and, by
default, its own initial weights). At each sync, every rank's fitness (the mean predator_return
of its last `fitness_window` evaluations) and hyperparameters are all-gathered, then:

- strategy `critic` (the study's): the best rank (ties: the lowest rank) broadcasts its critic
  and target critic, and with `sync_optimizer` the critic's Adam state, in one tensor. Actors
  are never synced. The critics are the learning agents' only: a fixed prey has none.
- strategy `none`: no sync ever; the population's rows still gather every learner's returns.
  The control arm: P learners in parallel without sharing anything.
- strategy `pbt` (Population Based Training, as Ray Tune's): the bottom ceil(P * quantile)
  ranks each copy a whole learner (actor, critic, targets, optimizers, noise scale) from one of
  the top as many, drawn at random, then multiply its actor and critic learning rates and its
  exploration noise each by a factor drawn from `perturb` (default 0.8 or 1.2). A copy keeps
  its own random streams, so the two learners explore differently from then on.

A learner's fitness is measured against `genetic.fitness_opponent`: its own evaluations (`own`,
the study's), or its predators against every learner's prey in turn (`pool`, the default: against
a learning prey, its own predator_return would reward a weak partner as much as strong
predators), the shipped weak or strong prey, or a random prey (`Fitness`).

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
from collections import deque
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from maddpg import seeding
from maddpg.config import Config, FitnessOpponent, GeneticConfig, PreyMode, Schedule, Strategy
from maddpg.distributed import Comm
from maddpg.envs import VecEnv
from maddpg.evaluation import evaluate
from maddpg.learner import Maddpg
from maddpg.prey import FrozenPrey, RandomPrey, load_prey, prey_actor

HYPERPARAMETERS = ("actor_lr", "critic_lr", "noise_scale")  # what pbt perturbs, as logged


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
    return [learner.actor_opt.param_groups[0]["lr"], learner.critic_opt.param_groups[0]["lr"], learner.noise_scale]


def set_hyperparameters(learner: Maddpg, values: Sequence[float]) -> None:
    actor_lr, critic_lr, learner.noise_scale = values
    for optimizer, lr in ((learner.actor_opt, actor_lr), (learner.critic_opt, critic_lr)):
        for group in optimizer.param_groups:
            group["lr"] = lr


class Fitness:
    """A learner's fitness against another opponent than its own evaluations: the noise-free
    predator_return of its predators on the evaluation start states, against the shipped weak or
    strong prey, a random prey (the same draws for every learner), or every learner's prey in turn
    (pool). Every rank calls it together (pool gathers the prey)."""

    def __init__(self, cfg: Config, comm: Comm, learner: Maddpg, env: VecEnv):
        self.cfg, self.comm, self.learner, self.env = cfg, comm, learner, env
        self.opponent, k = cfg.genetic.fitness_opponent, cfg.env.num_adversaries
        if self.opponent in (FitnessOpponent.weak, FitnessOpponent.strong):
            prey = load_prey(self.opponent.value, cfg.env, env.obs_dim, env.act_dim, learner.device)
        else:
            prey = None  # drawn anew for every measurement
        # The predators' actors alone, acting against `prey`; their weights are copied in at each measurement.
        self.judge = Maddpg(
            env.obs_dims, env.act_dim, k, cfg.maddpg, prey, torch.Generator(), learner.device, discrete=cfg.env.discrete
        )

    def __call__(self) -> float:
        k, judge = self.cfg.env.num_adversaries, self.judge
        rows = self.learner.actor.rows()  # (n_learners, P): predators first
        judge.actor.load_rows(rows[:k])
        if self.opponent == FitnessOpponent.random:
            generator = seeding.generator(self.cfg.train.seed, seeding.FITNESS, device=self.learner.device)
            judge.prey = RandomPrey(self.env.act_dim, generator)
        if self.opponent != FitnessOpponent.pool:
            return self._predator_return()
        every_prey = self.comm.all_gather_agents(rows[None, k:])[0]  # (P * n_prey, P)
        returns = []
        for prey_rows in every_prey.split(rows.shape[0] - k):
            judge.prey = FrozenPrey(
                prey_actor(prey_rows, self.env.obs_dim, self.cfg.maddpg.hidden, self.env.act_dim, self.cfg.env.discrete)
            )
            returns.append(self._predator_return())
        return sum(returns) / len(returns)

    def _predator_return(self) -> float:
        return evaluate(self.judge, self.env, self.cfg.train.seed)["predator_return"]


def fitness_measure(cfg: Config, comm: Comm, learner: Maddpg, env: VecEnv) -> Fitness | None:
    """What measures fitness against cfg.genetic.fitness_opponent; None where a learner's own evaluations
    do: `own`, and `pool` when the prey does not learn (every learner faces the same prey)."""
    opponent = cfg.genetic.fitness_opponent
    if opponent == FitnessOpponent.own or (opponent == FitnessOpponent.pool and cfg.prey.mode != PreyMode.learn):
        return None
    return Fitness(cfg, comm, learner, env)


class Population:
    """This rank's part in the population: its fitness history, the sync schedule and the syncs.
    `measure` scores the learner at each sync (see Fitness); None: its last evaluations do."""

    def __init__(self, cfg: GeneticConfig, comm: Comm, learner: Maddpg, seed: int, measure: Fitness | None = None):
        self.cfg, self.comm, self.learner, self.seed, self.measure = cfg, comm, learner, seed, measure
        self.round = 0
        self.next_sync = sync_period(cfg, 0)  # env steps per learner
        self.history: deque[float] = deque(maxlen=cfg.fitness_window)

    def gather_evaluation(self, row: dict) -> dict:
        """Record this rank's evaluation; every rank's predator_return, their best and mean, as row fields.
        Every rank calls it together."""
        self.history.append(row["predator_return"])
        mine = torch.tensor([[row["predator_return"]]], device=self.learner.device)  # NCCL moves device tensors
        returns = self.comm.all_gather_agents(mine)[0].tolist()
        per_rank = {f"predator_return/rank{rank}": value for rank, value in enumerate(returns)}
        return per_rank | {"population_best_predator_return": max(returns),
                           "population_mean_predator_return": sum(returns) / len(returns),
                           "fitness_opponent": self.cfg.fitness_opponent.value}  # fmt: skip

    def due(self, steps_per_learner: int) -> bool:
        """A sync round is due (never with strategy none: the learners run on their own)."""
        return self.cfg.strategy != Strategy.none and steps_per_learner >= self.next_sync

    def fitness(self) -> float:
        """Every rank calls it together (a pool measurement gathers the prey)."""
        if self.measure is not None:
            return self.measure()
        return sum(self.history) / len(self.history) if self.history else 0.0

    def sync(self, env_steps: int, steps_per_learner: int) -> dict:
        """One sync round, on every rank together -> its log row (the same on every rank but `seconds`)."""
        start = time.perf_counter()
        values = [self.fitness(), *hyperparameters(self.learner)]
        mine = torch.tensor([[values]], dtype=torch.float64, device=self.learner.device)  # lrs need float64
        table = self.comm.all_gather_agents(mine)[0]  # (P, 1 + len(HYPERPARAMETERS))
        fitness, hypers = table[:, 0].tolist(), table[:, 1:].tolist()
        row = {"round": self.round, "env_steps": env_steps, "env_steps_per_learner": steps_per_learner}
        row["fitness"], row["fitness_opponent"] = fitness, self.cfg.fitness_opponent.value
        if self.cfg.strategy == Strategy.critic:
            row["winner"] = best_rank(fitness)
            row["bytes_sent"] = self._broadcast_critic(row["winner"])
        else:
            generator = seeding.generator(self.seed, seeding.PBT, self.round)  # the same plan on every rank
            plan = pbt_plan(fitness, self.cfg.quantile, generator)
            factors = torch.tensor(self.cfg.perturb, dtype=torch.float64)
            for rank, source in plan.items():
                draws = torch.randint(len(factors), (len(HYPERPARAMETERS),), generator=generator)
                hypers[rank] = (torch.tensor(hypers[source], dtype=torch.float64) * factors[draws]).tolist()
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
                del state["generator"]  # the copier keeps its own random streams
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
                self.learner.load_state_dict(state | {"generator": self.learner.generator.get_state()})
                set_hyperparameters(self.learner, my_hypers)
        return int(self.comm.all_gather_agents(torch.tensor([[sent]], device=device)).sum())

    def state_dict(self) -> dict:
        return {"round": self.round, "next_sync": self.next_sync, "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.round, self.next_sync = state["round"], state["next_sync"]
        self.history.extend(state["history"])
