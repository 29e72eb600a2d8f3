"""Random streams and initial weights: derived from (seed, rank), never shared between two such pairs."""

import itertools

import torch

import train
from conftest import SMOKE, toy_config
from maddpg.core import seeding
from maddpg.core.comm import Comm
from maddpg.core.config import load_config
from maddpg.distributed.modes import placement


def fingerprints(seed: int, rank: int) -> dict[str, tuple[float, ...]]:
    """The first draws of every random stream of genetic learner `rank` of a run with `seed`, and its
    first initial weights (genetic mode with diverse_init: every learner starts from its own)."""
    cfg = toy_config("mode=genetic", f"train.seed={seed}", "prey.mode=random")
    env, _, learner, buffer = train.build(cfg, torch.device("cpu"), placement(cfg, Comm(rank=rank, world_size=5)))
    buffer.size = buffer.capacity  # sample indices from the whole range
    obs = env.reset(seeding.Streams(seed, rank).key(seeding.ENV_TRAIN, 0))
    prey_obs = obs[:, cfg.n_learners :]
    draws = {
        "initial weights": learner.actor.rows()[0, :4],
        "exploration": torch.rand(4, generator=learner.generator),
        "update noise": torch.rand(4, generator=learner.update_generator),
        "prey actions": learner.prey.act(prey_obs).flatten()[:4],
        "prey target actions": learner.prey.target_act(prey_obs).flatten()[:4],
        "replay samples": torch.randint(buffer.capacity, (4,), generator=buffer.generator).float(),
        "train start states": obs.flatten()[:4],
    }
    return {name: tuple(values.tolist()) for name, values in draws.items()}


def test_no_two_seeds_and_ranks_share_a_stream_or_initial_weights():
    pairs = list(itertools.product(range(5), range(5)))
    streams = {pair: fingerprints(*pair) for pair in pairs}
    for name in streams[0, 0]:
        firsts = {streams[pair][name] for pair in pairs}
        assert len(firsts) == len(pairs), f"{name}: some (seed, rank) pairs share a stream"
    every = [draws for pair in pairs for draws in streams[pair].values()]
    assert len(set(every)) == len(every), "two purposes share a stream"


def test_ranks_that_must_agree_start_alike():
    """Data replicas start from the same weights and explore apart; model-mode ranks draw the same numbers,
    acting and updating."""

    def learners(mode: str, world_size: int) -> list:
        cfg = load_config(SMOKE, [f"mode={mode}"], world_size=world_size)
        return [train.build(cfg, torch.device("cpu"), placement(cfg, Comm(r, world_size)))[2] for r in (0, 1)]

    data, model = learners("data", 2), learners("model", 4)
    assert torch.equal(data[0].actor.rows(), data[1].actor.rows())
    assert not torch.equal(*(torch.rand(4, generator=learner.generator) for learner in data))
    assert torch.equal(*(torch.rand(4, generator=learner.generator) for learner in model))
    assert torch.equal(*(torch.rand(4, generator=learner.update_generator) for learner in model))
