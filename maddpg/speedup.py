"""The fast preset against the default schedule, in wall-clock: how much sooner configs/fast.yaml
reaches the return the default schedule ends with after 2M env steps against the weak prey.

    maddpg-speedup [--out runs/speed] [--seeds 0 1 2] [--steps 2000000] [--fast-steps N]
                   [--window 5] [--set key=value ...]
    maddpg-speedup --report REFERENCE_RUN RUNS... [--window 5] [--out S.json]

The first form runs (or keeps, or resumes) the reference, the default schedule from seed 0
(configs/experiments/baseline_weak_prey.yaml, evaluated every 10k steps) to --steps env steps, and
the fast preset against the same prey for each seed, to its own train.total_steps or --fast-steps,
each with one thread: the reference
on one core while the fast seeds take turns on the other, so that each run shares the machine
alike. It then writes speedup.json and the curves against wall-clock and env steps in --out.
`--set` adds overrides to every run (e.g. shorter runs). The second form only reports.

The reference's quality is the mean of its last `--window` evaluations and its time the wall-clock
of its last row. A run reaches that quality at the first evaluation where the mean of its last
`--window` evaluations is at least as high (so one lucky evaluation does not count), and its time
is that row's wall-clock. The speed-up is the reference's time over the median of the runs' times;
a run that never gets there counts as never (infinitely slow), so the median says so when most
runs fall short. Prints one JSON object and writes it to --out when given.
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from maddpg import plot
from maddpg.core.config import load_config
from maddpg.core.errors import ConfigError, command_errors
from maddpg.core.metrics import read_rows
from maddpg.experiments import EXPERIMENTS, ROOT, run_or_keep

REFERENCE = (EXPERIMENTS / "baseline_weak_prey.yaml", ["train.eval_every=10000", "train.seed=0", "run.threads=1"])
FAST = (ROOT / "configs" / "fast.yaml", ["prey.mode=fixed", "prey.checkpoint=weak", "run.threads=1"])


def reach(rows: list[dict], threshold: float, window: int, metric: str) -> dict | None:
    """The first row whose trailing `window`-evaluation mean of `metric` is >= threshold (None: never)."""
    for end in range(window, len(rows) + 1):
        if sum(r[metric] for r in rows[end - window : end]) / window >= threshold:
            return rows[end - 1]
    return None


def speedup(reference: Path, runs: list[Path], window: int = 5, metric: str = "predator_return") -> dict:
    ref_rows = read_rows(reference)
    if len(ref_rows) < window:
        raise ConfigError(f"{reference} has {len(ref_rows)} evaluations, fewer than --window {window}")
    threshold = sum(r[metric] for r in ref_rows[-window:]) / window
    ref_time = ref_rows[-1]["wall_clock"]
    reached = {str(run): reach(read_rows(run), threshold, window, metric) for run in runs}
    times = {run: None if row is None else row["wall_clock"] for run, row in reached.items()}
    median = statistics.median(t if t is not None else float("inf") for t in times.values())
    return {
        "reference": str(reference),
        "reference_env_steps": ref_rows[-1]["env_steps"],
        "reference_wall_clock": ref_time,
        "threshold": threshold,
        "window": window,
        "seconds_to_threshold": times,
        "env_steps_to_threshold": {run: None if row is None else row["env_steps"] for run, row in reached.items()},
        "median_seconds": median if median != float("inf") else None,
        "speedup": ref_time / median if median != float("inf") else 0.0,
    }


def run_all(out: Path, steps: int, fast_steps: int, seeds: list[int], overrides: list[str]) -> tuple[Path, list[Path]]:
    """The reference on one core and the fast seeds one after another on the other -> their run dirs."""

    def fast_seeds() -> list[Path]:
        config, fixed = FAST
        return [
            run_or_keep(out / f"fast_s{s}", config, [*fixed, f"train.seed={s}", *overrides], fast_steps) for s in seeds
        ]

    config, fixed = REFERENCE
    with ThreadPoolExecutor(2) as pool:
        reference = pool.submit(run_or_keep, out / "default_s0", config, [*fixed, *overrides], steps)
        fast = pool.submit(fast_seeds)
        return reference.result(), fast.result()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, nargs="+", metavar="RUN", help="REFERENCE_RUN RUNS...: report only")
    parser.add_argument("--out", type=Path, help="runs' parent directory (default runs/speed); with --report, JSON")
    parser.add_argument("--steps", type=int, default=2_000_000, help="the reference's env steps")
    parser.add_argument("--fast-steps", type=int, help="the fast runs' env steps (default: configs/fast.yaml's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the fast preset's seeds")
    parser.add_argument("--set", nargs="+", default=[], metavar="key=value", help="overrides for every run")
    parser.add_argument("--window", type=int, default=5, help="evaluations averaged (default 5)")
    parser.add_argument("--metric", default="predator_return")
    args = parser.parse_args(argv)
    if args.report:
        reference, runs, out_json = args.report[0], args.report[1:], args.out
    else:
        out = args.out or Path("runs/speed")
        fast_steps = args.fast_steps or load_config(str(FAST[0])).train.total_steps
        reference, runs = run_all(out, args.steps, fast_steps, args.seeds, args.set)
        out_json = out / "speedup.json"
        paths = [str(reference), *map(str, runs)]
        for x in ("wall_clock", "total_steps"):
            plot.main([*paths, "--x", x, "--label", "maddpg.updates_per_step", "--out", str(out / f"{x}.png")])
    with command_errors():
        for run in [reference, *runs]:
            if not read_rows(run):
                raise ConfigError(f"{run} holds no metrics.jsonl rows: pass run directories written by train.py")
        result = speedup(reference, runs, args.window, args.metric)
    text = json.dumps(result, indent=2)
    print(text)
    if out_json:
        out_json.write_text(text + "\n")


if __name__ == "__main__":
    main()
