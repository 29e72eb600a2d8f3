"""Train MADDPG on mpe2's simple_tag (predators vs prey).

    python train.py                                         # single process, default config
    python train.py --config configs/smoke.yaml             # a YAML file over the defaults
    python train.py train.total_steps=20000 prey.mode=random  # key=value overrides over both
    python train.py --resume runs/NAME train.total_steps=400000  # continue a run from its latest checkpoint

Every key, its type and its default are in maddpg/config.py. A run writes runs/<name>/:
config.yaml, metrics.jsonl (one row per evaluation), tensorboard/, checkpoints/,
learning_curve.png, and prey.pt when the prey learned (usable as prey.mode=fixed).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from maddpg import seeding
from maddpg.buffer import Batch, ReplayBuffer
from maddpg.checkpoint import list_checkpoints, load_checkpoint, save_atomic, save_checkpoint
from maddpg.config import Config, ConfigError, PreyMode, exit_on_error, load_config, to_dict, to_yaml
from maddpg.envs import Mpe2VecEnv
from maddpg.evaluate import evaluate
from maddpg.learner import Maddpg, exploration_scale
from maddpg.metrics import MetricsLog, read_rows
from maddpg.plots import plot_learning_curve
from maddpg.prey import RandomPrey, load_prey, prey_payload

CHECKPOINT_VERSION = 1


@dataclass
class Progress:
    """Counters and running sums that a checkpoint must carry for an exact resume."""

    env_steps: int = 0  # transitions collected, all env copies together
    episode: int = 0  # index of the current training episode (seeds its start states)
    wall_clock: float = 0.0  # seconds of training, summed over resumed segments
    next_eval: int = 0
    next_checkpoint: int = 0
    update_credit: float = 0.0  # fractional updates owed by the updates_per_step schedule
    # Sums since the last evaluation row:
    critic_loss: list[float] = field(default_factory=list)
    actor_loss: list[float] = field(default_factory=list)
    updates: int = 0
    episode_returns: float = 0.0  # predator return of finished training episodes (with exploration)
    episodes_done: int = 0


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


def build(cfg: Config, device: torch.device) -> tuple[Mpe2VecEnv, Mpe2VecEnv, Maddpg, ReplayBuffer]:
    """Envs, learner and buffer. Initial weights come from `train.seed` alone (identical on every rank)."""
    seed, rank = cfg.train.seed, 0
    env = Mpe2VecEnv(cfg.env, device)
    eval_env = Mpe2VecEnv(replace(cfg.env, n_envs=cfg.train.eval_episodes), device)
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

    progress = Progress()
    if resume_from is not None:
        state = load_checkpoint(resume_from, device)
        learner.load_state_dict(state["learner"])
        buffer.load_state_dict(state["buffer"])
        progress = Progress(**state["progress"])
    else:
        run_dir.mkdir(parents=True)
        progress.next_checkpoint = cfg.train.checkpoint_every
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    metrics = MetricsLog(run_dir, resume_step=None if resume_from is None else progress.env_steps)
    try:
        train(cfg, run_dir, env, eval_env, learner, buffer, progress, metrics)
    finally:
        metrics.close()
    plot_learning_curve(read_rows(run_dir), run_dir / "learning_curve.png")


def train(
    cfg: Config,
    run_dir: Path,
    env: Mpe2VecEnv,
    eval_env: Mpe2VecEnv,
    learner: Maddpg,
    buffer: ReplayBuffer,
    progress: Progress,
    metrics: MetricsLog,
) -> None:
    seed, rank, p = cfg.train.seed, 0, progress
    n_envs, k = env.n_envs, cfg.env.num_adversaries
    timers = {"env": 0.0, "update": 0.0, "eval": 0.0}
    losses = torch.zeros(2, cfg.n_learners)  # critic, actor sums since the last row
    if p.critic_loss:
        losses = torch.tensor([p.critic_loss, p.actor_loss])
    episode_return = torch.zeros(n_envs)
    bar = tqdm(total=cfg.train.total_steps, initial=p.env_steps, disable=not cfg.run.progress, unit="step")
    start, last_row_time, last_row_steps = time.perf_counter() - p.wall_clock, None, p.env_steps

    def log_row() -> None:
        nonlocal last_row_time, last_row_steps
        t0 = time.perf_counter()
        row = {"env_steps": p.env_steps, **evaluate(learner, eval_env, seed)}
        timers["eval"] += time.perf_counter() - t0
        now = time.perf_counter()
        row["wall_clock"] = now - start
        if last_row_time is not None:
            row["steps_per_s"] = (p.env_steps - last_row_steps) / (now - last_row_time - timers["eval"])
        busy = timers["env"] + timers["update"]
        row["update_time_share"] = timers["update"] / busy if busy else 0.0
        if p.updates:
            mean = (losses / p.updates).tolist()
            row["critic_loss"], row["actor_loss"] = sum(mean[0]) / len(mean[0]), sum(mean[1]) / len(mean[1])
            for i, name in enumerate(env.agent_names[: cfg.n_learners]):
                row[f"critic_loss/{name}"], row[f"actor_loss/{name}"] = mean[0][i], mean[1][i]
        if p.episodes_done:
            row["train_predator_return"] = p.episode_returns / p.episodes_done
        metrics.log(row)
        bar.set_postfix(predator_return=f"{row['predator_return']:.1f}")
        losses.zero_()
        p.updates, p.episode_returns, p.episodes_done = 0, 0.0, 0
        last_row_time, last_row_steps = time.perf_counter(), p.env_steps
        timers.update(env=0.0, update=0.0, eval=0.0)

    def save() -> None:
        p.wall_clock = time.perf_counter() - start
        p.critic_loss, p.actor_loss = losses.tolist()
        state = {
            "version": CHECKPOINT_VERSION,
            "config": to_dict(cfg),
            "learner": learner.state_dict(),
            "buffer": buffer.state_dict(include_data=cfg.train.checkpoint_buffer),
            "progress": asdict(p),
        }
        save_checkpoint(state, run_dir, p.env_steps, cfg.train.keep_checkpoints)

    if p.env_steps == 0:
        log_row()  # the untrained policy, as the curve's first point
        p.next_eval = cfg.train.eval_every
    terminal = torch.zeros(n_envs, device=env.device)  # simple_tag episodes only end by truncation
    obs = env.reset((seed + rank, seeding.ENV_TRAIN, p.episode))
    while p.env_steps < cfg.train.total_steps:
        t0 = time.perf_counter()
        epsilon = exploration_scale(cfg.explore.epsilon, cfg.explore, p.env_steps)
        noise_std = exploration_scale(cfg.explore.noise_std, cfg.explore, p.env_steps)
        action = learner.act(obs, epsilon, noise_std)  # (E, N, A)
        next_obs, reward, truncated = env.step(action)
        buffer.add(Batch(obs, action, reward, next_obs, terminal))
        obs = next_obs
        p.env_steps += n_envs
        episode_return += reward[:, :k].sum(1).cpu()
        t1 = time.perf_counter()
        timers["env"] += t1 - t0

        if buffer.size >= cfg.maddpg.learning_starts:
            p.update_credit += n_envs * cfg.maddpg.updates_per_step
            while p.update_credit >= 1.0:
                critic_loss, actor_loss = learner.update(buffer.sample(cfg.maddpg.batch_size))
                losses[0] += critic_loss.cpu()
                losses[1] += actor_loss.cpu()
                p.updates += 1
                p.update_credit -= 1.0
        timers["update"] += time.perf_counter() - t1
        bar.update(n_envs)

        if p.env_steps >= p.next_eval:
            log_row()
            p.next_eval += cfg.train.eval_every
        if truncated:
            p.episode_returns += episode_return.sum().item()
            p.episodes_done += n_envs
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


if __name__ == "__main__":
    main()
