"""Run under torchrun (see test_distributed.py): data-mode gradients equal single-process ones on the union batch.

Every rank builds the same learner from one seed, takes its half of one union batch, and
averages gradients with the trainer's coalesced all-reduce; a single-process reference
learner on the same rank computes gradients on the whole union batch. The argument is the
team: predators and prey, all learning (default 3 1: the study's).
"""

import sys

import torch
import torch.distributed as dist

from conftest import random_batch, toy_learner
from maddpg.core.buffer import Batch
from maddpg.core.comm import exit_process, setup, teardown

UPDATES = 5
GRAD_ATOL = 1e-6


def shard(batch: Batch, rank: int, world_size: int) -> Batch:
    return Batch(*(field.chunk(world_size)[rank] for field in batch))


def flat_grads(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in module.parameters()])


def main() -> None:
    predators, prey = (int(n) for n in sys.argv[1:3]) if len(sys.argv) > 2 else (3, 1)
    obs_dims = [6] * predators + [5] * prey
    comm = setup(torch.device("cpu"))
    union = random_batch(64, obs_dims, seed=3)
    mine = shard(union, comm.rank, comm.world_size)
    learner = toy_learner(len(obs_dims), obs_dims)
    learner.reduce_grads = comm.all_reduce_mean_
    reference = toy_learner(len(obs_dims), obs_dims)

    for _ in range(UPDATES):
        for net, losses in (("critic", "critic_losses"), ("actor", "actor_losses")):
            for model, batch in ((learner, mine), (reference, union)):
                getattr(model, net).zero_grad()
                getattr(model, losses)(batch).sum().backward()
            learner.reduce_grads([p.grad for p in getattr(learner, net).parameters()])
            averaged, single = flat_grads(getattr(learner, net)), flat_grads(getattr(reference, net))
            torch.testing.assert_close(averaged, single, rtol=0, atol=GRAD_ATOL)
        learner.update(mine)
        reference.update(union)

    params = torch.cat([p.detach().flatten() for p in learner.actor.parameters()])
    everyone = [torch.empty_like(params) for _ in range(comm.world_size)]
    dist.all_gather(everyone, params)
    assert all(torch.equal(everyone[0], other) for other in everyone), "ranks hold different actors"
    reference_params = torch.cat([p.detach().flatten() for p in reference.actor.parameters()])
    torch.testing.assert_close(params, reference_params, rtol=0, atol=1e-5)
    teardown()
    print(f"rank {comm.rank}: gradients and parameters match", file=sys.stderr)


if __name__ == "__main__":
    main()
    exit_process()
