"""Run under torchrun with 3 ranks (see test_genetic.py): a critic sync and a pbt round on real learners.

Each rank builds a learner from its own seed and trains it a few updates, so networks and
Adam states differ; fitness is injected (a measure that returns it), so the expected winner and
copies are known.
"""

import sys

import torch
import torch.distributed as dist

from conftest import random_batch, toy_learner
from maddpg.core.buffer import ReplayBuffer, States
from maddpg.core.comm import exit_process, setup, teardown
from maddpg.core.config import GeneticConfig, Strategy
from maddpg.core.learner import Maddpg
from maddpg.distributed.genetic import HYPERPARAMETERS, Population, SharedExperience, hyperparameters

OBS_DIMS = (6, 6, 6, 5)


def flat(*modules: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


def adam_state(learner: Maddpg) -> torch.Tensor:
    states = [learner.critic_opt.state[p] for p in learner.critic.parameters()]
    return torch.cat([torch.cat([s["exp_avg"].flatten(), s["exp_avg_sq"].flatten(), s["step"][None]]) for s in states])


def everyone(tensor: torch.Tensor) -> list[torch.Tensor]:
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor)
    return parts


def trained_learner(rank: int) -> Maddpg:
    learner = toy_learner(seed=10 + rank)
    for step in range(3):
        learner.update(random_batch(16, OBS_DIMS, seed=100 * rank + step))
    return learner


def check_critic_sync(comm, sync_optimizer: bool) -> None:
    learner = trained_learner(comm.rank)
    measured = []  # the rounds at which this rank measured its fitness

    def measure(round_: int) -> float:
        measured.append(round_)
        return [1.0, 3.0, 3.0][comm.rank]  # ranks 1 and 2 tie: rank 1 wins

    population = Population(GeneticConfig(sync_optimizer=sync_optimizer), comm, learner, 0, measure)
    before = everyone(flat(learner.critic, learner.target_critic))
    before_adam = everyone(adam_state(learner))
    actor_before = flat(learner.actor)
    row = population.sync(env_steps=15000, steps_per_learner=5000)

    assert row["winner"] == 1 and row["fitness"] == [1.0, 3.0, 3.0], row
    assert measured == [0] and row["fitness_env_steps"] == [15000] * 3, "fitness is measured at the sync"
    assert torch.equal(flat(learner.critic, learner.target_critic), before[1]), "critic differs from the winner's"
    assert torch.equal(adam_state(learner), before_adam[1 if sync_optimizer else comm.rank]), "Adam state"
    assert torch.equal(flat(learner.actor), actor_before), "the sync changed an actor"
    actors = everyone(flat(learner.actor))
    assert not torch.equal(actors[0], actors[1]) and not torch.equal(actors[1], actors[2]), "actors should differ"
    assert row["next_sync"] == 10000 and population.round == 1


def check_pbt_round(comm) -> None:
    learner = trained_learner(comm.rank)
    learner.noise_scale = [1.0, 2.0, 3.0][comm.rank]
    cfg = GeneticConfig(strategy=Strategy.pbt, quantile=0.25)
    fitness = [5.0, 1.0, 3.0][comm.rank]  # bottom: rank 1; top: rank 0
    population = Population(cfg, comm, learner, 0, lambda round_: fitness)
    state_before = everyone(flat(learner.actor, learner.critic, learner.target_actor, learner.target_critic))
    hypers_before = everyone(torch.tensor(hyperparameters(learner), dtype=torch.float64))
    streams_before = [learner.generator.get_state(), learner.update_generator.get_state()]
    row = population.sync(env_steps=15000, steps_per_learner=5000)

    assert row["copies"] == {"1": 0}, row
    networks = flat(learner.actor, learner.critic, learner.target_actor, learner.target_critic)
    assert torch.equal(networks, state_before[0 if comm.rank == 1 else comm.rank]), "networks after the round"
    hypers = torch.tensor(hyperparameters(learner), dtype=torch.float64)
    if comm.rank == 1:
        factors = hypers / hypers_before[0]
        assert all(any(abs(f - p) < 1e-12 for p in cfg.perturb) for f in factors.tolist()), factors
        assert torch.equal(adam_state(learner), everyone(adam_state(learner))[0]), "Adam state not copied"
    else:
        assert torch.equal(hypers, hypers_before[comm.rank]), "an uncopied rank was perturbed"
        everyone(adam_state(learner))
    streams = [learner.generator.get_state(), learner.update_generator.get_state()]
    assert all(map(torch.equal, streams, streams_before)), "the copy took the source's random streams"
    assert row["hyperparameters"][comm.rank] == dict(zip(HYPERPARAMETERS, hypers.tolist(), strict=True))
    assert row["bytes_sent"] > 0


class Agents:
    """A stand-in observer: the buffer needs only the number of agents to store states."""

    n_agents = 2


def transitions(rank: int, first: int, n: int) -> States:
    """n transitions whose every field holds rank * 1000 + their index: where each came from shows."""
    marks = (rank * 1000 + torch.arange(first, first + n)).float()

    def field(*shape: int) -> torch.Tensor:
        return marks.reshape(n, *[1] * len(shape)).expand(n, *shape).clone()

    return States(field(3, 2), field(2, 2), field(2, 5), field(2), field(2, 2), field(2, 2), marks.clone())


def check_shared_experience(comm) -> None:
    """Two adds, one share: every buffer holds its own transitions as added, then the others', in rank order."""
    shared = SharedExperience(ReplayBuffer(20, Agents(), 1, 5, seed=0), comm)
    shared.add(transitions(comm.rank, 0, 2))
    shared.add(transitions(comm.rank, 2, 1))
    assert shared.size == 3
    received = shared.share()
    others = [rank for rank in range(comm.world_size) if rank != comm.rank]
    expected = [comm.rank * 1000 + i for i in range(3)] + [rank * 1000 + i for rank in others for i in range(3)]
    assert shared.buffer.data["terminal"][: shared.size].tolist() == expected, shared.buffer.data["terminal"]
    assert torch.equal(shared.buffer.data["pos"][:9, 2, 1], torch.tensor(expected, dtype=torch.float32))
    assert shared.outbox == [] and received > 0
    shared.add(transitions(comm.rank, 3, 1))
    shared.share()
    assert shared.size == 12, "a second share adds only what came since the first"


def main() -> None:
    comm = setup(torch.device("cpu"))
    check_critic_sync(comm, sync_optimizer=False)
    check_critic_sync(comm, sync_optimizer=True)
    check_pbt_round(comm)
    check_shared_experience(comm)
    teardown()
    print(f"rank {comm.rank}: genetic syncs behave", file=sys.stderr)


if __name__ == "__main__":
    main()
    exit_process()
