"""Benchmark (`make bench`), as JSON: env transitions/s of both backends; end-to-end training steps/s
and peak memory of the default and fast presets on both; the default thread policy idle and beside
a busy process, against PyTorch's own; the update's time, GFLOP/s against the dense-matmul peak
and its top costs, and with discrete actions against continuous ones; and the distributed modes
against single mode; and the CPU time of a population of 4 learners in one genetic run against 4
one-learner runs of the same env steps (`population_cost`).

maddpg-bench --out runs/bench.json [--threads N] [--seconds S] [--modes data,model,pipeline]
             [--no-genetic] [--population-cost STEPS] [--compare OLD.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from maddpg.core.buffer import Batch, ReplayBuffer
from maddpg.core.config import Backend, Config, EnvConfig, load_config
from maddpg.core.envs import make_env
from maddpg.core.learner import Maddpg, one_hot
from maddpg.core.metrics import SYNCS_FILE, read_rows
from maddpg.core.twin import ACT_DIM, Observer

ROOT = Path(__file__).resolve().parent.parent  # where train.py is
TWIN_SIZES = (1, 64, 1024, 8192)
MPE2_SIZES = (1, 64)
# End-to-end runs per preset: config overrides, then the run's length and evaluation interval. The
# first two rows (the untrained policy, then the interval that fills the buffer) are left out.
PRESETS = {
    "default": ["train.total_steps=4000", "train.eval_every=1000"],
    "fast": ["--config", "configs/fast.yaml", "train.total_steps=60000", "train.eval_every=15000"],
}
# Per mode run: 2000 steps evaluated every 500, the first 500 (buffer filling) left out; batch 240
# rather than the study's 256, so that data mode splits it evenly over 2, 3, 4 and 5 ranks.
SCHEDULE = ["train.total_steps=2000", "train.eval_every=500", "maddpg.learning_starts=240"]
WIDTHS = {"study": "[64,64]", "4x_wider": "[256,256]"}
# Teams by number of learning agents (the prey learns when it is the last one). Model mode
# needs a rank per learning agent and pipeline mode one more, so a world size W plays the
# teams with W (model, and data for comparison) or W - 1 (pipeline) learning agents.
TEAMS = {
    1: ["env.num_adversaries=1", "prey.mode=random"],
    2: ["env.num_adversaries=2", "prey.mode=random"],
    3: ["env.num_adversaries=3", "prey.mode=random"],
    4: ["env.num_adversaries=3", "prey.mode=learn"],
    5: ["env.num_adversaries=4", "prey.mode=learn"],
}
# The memory section's teams (predators, prey): the study's to 48 agents; a short run with few updates.
MEMORY_TEAMS = ((3, 1), (6, 2), (12, 4), (24, 8), (36, 12))
MEMORY_RUN = ["train.total_steps=1000", "train.eval_every=500", "train.eval_episodes=2", "maddpg.updates_per_step=0.05"]
MODES = ("data", "model", "pipeline")
WORLD_SIZES = (2, 3, 4, 5)
POPULATIONS = (1, 2, 3, 4, 5)
GENETIC_STEPS = 2000  # per learner and genetic run, evaluated every 500 per learner, synced every 500
DEFAULT_SYNC_EVERY = 5000


def update_flops(obs_dims: list[int], act_dim: int, learners: int, hidden: list[int], batch: int) -> int:
    """Floating-point operations of one MADDPG update as learner.py computes it, counting the layers'
    products only (2 per multiply-add; the critics' one-column output layers run as dot products).
    Per learner and transition: target actor and target critic forward; critic forward and backward
    (weight gradients, and input gradients past the first layer, whose input needs none); actor
    forward, the critic forward on the policy's action (the shared input's first layer plus the own
    action's columns) and its input gradients (past the first layer, then through the own action's
    columns), and the actor backward (weight gradients, input gradients past layer 1)."""
    actor = [max(obs_dims), *hidden, act_dim]  # observations zero-padded to the widest
    critic = [sum(obs_dims) + len(obs_dims) * act_dim, *hidden, 1]  # real observation columns, all actions
    macs = [sum(a * b for a, b in itertools.pairwise(widths)) for widths in (actor, critic)]
    first = [actor[0] * actor[1], critic[0] * critic[1]]
    own_action = act_dim * critic[1]
    per_sample = 3 * macs[0] + (macs[0] - first[0]) + 4 * macs[1] + 2 * (macs[1] - first[1]) + 2 * own_action
    return 2 * learners * batch * per_sample


def matmul_peak(threads: int, size: int = 1024, repeats: int = 20) -> float:
    """GFLOP/s of a dense float32 size x size matmul with `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.rand(size, size), torch.rand(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def default_update(threads: int, discrete: bool = False) -> tuple[Maddpg, list[Batch], int]:
    """A default-config learner (3 predators and a learning prey, batch 256; `discrete`: with discrete
    actions), warmed up, the random batches it cycles through, and the FLOPs of one of its updates."""
    torch.set_num_threads(threads)
    cfg = load_config()
    env = make_env(cfg.env)
    g = torch.Generator().manual_seed(0)
    update = torch.Generator().manual_seed(1)  # the updates' Gumbel noise (discrete)
    learner = Maddpg(env.obs_dims, env.act_dim, cfg.n_learners, cfg.maddpg, None, g, update, discrete=discrete)
    b, n = cfg.maddpg.batch_size, env.n_agents

    def actions() -> torch.Tensor:
        drawn = torch.rand(b, n, env.act_dim, generator=g)
        return one_hot(drawn.argmax(-1), env.act_dim) if discrete else drawn

    batches = [
        Batch(torch.rand(b, n, env.obs_dim, generator=g), actions(), torch.rand(b, n, generator=g),
              torch.rand(b, n, env.obs_dim, generator=g), torch.zeros(b))
        for _ in range(8)
    ]  # fmt: skip
    for i in range(30):
        learner.update(batches[i % len(batches)])
    return learner, batches, update_flops(env.obs_dims, env.act_dim, cfg.n_learners, cfg.maddpg.hidden, b)


def update_ms(learner: Maddpg, batches: list[Batch], updates: int) -> float:
    start = time.perf_counter()
    for i in range(updates):
        learner.update(batches[i % len(batches)])
    return 1000 * (time.perf_counter() - start) / updates


def update_speed(threads: int, updates: int = 300) -> dict:
    """One default update: ms, GFLOP/s and the share of the dense-matmul peak at the same thread count."""
    learner, batches, flops = default_update(threads)
    seconds = update_ms(learner, batches, updates) / 1000
    peak = matmul_peak(threads)
    return {"threads": threads, "ms": 1000 * seconds, "mflop": flops / 1e6, "gflop_per_s": flops / seconds / 1e9} | {
        "matmul_peak_gflop_per_s": peak,
        "share_of_peak": flops / seconds / 1e9 / peak,
    }


def discrete_update(threads: int = 1, updates: int = 300, rounds: int = 5) -> dict:
    """ms of a default update with discrete actions against continuous ones, interleaved in `rounds`
    so that the machine's drift hits both alike; the median round's ratio."""
    continuous, discrete = default_update(threads)[:2], default_update(threads, discrete=True)[:2]
    pairs = [(update_ms(*continuous, updates), update_ms(*discrete, updates)) for _ in range(rounds)]
    ratios = sorted(d / c for c, d in pairs)
    return {"threads": threads, "continuous_ms": [c for c, _ in pairs], "discrete_ms": [d for _, d in pairs]} | {
        "discrete_over_continuous": ratios[len(ratios) // 2]
    }


def env_steps_per_s(backend: Backend, n_envs: int, seconds: float) -> float:
    """Transitions/s stepping `n_envs` copies with uniform random actions, resets included."""
    env = make_env(replace(EnvConfig(), backend=backend, n_envs=n_envs))
    g = torch.Generator().manual_seed(0)
    actions = torch.rand(8, n_envs, env.n_agents, env.act_dim, generator=g)  # cycled: drawing is not timed
    env.reset((0, 0, 0))
    steps, episode, start = 0, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or steps < 2 * env.max_cycles:
        _, _, truncated = env.step(actions[steps % len(actions)])
        steps += 1
        if truncated:
            episode += 1
            env.reset((0, 0, episode))
    return steps * n_envs / elapsed


def run_train(overrides: list[str], ranks: int = 1) -> tuple[list[dict], list[dict]]:
    """Metrics rows and sync rows (genetic mode; none elsewhere) of a `train.py` run with `ranks`
    processes (torchrun when more than one)."""
    launcher = [sys.executable]
    if ranks > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    with tempfile.TemporaryDirectory() as tmp:
        run = [*overrides, f"run.dir={tmp}", "run.name=bench", "run.progress=false", "run.gif=false"]
        subprocess.run([*launcher, "train.py", *run], check=True, cwd=ROOT, capture_output=True)
        return read_rows(Path(tmp) / "bench"), read_rows(Path(tmp) / "bench", SYNCS_FILE)


def collective_latency_worker(repeats: int = 300) -> None:
    """Under torchrun: microseconds per blocking collective on a message of MADDPG's size
    (20,000 float32, about one critic's gradients), with idle ranks and after 1 ms of
    compute on every rank (as in training). Rank 0 prints one JSON line."""
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    message, a, b = torch.zeros(20_000), torch.rand(2, 120, 64), torch.rand(2, 64, 64)
    parts = [torch.empty_like(message) for _ in range(dist.get_world_size())]
    collectives = {
        "all_reduce": lambda: dist.all_reduce(message),
        "all_gather": lambda: dist.all_gather(parts, message),
        "broadcast": lambda: dist.broadcast(message, 0),
    }

    def compute_1ms() -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < 1e-3:
            torch.bmm(a, b)

    def per_call_us(call) -> float:
        dist.barrier()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        return (time.perf_counter() - start) / repeats * 1e6

    result = {"message_floats": message.numel(), "compute_us": per_call_us(compute_1ms)}
    for name, collective in collectives.items():
        result[f"{name}_idle_us"] = per_call_us(collective)
        after_compute = per_call_us(lambda c=collective: (compute_1ms(), c()))
        result[f"{name}_after_compute_us"] = after_compute - result["compute_us"]
    if dist.get_rank() == 0:
        print(json.dumps(result))
    dist.destroy_process_group()


def collective_latency(ranks: int = 2) -> dict:
    """`collective_latency_worker` on `ranks` processes of this machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    command += ["-m", "maddpg.bench", "--latency-worker"]
    result = subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    return {"ranks": ranks} | json.loads(result.stdout.strip().splitlines()[-1])


def mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def mode_timings(rows: list[dict]) -> dict[str, float | None]:
    rows = rows[2:]  # the untrained policy and buffer filling
    return {
        "ms_per_transition": 1000 / mean(rows, "steps_per_s"),
        "ms_per_update": mean(rows, "update_ms") if "update_ms" in rows[0] else None,  # none on pipeline's rank 0
        "comm_share": mean(rows, "comm_share"),
    }


def modes(threads: int, selected: list[str]) -> list[dict]:
    """The `selected` modes at W = 2..5 against single mode on the same teams and total work.

    Single mode gets `threads` threads (the machine's cores); each rank of a mode gets one,
    so W = 2 uses the same threads in total on 2 cores and W > 2 is oversubscribed there.
    """
    results, singles = [], {}
    for width_name, hidden in WIDTHS.items():
        for mode in selected:
            for ranks in WORLD_SIZES:
                learners = ranks - 1 if mode == "pipeline" else ranks
                common = [*TEAMS[learners], f"maddpg.hidden={hidden}", "maddpg.batch_size=240", *SCHEDULE]
                if (width_name, learners) not in singles:
                    singles[width_name, learners] = mode_timings(run_train([*common, f"run.threads={threads}"])[0])
                single = singles[width_name, learners]
                timing = mode_timings(run_train([*common, f"mode={mode}", "run.threads=1"], ranks)[0])
                results.append(
                    {"network": width_name, "teams": " ".join(TEAMS[learners]), "mode": mode, "ranks": ranks}
                    | {"oversubscribed": ranks > (os.cpu_count() or 1), "single": single}
                    | timing
                    | {"vs_single": timing["ms_per_transition"] / single["ms_per_transition"]}
                )
                print(json.dumps(results[-1]), file=sys.stderr)
    return results


def genetic(threads: int) -> dict:
    """Genetic mode at the default config: aggregate env steps/s and sync cost for P = 1..5 learners
    (one thread each), against single mode with `threads`; P > cores is oversubscribed.

    Each run syncs every 500 steps per learner to time several syncs; the sync share at the
    default period (5000) is then estimated as seconds per sync over the time a learner takes
    for 5000 steps, and measured directly in one longer run at P = 2.
    """
    single = mean(run_train([f"train.total_steps={GENETIC_STEPS}", f"run.threads={threads}"])[0][2:], "steps_per_s")
    result = {"single_steps_per_s": single, "populations": []}
    for population in POPULATIONS:
        overrides = [f"train.total_steps={population * GENETIC_STEPS}", f"train.eval_every={population * 500}"]
        overrides += ["mode=genetic", "genetic.sync_every=500", "run.threads=1"]
        rows, syncs = run_train(overrides, population)
        steps_per_s = mean(rows[2:], "steps_per_s")  # past the untrained policy and buffer filling
        sync_s = mean(syncs, "seconds")
        result["populations"].append(
            {"learners": population, "oversubscribed": population > (os.cpu_count() or 1)}
            | {"steps_per_s": steps_per_s, "vs_single": steps_per_s / single, "ms_per_sync": 1000 * sync_s}
            | {"sync_share_at_default_period": sync_s / (sync_s + DEFAULT_SYNC_EVERY * population / steps_per_s)}
        )
        print(json.dumps(result["populations"][-1]), file=sys.stderr)
    two = ["mode=genetic", "train.total_steps=22000", "train.eval_every=2000", "run.threads=1"]  # 2 syncs each
    rows, syncs = run_train(two, 2)
    result["p2_default_period"] = {
        "syncs": len(syncs),
        "sync_seconds": sum(s["seconds"] for s in syncs),
        "wall_clock": rows[-1]["wall_clock"],
        "sync_share": sum(s["seconds"] for s in syncs) / rows[-1]["wall_clock"],
    }
    return result


def cpu_seconds(commands: list[list[str]]) -> list[float]:
    """Run `commands` side by side in the repository -> each one's CPU seconds (user and system, its
    children included: torchrun's ranks)."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for index, command in enumerate(commands):
            where = [f"run.dir={tmp}", f"run.name=job{index}", "run.progress=false", "run.gif=false"]
            jobs.append(subprocess.Popen([*command, *where], cwd=ROOT, stdout=subprocess.DEVNULL))
        usages = [os.wait4(job.pid, 0) for job in jobs]
    failed = [os.waitstatus_to_exitcode(status) for _, status, _ in usages if status]
    if failed:
        raise RuntimeError(f"a population-cost run failed with exit code {failed[0]}")
    return [usage.ru_utime + usage.ru_stime for _, _, usage in usages]


def population_cost(steps_per_learner: int, learners: int = 4, rounds: int = 2) -> dict:
    """CPU seconds of a population of `learners` in one genetic run (the fast preset, predators and
    prey from scratch, one thread a rank) against as many one-learner runs of the same env steps, run
    side by side (the same processes per core): per strategy, the median over `rounds` of the ratio
    of the population's CPU to the baselines' together, measured in the same round. Rounds interleave
    the arms, so that a machine's drift reaches every arm alike."""
    fast = [sys.executable, "train.py", "--config", "configs/fast.yaml", "prey.mode=learn", "run.threads=1"]
    single = [*fast, f"train.total_steps={steps_per_learner}"]
    population = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={learners}",
                  *fast[1:], "mode=genetic", f"train.total_steps={steps_per_learner * learners}",
                  f"train.eval_every={20_000 * learners}"]  # fmt: skip
    arms = {"none": ["genetic.strategy=none"], "critic": [], "pbt": ["genetic.strategy=pbt"],
            "pbt_shared": ["genetic.strategy=pbt", "genetic.share_experience=true"]}  # fmt: skip
    ratios: dict[str, list[float]] = {arm: [] for arm in arms}
    baselines = []
    for _ in range(rounds):
        baselines.append(sum(cpu_seconds([single] * learners)))
        for arm, overrides in arms.items():
            (seconds,) = cpu_seconds([[*population, *overrides]])
            ratios[arm].append(seconds / baselines[-1])
    return {"learners": learners, "steps_per_learner": steps_per_learner, "rounds": rounds,
            "baselines_cpu_s": baselines, "vs_baselines": ratios,
            "median_vs_baselines": {arm: float(torch.tensor(r).median()) for arm, r in ratios.items()}}  # fmt: skip


def train_speed(preset: str, backend: Backend, threads: int) -> dict:
    """`python train.py` at a preset on `backend`: env steps/s once the buffer is warm, the share of
    that time in updates, and the run's peak resident memory (the replay buffer is allocated whole
    at the start)."""
    rows, _ = run_train([*PRESETS[preset], f"env.backend={backend}", f"run.threads={threads}"])
    warm = rows[2:]
    return {"steps_per_s": mean(warm, "steps_per_s"), "update_time_share": mean(warm, "update_time_share")} | {
        "peak_rss_mb": rows[-1]["peak_rss_mb"]
    }


def preset_config(preset: str) -> Config:
    """The config a preset's `train.py` run gets (its --config file, then its overrides)."""
    args = list(PRESETS[preset])
    config_file = None
    if "--config" in args:
        at = args.index("--config")
        config_file = str(ROOT / args[at + 1])
        del args[at : at + 2]
    return load_config(config_file, args)


def default_threads() -> int:
    """torch's intra-op threads in a fresh interpreter: what run.threads=0 leaves a run."""
    command = [sys.executable, "-c", "import torch; print(torch.get_num_threads())"]
    return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def thread_policy(preset: str = "default") -> dict:
    """The config's thread policy (run.threads) against PyTorch's own (run.threads=0: a thread per
    core), at a preset with its config's backend: steps/s of both on an idle machine, then of the
    config's policy beside one busy process (a Python spin loop started here, stopped by its PID).
    PyTorch's policy is not run beside the busy process: it slows to a few steps/s there (docs/speed.md)."""
    cfg = preset_config(preset)
    backend, threads = cfg.env.backend, cfg.run.threads
    idle = train_speed(preset, backend, threads)
    per_core = train_speed(preset, backend, 0)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = train_speed(preset, backend, threads)
    finally:
        spinner.kill()  # signals spinner.pid only
        spinner.wait()
    per_core_threads = default_threads()
    return {"preset": preset, "mode": cfg.mode.value, "backend": backend.value, "run_threads": threads} | {
        "torch_threads": threads or per_core_threads,  # run.threads=0 keeps torch's default
        "idle": idle,
        "busy": busy,
        "busy_over_idle": busy["steps_per_s"] / idle["steps_per_s"],
        "torch_default": {"torch_threads": per_core_threads, "idle": per_core},
        "idle_over_torch_default_idle": idle["steps_per_s"] / per_core["steps_per_s"],
    }


def buffer_mb(cfg: Config | None = None) -> float:
    """MiB of a config's replay buffer (default: the default config's): world states, preallocated, in
    the twin's float32."""
    cfg = cfg or load_config()
    buffer = ReplayBuffer(cfg.maddpg.buffer_size, Observer(cfg.env), cfg.env.num_obstacles, ACT_DIM, seed=0)
    return buffer.nbytes() / 2**20


def observations_buffer_mb(cfg: Config) -> float:
    """MiB the same buffer took when it stored every agent's padded observation before and after each
    transition (2 N O floats, O growing with N) with the actions, rewards and flag."""
    env = make_env(replace(cfg.env, backend=Backend.torch))
    floats = 2 * env.n_agents * env.obs_dim + env.n_agents * (env.act_dim + 1) + 1
    return cfg.maddpg.buffer_size * floats * 4 / 2**20


def memory() -> list[dict]:
    """Per team (MEMORY_TEAMS, the prey learning): the default-size buffer's MiB, against what storing
    observations took, and the peak RSS of a short training run with it (one thread)."""
    results = []
    for predators, prey in MEMORY_TEAMS:
        team = [f"env.num_adversaries={predators}", f"env.num_good={prey}"]
        cfg = load_config(None, team)
        rows, _ = run_train([*team, *MEMORY_RUN, "run.threads=1"])
        results.append({"predators": predators, "prey": prey, "buffer_transitions": cfg.maddpg.buffer_size,
                        "buffer_mb": buffer_mb(cfg), "observations_buffer_mb": observations_buffer_mb(cfg),
                        "peak_rss_mb": rows[-1]["peak_rss_mb"]})  # fmt: skip
        print(json.dumps(results[-1]), file=sys.stderr)
    return results


def update_profile(threads: int, updates: int = 200, top: int = 10) -> list[dict]:
    """The default update's top operators by own CPU time (torch.profiler): ms per update and share."""
    learner, batches, _ = default_update(threads)
    with torch.profiler.profile() as profiler:
        for i in range(updates):
            learner.update(batches[i % len(batches)])
    ops = sorted(profiler.key_averages(), key=lambda op: op.self_cpu_time_total, reverse=True)
    total = sum(op.self_cpu_time_total for op in ops)
    return [
        {"op": op.key, "calls_per_update": op.count / updates}
        | {"ms_per_update": op.self_cpu_time_total / 1000 / updates, "share": op.self_cpu_time_total / total}
        for op in ops[:top]
    ]


def numbers(tree: object, path: str = "") -> dict[str, float]:
    """Every number in a JSON tree by its path ("update.0.ms")."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in numbers(value, f"{path}{key}.").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in numbers(value, f"{path}{i}.").items()}
    is_number = isinstance(tree, (int, float)) and not isinstance(tree, bool)
    return {path.rstrip("."): float(tree)} if is_number else {}


def compare(old: dict, new: dict) -> list[str]:
    """A line per number present in both results: old, new and new / old."""
    before, after = numbers(old), numbers(new)
    return [f"{key}: {before[key]:.4g} -> {after[key]:.4g} ({after[key] / before[key]:.2f}x)"
            for key in after if before.get(key)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench.json")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per env measurement")
    parser.add_argument("--modes", default=",".join(MODES), help="modes to compare, comma-separated; '' skips")
    parser.add_argument("--genetic", action=argparse.BooleanOptionalAction, default=True, help="genetic mode's figures")
    parser.add_argument(
        "--population-cost",
        type=int,
        default=100_000,
        metavar="STEPS",
        help="env steps per learner of the population-cost runs (0 skips them)",
    )
    parser.add_argument("--compare", type=Path, metavar="OLD.json", help="print each figure against an older run's")
    parser.add_argument("--latency-worker", action="store_true", help=argparse.SUPPRESS)  # one rank of the above
    args = parser.parse_args()
    if args.latency_worker:
        collective_latency_worker()
        return
    torch.set_num_threads(args.threads)

    env = {
        "torch": {str(n): env_steps_per_s(Backend.torch, n, args.seconds) for n in TWIN_SIZES},
        "mpe2": {str(n): env_steps_per_s(Backend.mpe2, n, args.seconds) for n in MPE2_SIZES},
    }
    best_mpe2 = max(env["mpe2"].values())
    result = {
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "threads": args.threads,
        },
        "env_steps_per_s": env,
        "twin_vs_mpe2": {
            "n_envs_1": env["torch"]["1"] / env["mpe2"]["1"],
            "largest_twin_vs_best_mpe2": env["torch"][str(TWIN_SIZES[-1])] / best_mpe2,
        },
        "train": {
            preset: {b.value: train_speed(preset, b, args.threads) for b in (Backend.torch, Backend.mpe2)}
            for preset in PRESETS
        },
        "thread_policy": thread_policy(),
        "buffer_mb": buffer_mb(),
        "memory": memory(),
        "update": [update_speed(threads) for threads in (1, 2)],
        "discrete_update": discrete_update(),
        "update_profile": update_profile(threads=1),
    }
    torch.set_num_threads(args.threads)
    if args.modes:
        result["collective_latency"] = collective_latency()
        result["modes"] = modes(args.threads, args.modes.split(","))
    if args.genetic:
        result["genetic"] = genetic(args.threads)
    if args.population_cost:
        result["population_cost"] = population_cost(args.population_cost)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if args.compare:
        print("\n".join(compare(json.loads(args.compare.read_text()), result)))


if __name__ == "__main__":
    main()
