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

Every key, its type and its default are in maddpg/config.py. A run writes runs/<name>/:
config.yaml, metrics.jsonl (one row per evaluation), tensorboard/, checkpoints/ (a file
per rank), learning_curve.png, episode.gif, prey.pt when the prey learned (usable as
prey.mode=fixed), and in genetic mode syncs.jsonl (one row per sync). Only rank 0 writes,
except each rank's own checkpoint file.
"""

from __future__ import annotations

import argparse
import os
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
from maddpg.config import Config, ConfigError, Mode, PreyMode, exit_on_error, load_config, to_dict, to_yaml
from maddpg.distributed import Comm, exit_process, setup, teardown, world_size_from_env
from maddpg.envs import VecEnv, make_env
from maddpg.evaluate import evaluate
from maddpg.genetic import Population
from maddpg.learner import Maddpg, exploration_scale
from maddpg.metrics import MetricsLog, Tally, read_rows
from maddpg.modes import Placement, placement
from maddpg.pipeline import DONE, SAVE, RolloutLink, serve_updates
from maddpg.plot import plot_learning_curve
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
    args = parser.parse_intermixed_args(argv)  # options may come between the key=value overrides
    overrides = list(args.overrides) + ([f"mode={args.mode}"] if args.mode else [])
    return args, overrides


def resolve_config(args: argparse.Namespace, overrides: list[str], world_size: int) -> Config:
    """The run's config: a new run's, or a resumed run's saved config.yaml with the overrides on top."""
    if args.resume is None:
        return load_config(args.config, overrides, world_size=world_size)
    saved = Path(args.resume) / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"--resume {args.resume}: no config.yaml there; pass a run directory written by train.py")
    base = OmegaConf.to_container(OmegaConf.load(saved))
    return load_config(args.config, overrides, base=base, world_size=world_size)


def resolve_run_dir(cfg: Config, args: argparse.Namespace, comm: Comm) -> tuple[Path, Path | None]:
    """The run directory and the checkpoint to resume from (None for a new run), decided on rank 0."""
    if comm.is_main:
        try:
            decision = (*_run_dir(cfg, args, comm.world_size), None)
        except ConfigError as error:
            decision = (None, None, str(error))
    else:
        decision = None
    run_dir, resume_from, error = comm.broadcast_object(decision)
    if error is not None:
        raise ConfigError(error)
    return run_dir, resume_from


def _run_dir(cfg: Config, args: argparse.Namespace, world_size: int) -> tuple[Path, Path | None]:
    if args.resume is None:
        run_dir = Path(cfg.run.dir) / (cfg.run.name or datetime.now().strftime("%Y%m%d-%H%M%S"))
        if run_dir.exists():
            raise ConfigError(f"run directory {run_dir} exists: pass --resume {run_dir} or set run.name=NEW_NAME")
        return run_dir, None
    run_dir = Path(args.resume)
    checkpoints = list_checkpoints(run_dir, world_size)
    if not checkpoints:
        raise ConfigError(
            f"--resume {run_dir}: no checkpoint from all {world_size} ranks in {run_dir / 'checkpoints'}; "
            "start a new run, or resume with the world size that wrote it"
        )
    return run_dir, checkpoints[-1]


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
    try:
        run_dir, resume_from = resolve_run_dir(cfg, args, comm)
        env, eval_env, learner, buffer = build(cfg, device, place)
    except ConfigError as error:
        exit_on_error(error, speak=comm.is_main)

    if place.serves_updates:
        if resume_from is not None:
            learner.load_state_dict(load_checkpoint(resume_from, comm.rank, device)["learner"])
        comm.barrier()  # rank 0 creates the run directory

        def save(env_steps: int) -> None:
            state = {"version": CHECKPOINT_VERSION, "config": to_dict(cfg), "learner": learner.state_dict()}
            save_checkpoint(state, run_dir, env_steps, comm.rank, comm.world_size, cfg.train.keep_checkpoints)

        serve_updates(learner, env.n_agents, env.obs_dim, env.act_dim, place.batch_size, save)
        return

    progress = Progress(next_checkpoint=cfg.train.checkpoint_every)
    tally = Tally(env.agent_names[: cfg.n_learners], comm, place.gather)
    population = Population(cfg.genetic, comm, learner, cfg.train.seed) if cfg.mode == Mode.genetic else None
    if resume_from is not None:
        state = load_checkpoint(resume_from, comm.rank, device)
        learner.load_state_dict(state["learner"])
        buffer.load_state_dict(state["buffer"])
        progress = Progress(**state["progress"])
        tally.load_state_dict(state["tally"])
        if population is not None:
            population.load_state_dict(state["population"])
    metrics = None
    if comm.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        metrics = MetricsLog(run_dir, resume_step=None if resume_from is None else progress.env_steps)
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
        bar.set_postfix(predator_return=f"{row['predator_return']:.1f}")

    def save() -> None:
        if link is not None:
            link.drain(p.env_steps)
            link.send([], p.env_steps, flags=SAVE)  # the learner ranks save their part
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
            if p.env_steps >= p.next_checkpoint:
                save()
                p.next_checkpoint += cfg.train.checkpoint_every
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
