"""Where each mode puts the agents and which collective joins the ranks; the algorithm stays in learner.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from maddpg.core.comm import Comm
from maddpg.core.config import Config, DataBatch, Mode
from maddpg.core.learner import identity, no_reduce


@dataclass(kw_only=True)
class Placement:
    """Built by keyword; the defaults are single mode's: every learning agent here, nothing to join."""

    agents: list[int]  # the learning agents whose networks this rank holds
    batch_size: int  # transitions this rank samples per update
    replica: int = 0  # this rank's random streams (seeding.Streams): a replica's own, or rank 0's shared by all
    replicas: int = 1  # ranks collecting different transitions: each loop iteration adds n_envs * replicas
    population: int = 1  # independent learners in the job; replicas / population ranks share each learner's work
    gather: Callable[[torch.Tensor], torch.Tensor] = identity  # local learners' actions -> every learner's
    reduce_grads: Callable[[list[torch.Tensor]], None] = no_reduce
    serves_updates: bool = False  # a pipeline learner: it trains on batches rank 0 sends, and never acts


def blocks(n: int, ranks: int) -> list[range]:
    """n learning agents over `ranks` ranks: consecutive blocks, as even as can be (the first n % ranks
    hold one more). With as many ranks as agents, one agent each (the study's model parallelism)."""
    base, extra = divmod(n, ranks)
    starts = [r * base + min(r, extra) for r in range(ranks + 1)]
    return [range(starts[r], starts[r + 1]) for r in range(ranks)]


def placement(cfg: Config, comm: Comm) -> Placement:
    """single: everything here. data: a full replica per rank with its own envs and buffer, gradients
    averaged in one all-reduce per optimizer step. model: a block of consecutive learning agents per
    rank (`blocks`); all ranks step identical envs and sample identical batches from shared seeds,
    and all-gather the actions. pipeline: the blocks on ranks 1.., rank 0 stepping the envs (see
    pipeline.py). genetic: an independent learner per rank with its own envs and buffer (see genetic.py)."""
    learners, batch, world = list(range(cfg.n_learners)), cfg.maddpg.batch_size, comm.world_size
    if cfg.mode == Mode.data:
        micro = batch // world if cfg.dist.data_batch == DataBatch.split else batch
        return Placement(agents=learners, batch_size=micro, replica=comm.rank, replicas=world,
                         reduce_grads=comm.all_reduce_mean_)  # fmt: skip
    if cfg.mode == Mode.model:
        mine = blocks(cfg.n_learners, world)
        gather = partial(comm.all_gather_agents, sizes=[len(b) for b in mine])
        return Placement(agents=list(mine[comm.rank]), batch_size=batch, gather=gather)
    if cfg.mode == Mode.pipeline:
        learner_ranks = comm.subgroup(list(range(1, world)))
        if learner_ranks is None:  # rank 0 acts with a copy of every actor and ships batches
            return Placement(agents=learners, batch_size=batch)
        mine = blocks(cfg.n_learners, world - 1)
        gather = partial(learner_ranks.all_gather_agents, sizes=[len(b) for b in mine])
        return Placement(agents=list(mine[comm.rank - 1]), batch_size=batch, gather=gather, serves_updates=True)
    if cfg.mode == Mode.genetic:
        return Placement(agents=learners, batch_size=batch, replica=comm.rank, replicas=world, population=world)
    return Placement(agents=learners, batch_size=batch)
