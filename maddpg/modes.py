"""Where each mode puts the agents and which collective joins the ranks; the algorithm stays in learner.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from maddpg.config import Config, DataBatch, Mode
from maddpg.distributed import Comm
from maddpg.learner import identity, no_reduce


@dataclass
class Placement:
    agents: list[int]  # the learning agents whose networks this rank holds
    replica: int  # this rank's random streams (seeding.Streams): a replica's own, or rank 0's shared by all
    replicas: int  # ranks collecting different transitions: each loop iteration adds n_envs * replicas
    population: int  # independent learners in the job; replicas / population ranks share each learner's work
    batch_size: int  # transitions this rank samples per update
    gather: Callable[[torch.Tensor], torch.Tensor]  # local learners' actions -> every learner's
    reduce_grads: Callable[[list[torch.Tensor]], None]
    serves_updates: bool = False  # a pipeline learner: it trains on batches rank 0 sends, and never acts


def placement(cfg: Config, comm: Comm) -> Placement:
    """single: everything here. data: a full replica per rank with its own envs and buffer, gradients
    averaged in one all-reduce per optimizer step. model: learning agent r on rank r; all ranks step
    identical envs and sample identical batches from shared seeds, and all-gather the actions.
    pipeline: learning agent r on rank r + 1, rank 0 stepping the envs (see pipeline.py).
    genetic: an independent learner per rank with its own envs and buffer (see genetic.py)."""
    learners, batch, world = list(range(cfg.n_learners)), cfg.maddpg.batch_size, comm.world_size
    if cfg.mode == Mode.data:
        micro = batch // world if cfg.dist.data_batch == DataBatch.split else batch
        return Placement(learners, comm.rank, world, 1, micro, identity, comm.all_reduce_mean_)
    if cfg.mode == Mode.model:
        return Placement([comm.rank], 0, 1, 1, batch, comm.all_gather_agents, no_reduce)
    if cfg.mode == Mode.pipeline:
        learner_ranks = comm.subgroup(list(range(1, world)))
        if learner_ranks is None:  # rank 0 acts with a copy of every actor and ships batches
            return Placement(learners, 0, 1, 1, batch, identity, no_reduce)
        return Placement([comm.rank - 1], 0, 1, 1, batch, learner_ranks.all_gather_agents, no_reduce, True)
    if cfg.mode == Mode.genetic:
        return Placement(learners, comm.rank, world, world, batch, identity, no_reduce)
    return Placement(learners, 0, 1, 1, batch, identity, no_reduce)
