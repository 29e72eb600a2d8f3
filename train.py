"""Train MADDPG on mpe2's simple_tag (predators vs prey), in one process or several under torchrun.

    python train.py                                         # single process, default config
    python train.py --config configs/smoke.yaml             # a YAML file over the defaults
    python train.py train.total_steps=20000 prey.mode=random  # key=value overrides over both
    python train.py --resume runs/NAME train.total_steps=400000  # continue a run from its latest checkpoint
    torchrun --standalone --nproc_per_node=2 train.py --mode data   # replicas averaging gradients
    torchrun --standalone --nproc_per_node=4 train.py --mode model  # one learning agent per rank
    torchrun --standalone --nproc_per_node=5 train.py --mode pipeline  # model + a rank stepping the envs
    torchrun --standalone --nproc_per_node=5 train.py --mode genetic   # 5 learners sharing the best critic
    torchrun --nnodes=2 --nproc_per_node=2 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 train.py --mode data
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --standalone --nproc_per_node=2 --max-restarts=3 \
        train.py --mode data run.name=NAME                      # restarted on failure (see maddpg/elastic.py)

Every key, its type and its default are in maddpg/config.py. A run writes runs/<name>/:
config.yaml, metrics.jsonl (one row per evaluation), tensorboard/, checkpoints/ (a file
per rank), learning_curve.png, episode.gif, prey.pt when the prey learned (usable as
prey.mode=fixed), and in genetic mode syncs.jsonl (one row per sync). Only rank 0 writes,
except each rank's own checkpoint file. Under --max-restarts a restarted job continues its run
directory from the latest checkpoint that matches its sha256s (maddpg/elastic.py). Bad input stops
every rank with one line and exit code 2; a NaN or Inf loss or parameter with exit code 3.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import torch
from tqdm import tqdm

from maddpg import elastic, seeding
from maddpg.buffer import Batch, ReplayBuffer
from maddpg.checkpoint import CHECKPOINT_VERSION, latest_good_checkpoint, load_checkpoint, save_atomic, save_checkpoint
from maddpg.config import (
    Config,
    ConfigError,
    Mode,
    PreyMode,
    check_resumable,
    exit_on_error,
    load_config,
    load_yaml,
    to_dict,
    to_yaml,
)
from maddpg.distributed import Comm, exit_process, setup, teardown, world_size_from_env
from maddpg.envs import VecEnv, make_env
from maddpg.errors import NonFiniteError
from maddpg.evaluate import evaluate
from maddpg.genetic import Population
from maddpg.guard import nonfinite_error, nonfinite_loss, nonfinite_parameter
from maddpg.learner import Maddpg, exploration_scale
from maddpg.metrics import MetricsLog, Tally, read_rows
from maddpg.modes import Placement, placement
from maddpg.pipeline import DONE, SAVE, RolloutLink, serve_updates
from maddpg.plot import plot_learning_curve
from maddpg.prey import RandomPrey, load_prey, prey_payload
from maddpg.render import record_episode, render_states, write_gif

T = TypeVar("T")


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
    args = parser.parse_intermixed_args(argv)  # options may come between the key=value overrides
    overrides = list(args.overrides) + ([f"mode={args.mode}"] if args.mode else [])
    return args, overrides


def resolve_config(args: argparse.Namespace, overrides: list[str], world_size: int) -> Config:
    """The run's config: a new run's, or a resumed run's saved config.yaml with the overrides on top
    (which may change only what config.RESUMABLE lists)."""
    if args.resume is None:
        return load_config(args.config, overrides, world_size=world_size)
    saved = Path(args.resume) / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"--resume {args.resume}: no config.yaml there; pass a run directory written by train.py")
    base = load_yaml(saved, "the run's config")
    cfg = load_config(args.config, overrides, base=base, world_size=world_size)
    check_resumable(load_config(base=base, world_size=world_size), cfg, args.resume)
    return cfg


@dataclass
class Start:
    """Where a run writes and what it starts from, decided on rank 0."""

    run_dir: Path
    checkpoint: Path | None = None  # resume from it; None: start at env step 0
    continued: bool = False  # the directory holds earlier rows: --resume, or an elastic restart of this job


def resolve_start(cfg: Config, args: argparse.Namespace, comm: Comm) -> Start:
    """Decided on rank 0 and broadcast: every rank resumes from the same checkpoint."""
    if comm.is_main:
        try:
            decision = (_start(cfg, args, comm.world_size), None)
        except ConfigError as error:
            decision = (None, str(error))
    else:
        decision = None
    start, error = comm.broadcast_object(decision)
    if error is not None:
        raise ConfigError(error)
    return start


def _start(cfg: Config, args: argparse.Namespace, world_size: int) -> Start:
    if args.resume is None:
        elastic.require_name(cfg.run.name)
        run_dir = Path(cfg.run.dir) / (cfg.run.name or datetime.now().strftime("%Y%m%d-%H%M%S"))
        if not run_dir.exists():
            return Start(run_dir)
        if elastic.continues(run_dir):  # None: the failed attempt wrote no checkpoint, start again
            return Start(run_dir, latest_good_checkpoint(run_dir, world_size), continued=True)
        raise ConfigError(f"run directory {run_dir} exists: pass --resume {run_dir} or set run.name=NEW_NAME")
    run_dir = Path(args.resume)
    checkpoint = latest_good_checkpoint(run_dir, world_size)
    if checkpoint is None:
        raise ConfigError(
            f"--resume {run_dir}: no checkpoint from all {world_size} ranks in {run_dir / 'checkpoints'}; "
            "start a new run, or resume with the world size that wrote it"
        )
    return Start(run_dir, checkpoint, continued=True)


def stop_together(comm: Comm, error: ConfigError | NonFiniteError | None) -> None:
    """If any rank met an error, every rank exits with the lowest such rank's (code 2, or 3 for a
    non-finite value), rank 0 printing its one line. Every rank must call it."""
    error = comm.first(error)
    if error is not None:
        exit_on_error(error, speak=comm.is_main)


def together(comm: Comm, action: Callable[[], T]) -> T:
    """`action()` on every rank; a ConfigError on any rank stops them all (see stop_together)."""
    try:
        result, error = action(), None
    except ConfigError as e:
        result, error = None, e
    stop_together(comm, error)
    return result


def restore(checkpoint: Path, rank: int, device: torch.device, parts: dict[str, object]) -> dict:
    """Load this rank's file of `checkpoint` into `parts` ({state key: object with load_state_dict}) -> the state."""
    state = load_checkpoint(checkpoint, rank, device)
    try:
        for key, part in parts.items():
            part.load_state_dict(state[key])
    except (KeyError, TypeError, RuntimeError) as error:  # missing entries, or tensors of other shapes
        raise ConfigError(
            f"{checkpoint} (rank {rank}) does not fit this run ({error!r:.200}): resume with the config that wrote it"
        ) from None
    return state


def build(cfg: Config, device: torch.device, place: Placement) -> tuple[VecEnv, VecEnv, Maddpg, ReplayBuffer | None]:
    """Envs, learner and buffer. Initial weights come from `train.seed` (identical on every rank),
    except in genetic mode with genetic.diverse_init, where each learner starts from seed + rank."""
    seed = cfg.train.seed + place.replica
    env = make_env(cfg.env, device)
    eval_env = make_env(replace(cfg.env, n_envs=cfg.train.eval_episodes), device)
    generator = seeding.generator(seed, seeding.EXPLORE, device=device)
    if cfg.prey.mode == PreyMode.fixed:
        prey = load_prey(cfg.prey.checkpoint, cfg.env, env.obs_dim, env.act_dim, device)
    elif cfg.prey.mode == PreyMode.random:
        prey = RandomPrey(env.act_dim, generator)
    else:
        prey = None
    torch.manual_seed(seed if cfg.mode == Mode.genetic and cfg.genetic.diverse_init else cfg.train.seed)
    learner = Maddpg(
        env.obs_dims, env.act_dim, cfg.n_learners, cfg.maddpg, prey, generator, device,
        agents=place.agents, gather=place.gather, reduce_grads=place.reduce_grads,
    )  # fmt: skip
    if place.serves_updates:
        return env, eval_env, learner, None  # pipeline learners get their batches from rank 0
    buffer = ReplayBuffer(
        cfg.maddpg.buffer_size * place.population // place.replicas, env.n_agents, env.obs_dim, env.act_dim,
        seed=seeding.derive_seeds(seed, seeding.SAMPLE)[0], device=device,
    )  # fmt: skip
    return env, eval_env, learner, buffer


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    world_size = world_size_from_env()
    try:
        cfg = resolve_config(args, overrides, world_size)
    except ConfigError as error:
        exit_on_error(error, speak=int(os.environ.get("RANK", "0")) == 0)
    device = torch.device(cfg.run.device)
    comm = setup(device)
    if device.type == "cuda" and comm.world_size > 1:
        device = torch.device("cuda", comm.local_rank)
    try:
        run(cfg, args, device, comm)
    except BaseException:
        teardown(wait_for_peers=False)  # peers may be inside a collective: leave, and torchrun stops them
        raise
    teardown()


def run(cfg: Config, args: argparse.Namespace, device: torch.device, comm: Comm) -> None:
    """Build (or restore) everything on this rank, train, and write the run's outputs."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    place = placement(cfg, comm)
    start = together(comm, lambda: resolve_start(cfg, args, comm))
    run_dir, resume_from = start.run_dir, start.checkpoint
    env, eval_env, learner, buffer = together(comm, lambda: build(cfg, device, place))

    if place.serves_updates:
        if resume_from is not None:
            together(comm, lambda: restore(resume_from, comm.rank, device, {"learner": learner}))
        comm.barrier()  # rank 0 creates the run directory

        def save(env_steps: int) -> None:
            problem = nonfinite_parameter(learner, env.agent_names[: cfg.n_learners])  # never checkpoint a NaN
            stop_together(comm, nonfinite_error(problem, env_steps, comm))
            state = {"version": CHECKPOINT_VERSION, "config": to_dict(cfg), "learner": learner.state_dict()}
            save_checkpoint(state, run_dir, env_steps, comm.rank, comm.world_size, cfg.train.keep_checkpoints)

        serve_updates(learner, env.n_agents, env.obs_dim, env.act_dim, place.batch_size, save)
        return

    progress = Progress(next_checkpoint=cfg.train.checkpoint_every)
    tally = Tally(env.agent_names[: cfg.n_learners], comm, place.gather)
    population = Population(cfg.genetic, comm, learner, cfg.train.seed) if cfg.mode == Mode.genetic else None
    if resume_from is not None:
        parts = {"learner": learner, "buffer": buffer, "tally": tally}
        if population is not None:
            parts["population"] = population
        state = together(comm, lambda: restore(resume_from, comm.rank, device, parts))
        progress = Progress(**state["progress"])
    metrics = None
    if comm.is_main:
        if not start.continued:
            run_dir.mkdir(parents=True, exist_ok=True)
            elastic.record(run_dir)
        elif elastic.restart_count():
            origin = resume_from or "env step 0 (no checkpoint was written)"
            print(f"elastic restart {elastic.restart_count()}: {run_dir} continues from {origin}", file=sys.stderr)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        # A continued run keeps the rows up to its checkpoint; with none to resume from, none of them.
        resume_step = (progress.env_steps if resume_from else -1) if start.continued else None
        metrics = MetricsLog(run_dir, resume_step=resume_step)
    comm.barrier()  # the run directory exists before any rank writes into it
    try:
        train(cfg, run_dir, env, eval_env, learner, buffer, place, comm, progress, tally, metrics, population)
    finally:
        if metrics is not None:
            metrics.close()
    if comm.is_main:
        plot_learning_curve(read_rows(run_dir), run_dir / "learning_curve.png")


def train(
    cfg: Config,
    run_dir: Path,
    env: VecEnv,
    eval_env: VecEnv,
    learner: Maddpg,
    buffer: ReplayBuffer,
    place: Placement,
    comm: Comm,
    p: Progress,
    tally: Tally,
    metrics: MetricsLog | None,
    population: Population | None,
) -> None:
    seed = cfg.train.seed + place.replica
    n_envs, k = env.n_envs, cfg.env.num_adversaries
    steps_per_iteration = n_envs * place.replicas  # transitions collected by all ranks together
    # The update schedule counts each learner's transitions: W data replicas share one learner's
    # work (each takes every update on its micro-batch); genetic learners each have their own.
    learner_steps_per_iteration = steps_per_iteration // place.population
    bar = tqdm(total=cfg.train.total_steps, initial=p.env_steps, disable=not (cfg.run.progress and comm.is_main))
    start = time.perf_counter() - p.wall_clock
    link = RolloutLink(learner, comm, cfg.dist.staleness, cfg.dist.round_updates) if cfg.mode == Mode.pipeline else None

    def learn(updates: int) -> None:
        batches = [buffer.sample(place.batch_size) for _ in range(updates)]
        if link is not None:
            link.add(batches, p.env_steps)  # the pipeline's learner ranks run the updates
            return
        for batch in batches:
            tally.add_update(*learner.update(batch))

    def log_row() -> None:
        if link is not None:
            link.drain(p.env_steps)  # evaluate the current actors
        # Every rank evaluates: in model mode acting needs all ranks; elsewhere it is cheap.
        row = {"env_steps": p.env_steps, **evaluate(learner, eval_env, cfg.train.seed)}
        row["env_steps_per_rank"] = p.env_steps // place.replicas
        row["env_steps_per_learner"] = p.env_steps // place.population
        row["wall_clock"] = time.perf_counter() - start
        row |= tally.summary()
        tally.reset()
        if population is not None:
            row |= population.gather_evaluation(row)
        if metrics is not None:
            metrics.log(row)
        if link is None:  # pipeline: rank 0's rows hold no losses; its learners check their parameters at saves
            stop_together(comm, nonfinite_error(nonfinite_loss(row, tally.agent_names), p.env_steps, comm))
        bar.set_postfix(predator_return=f"{row['predator_return']:.1f}")

    last_save = time.monotonic()

    def minutes_due() -> bool:
        """train.checkpoint_minutes since the last checkpoint, by rank 0's clock, broadcast so that every
        rank saves the same step (pipeline: rank 0 alone decides, and tells its learners)."""
        if not cfg.train.checkpoint_minutes:
            return False
        late = time.monotonic() - last_save >= 60 * cfg.train.checkpoint_minutes
        return late if link is not None else comm.broadcast_object(late)

    def save() -> None:
        nonlocal last_save
        if link is not None:
            link.drain(p.env_steps)
            link.send([], p.env_steps, flags=SAVE)  # the learner ranks save their part
        stop_together(comm, nonfinite_error(nonfinite_parameter(learner, tally.agent_names), p.env_steps, comm))
        p.wall_clock = time.perf_counter() - start
        state = {
            "version": CHECKPOINT_VERSION,
            "config": to_dict(cfg),
            "learner": learner.state_dict(),
            "buffer": buffer.state_dict(include_data=cfg.train.checkpoint_buffer),
            "progress": asdict(p),
            "tally": tally.state_dict(),
        } | ({} if population is None else {"population": population.state_dict()})
        save_checkpoint(state, run_dir, p.env_steps, comm.rank, comm.world_size, cfg.train.keep_checkpoints)
        last_save = time.monotonic()

    if p.env_steps == 0:
        log_row()  # the untrained policy, as the curve's first point
        p.next_eval = cfg.train.eval_every
    terminal = torch.zeros(n_envs, device=env.device)  # simple_tag episodes only end by truncation
    episode_return = torch.zeros(n_envs, device=env.device)  # predators' sum, per env copy
    obs = env.reset((seed, seeding.ENV_TRAIN, p.episode))
    while p.env_steps < cfg.train.total_steps:
        with tally.timer("env"):
            epsilon = exploration_scale(cfg.explore.epsilon, cfg.explore, p.env_steps)
            noise_std = exploration_scale(cfg.explore.noise_std, cfg.explore, p.env_steps)
            action = learner.act(obs, epsilon, noise_std)  # (E, N, A)
            next_obs, reward, truncated = env.step(action)
            buffer.add(Batch(obs, action, reward, next_obs, terminal))
            obs = next_obs
            episode_return += reward[:, :k].sum(1)
            p.env_steps += steps_per_iteration
            tally.steps += steps_per_iteration

        with tally.timer("update"):
            if buffer.size * place.replicas // place.population >= cfg.maddpg.learning_starts:
                p.update_credit += learner_steps_per_iteration * cfg.maddpg.updates_per_step
                owed = int(p.update_credit)
                p.update_credit -= owed
                if owed:
                    learn(owed)
        bar.update(steps_per_iteration)

        if p.env_steps >= p.next_eval:
            log_row()
            p.next_eval += cfg.train.eval_every
        steps_per_learner = p.env_steps // place.population
        if population is not None and population.due(steps_per_learner):
            with tally.timer("sync"):
                sync = population.sync(p.env_steps, steps_per_learner)
            if metrics is not None:
                metrics.log_sync(sync)
        if truncated:
            tally.add_episodes(episode_return)
            episode_return.zero_()
            p.episode += 1
            if p.env_steps >= p.next_checkpoint:  # every train.checkpoint_every env steps, at an episode end
                p.next_checkpoint += cfg.train.checkpoint_every  # before saving: a resume must not save here again
                save()
            elif minutes_due():
                save()
            obs = env.reset((seed, seeding.ENV_TRAIN, p.episode))
    bar.close()

    p.episode += env.t > 0  # a resume starts a fresh episode, abandoning an unfinished one
    save()
    if link is not None:
        link.send([], p.env_steps, flags=DONE)
    if cfg.prey.mode == PreyMode.learn and place.writes_prey:
        prey_actor = learner.actor.select([place.agents.index(i) for i in range(k, env.n_agents)])
        save_atomic(prey_payload(prey_actor, cfg.env, env.obs_dim, env.act_dim, cfg.maddpg.hidden), run_dir / "prey.pt")
    if cfg.run.gif:
        states = record_episode(learner, cfg.env, cfg.train.seed)  # every rank acts; rank 0 draws
        if comm.is_main:
            write_gif(render_states(states, cfg.env), run_dir / "episode.gif")


if __name__ == "__main__":
    main()
    if world_size_from_env() > 1:
        exit_process()
