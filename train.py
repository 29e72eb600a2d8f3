"""Train MADDPG on mpe2's simple_tag (predators vs prey).

    python train.py                                         # single process, default config
    python train.py --config configs/smoke.yaml             # a YAML file over the defaults
    python train.py train.total_steps=20000 prey.mode=random  # key=value overrides over both
    python train.py --resume runs/NAME train.total_steps=400000  # continue a run from its latest checkpoint

Every key, its type and its default are in maddpg/config.py. A run writes runs/<name>/:
config.yaml, metrics.jsonl (one row per evaluation), tensorboard/, checkpoints/,
learning_curve.png, episode.gif, and prey.pt when the prey learned (usable as prey.mode=fixed).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from maddpg import seeding
from maddpg.buffer import Batch, ReplayBuffer
from maddpg.checkpoint import list_checkpoints, load_checkpoint, save_atomic, save_checkpoint
from maddpg.config import Config, ConfigError, PreyMode, exit_on_error, load_config, to_dict, to_yaml
from maddpg.envs import VecEnv, make_env
from maddpg.evaluate import evaluate
from maddpg.learner import Maddpg, exploration_scale
from maddpg.metrics import MetricsLog, Tally, read_rows
from maddpg.plots import plot_learning_curve
from maddpg.prey import RandomPrey, load_prey, prey_payload
from maddpg.render import record_episode, render_states, write_gif

CHECKPOINT_VERSION = 1


@dataclass
class Progress:
    """The counters a checkpoint carries for an exact resume."""

    env_steps: int = 0  # transitions collected, all env copies together
    episode: int = 0  # index of the current training episode (seeds its start states)
    wall_clock: float = 0.0  # seconds of training, summed over resumed segments
    next_eval: int = 0
    next_checkpoint: int = 0
    update_credit: float = 0.0  # fractional updates owed by the updates_per_step schedule


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", help="distribution mode (sets the config key `mode`); default single")
    parser.add_argument("--config", help="YAML file overriding the defaults of maddpg/config.py")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its latest checkpoint")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.seed=3")
    args = parser.parse_args(argv)
    overrides = list(args.overrides) + ([f"mode={args.mode}"] if args.mode else [])
    return args, overrides


def resolve_config(args: argparse.Namespace, overrides: list[str]) -> tuple[Config, Path, Path | None]:
    """The run's config and directory, and the checkpoint to resume from (None for a new run)."""
    if args.resume is None:
        cfg = load_config(args.config, overrides)
        name = cfg.run.name or datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(cfg.run.dir) / name
        if run_dir.exists():
            raise ConfigError(f"run directory {run_dir} exists: pass --resume {run_dir} or set run.name=NEW_NAME")
        return cfg, run_dir, None
    run_dir = Path(args.resume)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"--resume {run_dir}: no config.yaml there; pass a run directory written by train.py")
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise ConfigError(f"--resume {run_dir}: no checkpoint in {run_dir / 'checkpoints'}; start a new run instead")
    cfg = load_config(args.config, overrides, base=OmegaConf.to_container(OmegaConf.load(saved)))
    return cfg, run_dir, checkpoints[-1]


def build(cfg: Config, device: torch.device) -> tuple[VecEnv, VecEnv, Maddpg, ReplayBuffer]:
    """Envs, learner and buffer. Initial weights come from `train.seed` alone (identical on every rank)."""
    seed, rank = cfg.train.seed, 0
    env = make_env(cfg.env, device)
    eval_env = make_env(replace(cfg.env, n_envs=cfg.train.eval_episodes), device)
    generator = seeding.generator(seed + rank, seeding.EXPLORE, device=device)
    if cfg.prey.mode == PreyMode.fixed:
        prey = load_prey(cfg.prey.checkpoint, cfg.env, env.obs_dim, env.act_dim, device)
    elif cfg.prey.mode == PreyMode.random:
        prey = RandomPrey(env.act_dim, generator)
    else:
        prey = None
    torch.manual_seed(seed)
    learner = Maddpg(env.obs_dims, env.act_dim, cfg.n_learners, cfg.maddpg, prey, generator, device)
    buffer = ReplayBuffer(
        cfg.maddpg.buffer_size, env.n_agents, env.obs_dim, env.act_dim,
        seed=seeding.derive_seeds(seed + rank, seeding.SAMPLE)[0], device=device,
    )  # fmt: skip
    return env, eval_env, learner, buffer


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg, run_dir, resume_from = resolve_config(args, overrides)
        device = torch.device(cfg.run.device)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        env, eval_env, learner, buffer = build(cfg, device)
    except ConfigError as error:
        exit_on_error(error)

    progress, tally = Progress(next_checkpoint=cfg.train.checkpoint_every), Tally(env.agent_names[: cfg.n_learners])
    if resume_from is None:
        run_dir.mkdir(parents=True)
    else:
        state = load_checkpoint(resume_from, device)
        learner.load_state_dict(state["learner"])
        buffer.load_state_dict(state["buffer"])
        progress = Progress(**state["progress"])
        tally.load_state_dict(state["tally"])
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    metrics = MetricsLog(run_dir, resume_step=None if resume_from is None else progress.env_steps)
    try:
        train(cfg, run_dir, env, eval_env, learner, buffer, progress, tally, metrics)
    finally:
        metrics.close()
    plot_learning_curve(read_rows(run_dir), run_dir / "learning_curve.png")


def train(
    cfg: Config,
    run_dir: Path,
    env: VecEnv,
    eval_env: VecEnv,
    learner: Maddpg,
    buffer: ReplayBuffer,
    p: Progress,
    tally: Tally,
    metrics: MetricsLog,
) -> None:
    seed, rank = cfg.train.seed, 0
    n_envs, k = env.n_envs, cfg.env.num_adversaries
    bar = tqdm(total=cfg.train.total_steps, initial=p.env_steps, disable=not cfg.run.progress, unit="step")
    start = time.perf_counter() - p.wall_clock

    def log_row() -> None:
        row = {"env_steps": p.env_steps, **evaluate(learner, eval_env, seed)}
        row["wall_clock"] = time.perf_counter() - start
        metrics.log(row | tally.summary())
        tally.reset()
        bar.set_postfix(predator_return=f"{row['predator_return']:.1f}")

    def save() -> None:
        p.wall_clock = time.perf_counter() - start
        state = {
            "version": CHECKPOINT_VERSION,
            "config": to_dict(cfg),
            "learner": learner.state_dict(),
            "buffer": buffer.state_dict(include_data=cfg.train.checkpoint_buffer),
            "progress": asdict(p),
            "tally": tally.state_dict(),
        }
        save_checkpoint(state, run_dir, p.env_steps, cfg.train.keep_checkpoints)

    if p.env_steps == 0:
        log_row()  # the untrained policy, as the curve's first point
        p.next_eval = cfg.train.eval_every
    terminal = torch.zeros(n_envs, device=env.device)  # simple_tag episodes only end by truncation
    episode_return = torch.zeros(n_envs, device=env.device)  # predators' sum, per env copy
    obs = env.reset((seed + rank, seeding.ENV_TRAIN, p.episode))
    while p.env_steps < cfg.train.total_steps:
        with tally.timer("env"):
            epsilon = exploration_scale(cfg.explore.epsilon, cfg.explore, p.env_steps)
            noise_std = exploration_scale(cfg.explore.noise_std, cfg.explore, p.env_steps)
            action = learner.act(obs, epsilon, noise_std)  # (E, N, A)
            next_obs, reward, truncated = env.step(action)
            buffer.add(Batch(obs, action, reward, next_obs, terminal))
            obs = next_obs
            episode_return += reward[:, :k].sum(1)
            p.env_steps += n_envs
            tally.steps += n_envs

        with tally.timer("update"):
            if buffer.size >= cfg.maddpg.learning_starts:
                p.update_credit += n_envs * cfg.maddpg.updates_per_step
                while p.update_credit >= 1.0:
                    tally.add_update(*learner.update(buffer.sample(cfg.maddpg.batch_size)))
                    p.update_credit -= 1.0
        bar.update(n_envs)

        if p.env_steps >= p.next_eval:
            log_row()
            p.next_eval += cfg.train.eval_every
        if truncated:
            tally.add_episodes(episode_return)
            episode_return.zero_()
            p.episode += 1
            if p.env_steps >= p.next_checkpoint:
                save()
                p.next_checkpoint += cfg.train.checkpoint_every
            obs = env.reset((seed + rank, seeding.ENV_TRAIN, p.episode))
    bar.close()

    p.episode += env.t > 0  # a resume starts a fresh episode, abandoning an unfinished one
    save()
    if cfg.prey.mode == PreyMode.learn:
        prey_actor = learner.actor.select(range(k, env.n_agents))
        save_atomic(prey_payload(prey_actor, cfg.env, env.obs_dim, env.act_dim, cfg.maddpg.hidden), run_dir / "prey.pt")
    if cfg.run.gif:
        write_gif(render_states(record_episode(learner, cfg.env, seed), cfg.env), run_dir / "episode.gif")


if __name__ == "__main__":
    main()
