"""Noise-free evaluation: the study's predator return, the capture rate and the prey's return.

As a command, it evaluates a trained run against any prey and can draw an episode:

    maddpg-evaluate RUN_DIR_OR_CHECKPOINT [--episodes N] [--seed S] [--rank R] [--out FILE]
                    [--prey learned|mix|still|random|flee|weak|strong|PATH] [--gif FILE] | [--suite]

It prints a JSON summary (means with 95% bootstrap confidence intervals over the episodes) and
writes it to --out (default: evaluation.json beside the checkpoint directories, in the run
directory). The default prey is the run's own; the default seed the run's, which replays the
start states of the run's evaluations. `weak` and `strong` name the shipped prey of the run's
action type (weak_discrete and strong_discrete for a discrete run). Every evaluation here has the
index EVAL_INDEX: a random prey makes the same draws against every checkpoint, so two scores
differ by their predators alone (the training loop's evaluation at env step S has index S, see
maddpg/core/evaluation.py). `--suite` plays the run's predators against every prey of SUITE (the
scripted still, random and fleeing prey, and the shipped weak and strong prey), each beside the
greedy team (maddpg/core/scripted.py) on the same start states and a random prey's same draws, and
prints the table (default --out: suite.json). A genetic run's learner is `--rank`, by default the
one the run named best at that checkpoint (best_learner.json), else 0.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from maddpg.core.checkpoint import latest_good_checkpoint, load_checkpoint, require_complete
from maddpg.core.config import Config, Mode, PreyMode, load_config
from maddpg.core.envs import VecEnv, make_env
from maddpg.core.errors import ConfigError, command_errors
from maddpg.core.evaluation import SUITE, evaluate_episodes
from maddpg.core.learner import Maddpg, Prey
from maddpg.core.networks import StackedMLP
from maddpg.core.opponents import opponent as run_opponent
from maddpg.core.pretrained import for_actions
from maddpg.core.prey import prey_policy
from maddpg.core.render import record_episode, render_states, write_gif
from maddpg.core.scripted import GreedyTeam, Team
from maddpg.distributed.genetic import BEST_LEARNER_FILE
from maddpg.stats import bootstrap_ci

EVAL_INDEX = 0  # the evaluation index of every evaluation by this command (evaluation.evaluate_episodes)


def latest_checkpoint(target: Path) -> Path:
    """A run directory (its newest complete checkpoint: checkpoint.latest_good_checkpoint), a checkpoint
    directory or a rank file -> its checkpoint directory."""
    if target.is_file():
        return target.parent
    if (target / "checkpoints").is_dir():
        checkpoint = latest_good_checkpoint(target)
        if checkpoint is not None:
            return checkpoint
    if (target / "rank0.pt").is_file():
        return target
    raise ConfigError(f"{target} holds no checkpoint: pass a run directory, a checkpoint directory or a rank file")


def trained_actors(checkpoint: Path, cfg: Config, mode: Mode, rank: int, env: VecEnv) -> StackedMLP:
    """Every learning agent's actor from a checkpoint of a `mode` run: model mode's ranks hold a block
    each, pipeline's rank 0 holds a copy of all, and the other modes' ranks each hold all (genetic:
    learner `rank`)."""
    if mode == Mode.model:
        ranks = range(load_checkpoint(checkpoint, 0)["world_size"])
    else:
        ranks = [0 if mode == Mode.pipeline else rank]
    states = [load_checkpoint(checkpoint, r)["learner"]["actor"] for r in ranks]
    actor = StackedMLP(cfg.n_learners, env.obs_dim, cfg.maddpg.hidden, env.act_dim, sigmoid_output=not cfg.env.discrete)
    actor.load_state_dict({key: torch.cat([state[key] for state in states]) for key in states[0]})
    return actor


def opponent(prey: str, cfg: Config, env: VecEnv) -> Prey | None:
    """A prey by name -> the policy that plays it: the run's own for `learned` (None: its prey actors
    play) and `mix` (its mix of prey), a scripted prey (still, random, flee: maddpg/core/scripted.py), a
    shipped prey (weak, strong) or a prey file. An evaluation plays a copy of it on streams of its
    own (evaluation.evaluate_episodes): the streams it is built with are never drawn from."""
    unused = (torch.Generator(), torch.Generator())
    if prey in ("learned", PreyMode.mix):
        mode = PreyMode.learn if prey == "learned" else PreyMode.mix
        if cfg.prey.mode != mode:
            raise ConfigError(f"--prey {prey}: this run did not train against it (prey.mode={cfg.prey.mode})")
        return run_opponent(cfg.prey, cfg.env, env.obs_dim, env.act_dim, "cpu", unused)
    return prey_policy(prey, cfg.env, env.obs_dim, env.act_dim, "cpu", unused)


def build_learner(cfg: Config, actors: StackedMLP, prey: str, env: VecEnv) -> Maddpg:
    """The run's predators (and its prey when `prey` is learned) acting against `prey`, noise-free:
    they never explore or update, so their streams are never drawn from."""
    policy = opponent(prey, cfg, env)
    learners = cfg.n_agents if policy is None else cfg.env.num_adversaries
    learner = Maddpg(env.obs_dims, env.act_dim, learners, cfg.maddpg, policy, torch.Generator(), torch.Generator(),
                     discrete=cfg.env.discrete)  # fmt: skip
    learner.actor.load_state_dict(actors.select(range(learners)).state_dict())
    return learner


def default_prey(cfg: Config) -> str:
    return {PreyMode.learn: "learned", PreyMode.fixed: cfg.prey.checkpoint}.get(cfg.prey.mode, cfg.prey.mode)


def summarize(episodes: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Mean and 95% bootstrap interval of every metric."""
    summary = {}
    for key, values in episodes.items():
        low, high = bootstrap_ci(values.numpy())
        summary[key] = {"mean": values.mean().item(), "ci95": [float(low), float(high)]}
    return summary


@dataclass
class Trained:
    """A run's trained actors, as a checkpoint holds them."""

    checkpoint: Path
    env_steps: int
    rank: int  # genetic mode: the learner whose actors these are
    cfg: Config  # the run's, for one process on the CPU
    actors: StackedMLP


def learner_rank(checkpoint: Path, rank: int | None) -> int:
    """`rank` when given; else the learner that a genetic run named best at this checkpoint (its
    best_learner.json: maddpg/distributed/genetic.py, select_best), else 0."""
    if rank is not None:
        return rank
    named = checkpoint.parent.parent / BEST_LEARNER_FILE
    if named.is_file():
        best = json.loads(named.read_text())
        if best["checkpoint"] == checkpoint.name:
            return best["rank"]
    return 0


def load_trained(target: Path, rank: int | None = None) -> Trained:
    """The latest checkpoint of a run (or the checkpoint named), complete (every rank file matching the
    sha256 its record lists) -> its actors (genetic: learner `rank`'s, by default the best: learner_rank)."""
    checkpoint = latest_checkpoint(target)
    rank = learner_rank(checkpoint, rank)
    fix = "restore it (shipped predators: git checkout maddpg/core/pretrained_predators) or evaluate another checkpoint"
    require_complete(checkpoint, fix)
    state = load_checkpoint(checkpoint, 0)
    cfg = load_config(base=state["config"], overrides=["run.device=cpu", "mode=single"])  # one process here
    actors = trained_actors(checkpoint, cfg, Mode(state["config"]["mode"]), rank, make_env(cfg.env))
    return Trained(checkpoint, state["progress"]["env_steps"], rank, cfg, actors)


def evaluate_run(
    target: Path, prey: str | None = None, seed: int | None = None, rank: int | None = None, episodes: int = 100
) -> tuple[dict, Maddpg, Config]:
    """A run's predators (genetic: learner `rank`'s, by default the best: learner_rank) in `episodes`
    noise-free episodes against `prey` (default: the run's own; weak and strong: those of its action
    type) from the start states of `seed` (default: the run's) -> (the summary, the learner that
    played, the run's config)."""
    trained = load_trained(target, rank)
    cfg = trained.cfg
    prey = prey or default_prey(cfg)
    prey = for_actions(prey, cfg.env.actions)
    seed = cfg.train.seed if seed is None else seed
    env = make_env(replace(cfg.env, n_envs=episodes))
    learner = build_learner(cfg, trained.actors, prey, env)
    summary = {"checkpoint": str(trained.checkpoint), "env_steps": trained.env_steps, "prey": prey, "seed": seed}
    summary |= {"rank": trained.rank, "episodes": episodes}
    summary |= summarize(evaluate_episodes(learner, env, seed, EVAL_INDEX))
    return summary, learner, cfg


def suite(target: Path, seed: int | None = None, rank: int | None = None, episodes: int = 100) -> dict:
    """A run's predators (genetic: learner `rank`'s, by default the best: learner_rank) against every
    prey of SUITE, each beside the greedy team (maddpg/core/scripted.py) on the same start states (and a
    random prey's same draws) -> {"suite": {prey: {"predators": summary, "greedy": summary}}, ...}. A
    discrete run plays the discrete shipped prey (weak_discrete, strong_discrete); the scripted greedy
    team and prey play the argmax of their actions there."""
    trained = load_trained(target, rank)
    cfg = trained.cfg
    seed = cfg.train.seed if seed is None else seed
    env = make_env(replace(cfg.env, n_envs=episodes))
    results = {}
    for prey in SUITE:
        prey = for_actions(prey, cfg.env.actions)
        predators = build_learner(cfg, trained.actors, prey, env)
        greedy = Team(GreedyTeam(cfg.env), opponent(prey, cfg, env), cfg.env.num_adversaries)
        results[prey] = {team: summarize(evaluate_episodes(player, env, seed, EVAL_INDEX))
                         for team, player in (("predators", predators), ("greedy", greedy))}  # fmt: skip
    summary = {"checkpoint": str(trained.checkpoint), "env_steps": trained.env_steps, "seed": seed,
               "rank": trained.rank}  # fmt: skip
    return summary | {"episodes": episodes, "suite": results}


def suite_table(summary: dict) -> str:
    """The suite as a markdown table of predator_return: mean [95% CI]."""

    def cell(result: dict) -> str:
        value = result["predator_return"]
        return f"{value['mean']:.1f} [{value['ci95'][0]:.1f}, {value['ci95'][1]:.1f}]"

    lines = ["| prey | the run's predators | greedy team | difference |", "|---|---|---|---|"]
    for prey, result in summary["suite"].items():
        difference = result["predators"]["predator_return"]["mean"] - result["greedy"]["predator_return"]["mean"]
        lines.append(f"| {prey} | {cell(result['predators'])} | {cell(result['greedy'])} | {difference:+.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", type=Path, help="a run directory, a checkpoint directory or a rank file")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument(
        "--prey",
        help="learned, mix, still, random, flee, weak, strong (a discrete run: weak_discrete, strong_discrete) or a "
        "prey file (default: the run's)",
    )
    parser.add_argument("--suite", action="store_true", help="against every prey of the suite, beside the greedy team")
    parser.add_argument("--seed", type=int, help="start states (default: the run's train.seed)")
    parser.add_argument("--rank", type=int, help="genetic mode: which learner (default: the best, else 0)")
    parser.add_argument("--gif", type=Path, help="also draw the first episode into this GIF")
    parser.add_argument("--out", type=Path, help="the JSON summary (default: RUN_DIR/evaluation.json or suite.json)")
    args = parser.parse_args(argv)
    with command_errors():
        if args.suite and (args.prey or args.gif):
            raise ConfigError("--suite plays every prey and draws nothing: drop --prey and --gif, or --suite")
        if args.suite:
            summary = suite(args.target, args.seed, args.rank, args.episodes)
        else:
            summary, learner, cfg = evaluate_run(args.target, args.prey, args.seed, args.rank, args.episodes)
    name = "suite.json" if args.suite else "evaluation.json"
    out = args.out or Path(summary["checkpoint"]).parent.parent / name
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(suite_table(summary) if args.suite else json.dumps(summary, indent=2))
    if args.gif:
        write_gif(render_states(record_episode(learner, cfg.env, summary["seed"]), cfg.env), args.gif)


if __name__ == "__main__":
    main()
