"""Train MADDPG on mpe2's simple_tag (predators vs prey), in one process or several under torchrun.

    python train.py                                         # single process, default config
    maddpg-train --config configs/fast.yaml                 # the same, as the installed console command
    python train.py --config configs/smoke.yaml             # a YAML file over the defaults
    python train.py train.total_steps=20000 prey.mode=random  # key=value overrides over both
    python train.py --resume runs/NAME train.total_steps=400000  # continue a run from its latest checkpoint
    torchrun --standalone --nproc_per_node=2 train.py --mode data   # replicas averaging gradients
    torchrun --standalone --nproc_per_node=4 train.py --mode model  # one learning agent per rank
    torchrun --standalone --nproc_per_node=5 train.py --mode pipeline  # model + a rank stepping the envs
    torchrun --standalone --nproc_per_node=5 train.py --mode genetic   # 5 learners sharing the best critic
    torchrun --nnodes=2 --nproc_per_node=2 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 train.py --mode data
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --standalone --nproc_per_node=2 --max-restarts=3 \
        train.py --mode data run.name=NAME          # restarted on failure (see maddpg/distributed/elastic.py)

Every key, its type and its default are in maddpg/core/config.py. A run writes runs/<name>/:
config.yaml, provenance.jsonl (the commit, PyTorch build, CPU and threads of each start and
resume: maddpg/core/provenance.py), metrics.jsonl (one row per evaluation), tensorboard/, checkpoints/
(a file per rank), learning_curve.png, episode.gif, prey.pt when the prey learned (usable as
prey.mode=fixed), and in genetic mode syncs.jsonl (one row per sync) and best_learner.json (the
learner to keep, maddpg/distributed/genetic.py). Only rank 0 writes, except each rank's own
checkpoint file. Under --max-restarts a restarted job continues its run directory from its newest
complete checkpoint (maddpg/distributed/elastic.py, maddpg/core/checkpoint.py). Bad input stops
every rank with one line and exit code 2; a NaN or Inf loss or parameter with exit code 3. Ctrl-C
(SIGINT) or SIGTERM, to the whole job or to any one rank, stops every rank at the end of the episode
under way, with a checkpoint, one line saying how to resume, and exit code 130 or 143 (maddpg/core/stop.py).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from maddpg.core import provenance, seeding
from maddpg.core.buffer import MixedBuffer, ReplayBuffer, states
from maddpg.core.checkpoint import (
    CHECKPOINT_VERSION,
    RECORD_FILE,
    checkpoint_dir,
    latest_good_checkpoint,
    load_checkpoint,
    rank_checkpoints,
    require_one_directory,
    save_atomic,
    save_checkpoint,
    write_atomic,
)
from maddpg.core.comm import Comm, exit_process, on_main, setup, teardown, together, world_size_from_env
from maddpg.core.config import Config, Mode, PreyMode, check_resumable, load_config, load_yaml, to_dict, to_yaml
from maddpg.core.envs import VecEnv, make_env
from maddpg.core.errors import ConfigError, exit_on_error
from maddpg.core.evaluation import evaluate
from maddpg.core.guard import stop_on_nonfinite_parameter
from maddpg.core.learner import Maddpg, Prey, exploration_scale
from maddpg.core.metrics import MetricsLog, Tally, read_rows
from maddpg.core.opponents import MixedPrey, opponent
from maddpg.core.prey import RandomPrey, prey_actor, prey_payload
from maddpg.core.render import plot_learning_curve, record_episode, render_states, write_gif
from maddpg.core.stop import StopRequest, exit_code, signal_name
from maddpg.core.twin import Observer
from maddpg.distributed import elastic
from maddpg.distributed.genetic import BEST_LEARNER_FILE, Fitness, Population, select_best
from maddpg.distributed.modes import Placement, placement
from maddpg.distributed.pipeline import RolloutLink, serve
from maddpg.distributed.updates import LocalUpdates, Updates

SILENT_RANK_WAIT_S = 30.0  # a rank other than 0 with a config error waits this long for rank 0 to say it


@dataclass
class Progress:
    """The counters a checkpoint carries for an exact resume."""

    env_steps: int = 0  # transitions collected, all env copies together
    episode: int = 0  # index of the current training episode (seeds its start states)
    wall_clock: float = 0.0  # seconds of training, summed over resumed segments
    next_eval: int = 0
    next_checkpoint: int = 0
    update_credit: float = 0.0  # fractional updates owed by the updates_per_step schedule

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", help="distribution mode (sets the config key `mode`); default single")
    parser.add_argument("--config", help="YAML file overriding the defaults of maddpg/core/config.py")
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
    """Decided on rank 0 and broadcast: every rank resumes from the same checkpoint. Every rank first
    reports the checkpoint files of its own that it sees, so that ranks on nodes with run directories
    of their own stop rather than start again (see checkpoint.require_one_directory)."""
    run_dir = on_main(comm, lambda: run_directory(cfg, args))
    views = comm.all_gather_object((socket.gethostname(), rank_checkpoints(run_dir, comm.rank)))
    return on_main(comm, lambda: _start(args, run_dir, views))


def run_directory(cfg: Config, args: argparse.Namespace) -> Path:
    if args.resume is not None:
        return Path(args.resume)
    elastic.require_name(cfg.run.name)
    return Path(cfg.run.dir) / (cfg.run.name or datetime.now().strftime("%Y%m%d-%H%M%S"))


def _start(args: argparse.Namespace, run_dir: Path, views: list[tuple[str, list[str]]]) -> Start:
    require_one_directory(run_dir, views)
    if args.resume is None:
        if not run_dir.exists():
            return Start(run_dir)
        if elastic.continues(run_dir):  # None: the failed attempt wrote no checkpoint, start again
            return Start(run_dir, latest_good_checkpoint(run_dir), continued=True)
        raise ConfigError(f"run directory {run_dir} exists: pass --resume {run_dir} or set run.name=NEW_NAME")
    checkpoint = latest_good_checkpoint(run_dir)
    if checkpoint is None:
        raise ConfigError(
            f"--resume {run_dir}: no complete checkpoint (its {RECORD_FILE} listing every rank's file) in "
            f"{run_dir / 'checkpoints'}; start a new run"
        )
    return Start(run_dir, checkpoint, continued=True)


class Checkpoints:
    """This rank's part of the run's checkpoints: `parts`, each with state_dict and load_state_dict,
    saved under their keys together with what wrote them (a resume must match it)."""

    def __init__(self, cfg: Config, comm: Comm, run_dir: Path, learner: Maddpg, agent_names: list[str]):
        self.cfg, self.comm, self.run_dir, self.learner, self.agent_names = cfg, comm, run_dir, learner, agent_names
        self.parts: dict[str, object] = {"learner": learner} | prey_part(learner.prey)

    def restore(self, checkpoint: Path) -> None:
        """Load this rank's file of `checkpoint` into the parts. The checkpoint must have been written by
        a job of this mode and world size."""
        cfg, comm = self.cfg, self.comm
        state = load_checkpoint(checkpoint, comm.rank, comm.device)
        written = (state["mode"], state["world_size"])
        if written != (cfg.mode.value, comm.world_size):
            mode, ranks = written
            launch = "python train.py" if ranks == 1 else f"torchrun --nproc_per_node={ranks} train.py (on one node)"
            raise ConfigError(
                f"{checkpoint} was written by {ranks} rank(s) in mode {mode}, this job is {comm.world_size} in mode "
                f"{cfg.mode.value}: resume it with {launch} --mode {mode}"
            )
        try:
            for key, part in self.parts.items():
                part.load_state_dict(state[key])
        except (KeyError, TypeError, RuntimeError) as error:  # missing entries, or tensors of other shapes
            raise ConfigError(
                f"{checkpoint} (rank {comm.rank}) does not fit this run ({error!r:.200}): "
                "resume with the config that wrote it"
            ) from None

    def save(self, env_steps: int) -> None:
        """Every rank's part at `env_steps`, then rank 0 records it complete and prunes the older ones
        (checkpoint.save_checkpoint); a non-finite parameter on any rank stops them all first."""
        cfg, comm = self.cfg, self.comm
        stop_on_nonfinite_parameter(self.learner, self.agent_names, env_steps, comm)  # never checkpoint a NaN
        written_by = {"version": CHECKPOINT_VERSION, "config": to_dict(cfg), "mode": cfg.mode.value,
                      "world_size": comm.world_size}  # fmt: skip
        state = written_by | {key: part.state_dict() for key, part in self.parts.items()}
        save_checkpoint(state, self.run_dir, env_steps, comm, cfg.train.keep_checkpoints)


def prey_part(prey: Prey | None) -> dict:
    """{"prey": prey} when a checkpoint must carry the prey's state (a random prey's streams), else {}."""
    return {"prey": prey} if isinstance(prey, RandomPrey | MixedPrey) else {}


def build(cfg: Config, device: torch.device, place: Placement) -> tuple[VecEnv, VecEnv, Maddpg, ReplayBuffer | None]:
    """Envs, learner and buffer. Random streams come from (train.seed, place.replica) through
    seeding.Streams. Initial weights are identical on every rank (rank 0's INIT stream), except in
    genetic mode with genetic.diverse_init, where each learner starts from its own."""
    streams = seeding.Streams(cfg.train.seed, place.replica)
    env = make_env(cfg.env, device)
    eval_env = make_env(replace(cfg.env, n_envs=cfg.train.eval_episodes), device)
    generators = tuple(streams.generator(purpose, device) for purpose in (seeding.PREY, seeding.PREY_TARGET))
    prey = opponent(cfg.prey, cfg.env, env.obs_dim, env.act_dim, device, generators)
    diverse = cfg.mode == Mode.genetic and cfg.genetic.diverse_init
    torch.manual_seed(seeding.Streams(cfg.train.seed, place.replica if diverse else 0).seed_of(seeding.INIT))
    explore, update = (streams.generator(purpose, device) for purpose in (seeding.EXPLORE, seeding.UPDATE))
    learner = Maddpg(
        env.obs_dims, env.act_dim, cfg.n_learners, cfg.maddpg, prey, explore, update, device, agents=place.agents,
        gather=place.gather, reduce_grads=place.reduce_grads, discrete=cfg.env.discrete,
    )  # fmt: skip
    if place.serves_updates:
        return env, eval_env, learner, None  # pipeline learners get their batches from rank 0
    capacity = cfg.maddpg.buffer_size * place.population // place.replicas
    if cfg.mode == Mode.genetic and cfg.genetic.share_experience:
        capacity *= place.population  # every learner's transitions: as far back per learner as alone
    return env, eval_env, learner, replay_buffer(cfg, env, prey, capacity, streams)


def replay_buffer(
    cfg: Config, env: VecEnv, prey: Prey | None, capacity: int, streams: seeding.Streams
) -> ReplayBuffer | MixedBuffer:
    """This rank's buffer of `capacity` transitions; against a mix of prey, one per prey (MixedBuffer)."""
    k = len(prey.policies) if isinstance(prey, MixedPrey) else 1
    buffers = [
        ReplayBuffer(capacity // k, Observer(cfg.env, env.device), cfg.env.num_obstacles, env.act_dim, seed=seed,
                     device=env.device, state_dtype=env.state_dtype, checkpoint_data=cfg.train.checkpoint_buffer)
        for seed in seeding.derive_seeds(*streams.key(seeding.SAMPLE), n=k)
    ]  # fmt: skip
    return MixedBuffer(prey, buffers) if isinstance(prey, MixedPrey) else buffers[0]


def main(argv: list[str] | None = None) -> None:
    """Parse, set up the job, run; exits with 2 (bad input), 3 (a non-finite value) or 130/143 (stopped
    by SIGINT/SIGTERM, see maddpg/core/stop.py)."""
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    world_size = world_size_from_env()
    try:
        cfg = resolve_config(args, overrides, world_size)
    except ConfigError as error:
        if int(os.environ.get("RANK", "0")):
            # Before the process group, no rank can wait for another: every rank read the same config,
            # rank 0 says why, and its exit makes torchrun stop this one. Leaving first could have
            # torchrun stop rank 0 before it speaks; an error rank 0 did not share is said after the wait.
            time.sleep(SILENT_RANK_WAIT_S)
        exit_on_error(error)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = torch.device(cfg.run.device)
    comm = setup(device)
    clean = False
    try:
        code = run(cfg, args, comm)
        clean = True  # every rank got here: the run ended, or stopped together
    except KeyboardInterrupt:  # Ctrl-C before training began or after its checkpoint: nothing to save
        code = 130
    except SystemExit as stopped:  # an error on some rank, every rank leaving together (see stop_together)
        code = stopped.code
    finally:
        teardown(wait_for_peers=clean)  # otherwise peers may be inside a collective: leave, torchrun stops them
    if comm.world_size > 1:
        exit_process(code)
    if code:
        raise SystemExit(code)


def run(cfg: Config, args: argparse.Namespace, comm: Comm) -> int:
    """Build (or restore) everything on this rank, train, and write the run's outputs -> the exit code."""
    place = placement(cfg, comm)
    start = together(comm, lambda: resolve_start(cfg, args, comm))
    env, eval_env, learner, buffer = together(comm, lambda: build(cfg, comm.device, place))
    checkpoints = Checkpoints(cfg, comm, start.run_dir, learner, env.agent_names[: cfg.n_learners])
    if place.serves_updates:  # a pipeline learner rank
        restore = None if start.checkpoint is None else lambda: checkpoints.restore(start.checkpoint)
        return serve(learner, cfg, comm, env.state_dtype, place.batch_size, restore, checkpoints.save)

    progress = Progress(next_checkpoint=cfg.train.checkpoint_every)
    tally = Tally(checkpoints.agent_names, comm, place.gather)
    population = None
    if cfg.mode == Mode.genetic:
        measure = together(comm, lambda: Fitness(cfg, comm, learner, eval_env))  # loads a shipped prey
        population = Population(cfg.genetic, comm, learner, cfg.train.seed, measure)
        buffer = population.shared(buffer)
    checkpoints.parts |= {"buffer": buffer, "tally": tally, "progress": progress}
    checkpoints.parts |= {} if population is None else {"population": population}
    if start.checkpoint is not None:
        together(comm, lambda: checkpoints.restore(start.checkpoint))
    metrics = open_metrics(cfg, start, progress, comm)
    if cfg.mode == Mode.pipeline:
        updates = RolloutLink(learner, comm, cfg, buffer, tally, place.batch_size)
    else:
        updates = LocalUpdates(learner, buffer, tally, comm, place.batch_size)
    try:
        with StopRequest() as stop:
            stopped_by = Loop(cfg, place, comm, env, eval_env, learner, buffer, updates, checkpoints, progress, tally,
                              metrics, population, stop).run()  # fmt: skip
    finally:
        if metrics is not None:
            metrics.close()
    if stopped_by:  # agreed by every rank, whichever the signal reached
        if comm.is_main:
            print(stopped_line(stopped_by, progress.env_steps, start.run_dir, comm.world_size), file=sys.stderr)
        return exit_code(stopped_by)
    finish(cfg, start.run_dir, env, learner, comm)
    if population is not None:
        name_best_learner(cfg, start.run_dir, progress.env_steps, learner, comm)
    return 0


def open_metrics(cfg: Config, start: Start, progress: Progress, comm: Comm) -> MetricsLog | None:
    """Rank 0 creates the run directory (or says how an elastic restart continues it), writes config.yaml
    and this segment's provenance row, and opens the metrics log -> the log (None on other ranks). Every
    rank waits for the directory."""
    metrics = None
    if comm.is_main:
        run_dir = start.run_dir
        if not start.continued:
            run_dir.mkdir(parents=True, exist_ok=True)
            elastic.record(run_dir)
        elif elastic.restart_count():
            origin = start.checkpoint or "env step 0 (no checkpoint was written)"
            print(f"elastic restart {elastic.restart_count()}: {run_dir} continues from {origin}", file=sys.stderr)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        provenance.record(run_dir, progress.env_steps, comm.device, comm.world_size)
        # A continued run keeps the rows up to its checkpoint; with none to resume from, none of them.
        resume_step = (progress.env_steps if start.checkpoint else -1) if start.continued else None
        metrics = MetricsLog(run_dir, resume_step=resume_step)
    comm.barrier()  # the run directory exists before any rank writes into it
    return metrics


def stopped_line(signum: int, env_steps: int, run_dir: Path, world_size: int) -> str:
    """The one line a stopped run prints: where it stopped and the command that continues it."""
    nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
    if world_size == 1:
        command = f"python train.py --resume {run_dir}"
    elif nodes == 1:
        command = f"torchrun --standalone --nproc_per_node={world_size} train.py --resume {run_dir}"
    else:
        command = f"the same torchrun launch on every node, with train.py --resume {run_dir}"
    return f"stopped by {signal_name(signum)} at env step {env_steps}, checkpoint written: resume with {command}"


def summary_line(row: dict, cfg: Config) -> str:
    """The last evaluation in one line: the final one, or the last before the end when total_steps is
    not a multiple of eval_every."""
    prey = {PreyMode.learn: "its own learned prey", PreyMode.random: "a random prey", PreyMode.still: "a still prey",
            PreyMode.flee: "the fleeing prey", PreyMode.fixed: f"the {cfg.prey.checkpoint} prey",
            PreyMode.mix: f"a mix of prey ({', '.join(cfg.prey.mix)})"}[cfg.prey.mode]  # fmt: skip
    steps, total = row["env_steps"], cfg.train.total_steps
    when = f"final evaluation at {steps:,}" if steps >= total else f"last evaluation at {steps:,} of {total:,}"
    return (
        f"{when} env steps ({cfg.train.eval_episodes} noise-free episodes "
        f"against {prey}): predator_return {row['predator_return']:.1f}, capture_rate {row['capture_rate']:.3f}, "
        f"prey_return {row['prey_return']:.1f}"
    )


def finish(cfg: Config, run_dir: Path, env: VecEnv, learner: Maddpg, comm: Comm) -> None:
    """A finished run's outputs: prey.pt (when the prey learned), episode.gif, the learning curve and a
    summary line. Every rank takes part; rank 0 writes."""
    k = cfg.env.num_adversaries
    if cfg.prey.mode == PreyMode.learn:
        actors = learner.gather(learner.actor.rows()[None])[0]  # (n_learners, P): model mode's ranks hold one each
        if comm.is_main:
            prey = prey_actor(actors[k:], env.obs_dim, cfg.maddpg.hidden, env.act_dim, cfg.env.discrete)
            payload = prey_payload(prey, cfg.env, env.obs_dim, env.act_dim, cfg.maddpg.hidden)
            save_atomic(payload, run_dir / "prey.pt")
    if cfg.run.gif:
        states = record_episode(learner, cfg.env, cfg.train.seed)  # every rank acts; rank 0 draws
        if comm.is_main:
            write_gif(render_states(states, cfg.env), run_dir / "episode.gif")
    if comm.is_main:
        rows = read_rows(run_dir)
        plot_learning_curve(rows, run_dir / "learning_curve.png")
        print(summary_line(rows[-1], cfg))


def name_best_learner(cfg: Config, run_dir: Path, env_steps: int, learner: Maddpg, comm: Comm) -> None:
    """Genetic mode: the population's best learner at the final checkpoint (genetic.select_best), written
    to best_learner.json, which `python -m maddpg.evaluate RUN` plays by default. Every rank takes part."""
    env = make_env(replace(cfg.env, n_envs=cfg.genetic.select_episodes), learner.device)
    best = select_best(cfg, comm, learner, env)
    if comm.is_main:
        best = {"rank": best["rank"], "checkpoint": checkpoint_dir(run_dir, env_steps).name, "env_steps": env_steps,
                **best}  # fmt: skip
        write_atomic(run_dir / BEST_LEARNER_FILE, lambda path: path.write_text(json.dumps(best, indent=2) + "\n"))
        mean = best["learners"][best["rank"]]["mean"]
        prey = ", ".join(best["opponents"])
        print(f"best learner: rank {best['rank']}, predator_return {mean:.1f} (mean over {prey} prey)")


class Loop:
    """One rank's training loop, from `p` to train.total_steps or to the end of the episode in which a
    stop was requested on any rank, ending with a checkpoint. The mode is in `place` and `updates`,
    not here."""

    def __init__(
        self, cfg: Config, place: Placement, comm: Comm, env: VecEnv, eval_env: VecEnv, learner: Maddpg,
        buffer: ReplayBuffer | MixedBuffer, updates: Updates, checkpoints: Checkpoints, p: Progress, tally: Tally,
        metrics: MetricsLog | None, population: Population | None, stop: StopRequest,
    ):  # fmt: skip
        self.cfg, self.place, self.comm, self.env, self.eval_env = cfg, place, comm, env, eval_env
        self.learner, self.buffer, self.updates, self.checkpoints = learner, buffer, updates, checkpoints
        self.p, self.tally, self.metrics, self.population, self.stop = p, tally, metrics, population, stop
        self.streams = seeding.Streams(cfg.train.seed, place.replica)
        self.steps_per_iteration = env.n_envs * place.replicas  # transitions collected by all ranks together
        # Per-learner clocks: W data replicas share one learner's work (each takes every update on its
        # micro-batch); genetic learners each have their own, and each explores like a single run.
        self.learner_steps_per_iteration = self.steps_per_iteration // place.population
        self.start = time.perf_counter() - p.wall_clock
        self.last_save = time.monotonic()
        self.saved_at = p.env_steps if p.env_steps else None  # a resumed run starts from this step's checkpoint
        self.state: dict | None = None  # the world state before the next step
        self.terminal = torch.zeros(env.n_envs, device=env.device)  # simple_tag episodes only end by truncation
        show = cfg.run.progress and comm.is_main
        self.bar = tqdm(total=cfg.train.total_steps, initial=p.env_steps, disable=not show)

    def run(self) -> int:
        """-> the signal every rank stops on (0: the run reached train.total_steps)."""
        p, cfg, bar = self.p, self.cfg, self.bar
        if p.env_steps == 0:
            self.log_row()  # the untrained policy, as the curve's first point
            p.next_eval = cfg.train.eval_every
        obs = None  # None: the next step starts a new episode
        episode_return = torch.zeros(self.env.n_envs, device=self.env.device)  # predators' sum, per env copy
        stopped_by = 0
        while p.env_steps < cfg.train.total_steps:
            obs, truncated = self.collect(obs, episode_return)
            self.learn()
            bar.update(self.steps_per_iteration)
            if p.env_steps >= p.next_eval:
                self.log_row()
                p.next_eval += cfg.train.eval_every
            self.sync()
            if truncated:
                obs = None
                stopped_by = self.end_episode(episode_return)
                if stopped_by:
                    break
        bar.close()
        p.episode += obs is not None  # a resume starts a fresh episode, abandoning an unfinished one
        if self.saved_at != p.env_steps:
            self.save()
        self.updates.finish(p.env_steps, stopped_by)
        return stopped_by

    def collect(self, obs: torch.Tensor | None, episode_return: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """One step of every env copy, into the buffer -> (the next observations, whether the episode ended)."""
        p, env = self.p, self.env
        with self.tally.timer("env"):
            if obs is None:
                obs = env.reset(self.streams.key(seeding.ENV_TRAIN, p.episode))
                self.state = env.get_state()
            epsilon, noise_std = self.exploration()
            action = self.learner.act(obs, epsilon, noise_std)  # (E, N, A)
            next_obs, reward, truncated = env.step(action)
            next_state = env.get_state()
            self.buffer.add(states(self.state, action, reward, next_state, self.terminal))
            self.state = next_state
            episode_return += reward[:, : self.cfg.env.num_adversaries].sum(1)
            p.env_steps += self.steps_per_iteration
            self.tally.steps += self.steps_per_iteration
        return next_obs, truncated

    def exploration(self) -> tuple[float, float]:
        """(epsilon, noise std) at this learner's own transitions."""
        steps, explore = self.p.env_steps // self.place.population, self.cfg.explore
        return exploration_scale(explore.epsilon, explore, steps), exploration_scale(explore.noise_std, explore, steps)

    def learn(self) -> None:
        """The updates the schedule owes (maddpg.updates_per_step), once the buffer holds learning_starts."""
        p, place = self.p, self.place
        with self.tally.timer("update"):
            if self.buffer.size * place.replicas // place.population >= self.cfg.maddpg.learning_starts:
                p.update_credit += self.learner_steps_per_iteration * self.cfg.maddpg.updates_per_step
                owed = int(p.update_credit)
                p.update_credit -= owed
                if owed:
                    self.updates.add(owed, p.env_steps)

    def log_row(self) -> None:
        """Evaluate the current actors and log a metrics row. Every rank evaluates: in model mode acting
        needs all ranks; elsewhere it is cheap."""
        p, place = self.p, self.place
        self.updates.drain(p.env_steps)
        # Keyed by its env steps, the evaluation draws from streams of its own: training is the same
        # whatever train.eval_every and train.eval_episodes.
        row = {"env_steps": p.env_steps, **evaluate(self.learner, self.eval_env, self.cfg.train.seed, p.env_steps)}
        row["env_steps_per_rank"] = p.env_steps // place.replicas
        row["env_steps_per_learner"] = p.env_steps // place.population
        row["wall_clock"] = time.perf_counter() - self.start
        epsilon, noise_std = self.exploration()
        row["epsilon"], row["noise_std"] = epsilon, noise_std * self.learner.noise_scale  # in effect now
        row |= self.tally.summary()
        self.tally.reset()
        if self.population is not None:
            row |= self.population.gather_evaluation(row)
        if self.metrics is not None:
            self.metrics.log(row)
        self.updates.check(row, p.env_steps)
        self.bar.set_postfix(predator_return=f"{row['predator_return']:.1f}")

    def sync(self) -> None:
        """Genetic mode: the population's sync, when due."""
        steps_per_learner = self.p.env_steps // self.place.population
        if self.population is not None and self.population.due(steps_per_learner):
            with self.tally.timer("sync"):
                sync = self.population.sync(self.p.env_steps, steps_per_learner)
            if self.metrics is not None:
                self.metrics.log_sync(sync)

    def end_episode(self, episode_return: torch.Tensor) -> int:
        """Count the episode, checkpoint when due (every train.checkpoint_every env steps, or
        train.checkpoint_minutes by any rank's clock) -> the signal some rank received (0: none; the
        largest number when ranks received different ones)."""
        p, minutes = self.p, self.cfg.train.checkpoint_minutes
        self.tally.add_episodes(episode_return)
        episode_return.zero_()
        p.episode += 1
        if self.population is not None:
            with self.tally.timer("sync"):
                self.population.end_episode()
        late = bool(minutes) and time.monotonic() - self.last_save >= 60 * minutes
        signum, late = self.updates.agree([self.stop.signum, int(late)])
        if p.env_steps >= p.next_checkpoint:
            p.next_checkpoint += self.cfg.train.checkpoint_every  # before saving: a resume must not save here again
            self.save()
        elif late:
            self.save()
        return signum

    def save(self) -> None:
        p = self.p
        self.updates.save(p.env_steps)
        p.wall_clock = time.perf_counter() - self.start
        self.checkpoints.save(p.env_steps)
        self.last_save, self.saved_at = time.monotonic(), p.env_steps


if __name__ == "__main__":
    main()
