"""Wall-clock speed-up to a reference's final quality: how much sooner other runs reach the return
a reference run ends with.

    python -m maddpg.speedup REFERENCE_RUN RUNS... [--window 5] [--metric predator_return] [--out S.json]

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
from pathlib import Path

from maddpg.config import ConfigError, exit_on_error
from maddpg.metrics import read_rows


def reach_time(rows: list[dict], threshold: float, window: int, metric: str) -> float | None:
    """Wall-clock of the first row whose trailing `window`-evaluation mean of `metric` is >= threshold."""
    for end in range(window, len(rows) + 1):
        if sum(r[metric] for r in rows[end - window : end]) / window >= threshold:
            return rows[end - 1]["wall_clock"]
    return None


def speedup(reference: Path, runs: list[Path], window: int = 5, metric: str = "predator_return") -> dict:
    ref_rows = read_rows(reference)
    if len(ref_rows) < window:
        raise ConfigError(f"{reference} has {len(ref_rows)} evaluations, fewer than --window {window}")
    threshold = sum(r[metric] for r in ref_rows[-window:]) / window
    ref_time = ref_rows[-1]["wall_clock"]
    times = {str(run): reach_time(read_rows(run), threshold, window, metric) for run in runs}
    median = statistics.median(t if t is not None else float("inf") for t in times.values())
    return {
        "reference": str(reference),
        "reference_env_steps": ref_rows[-1]["env_steps"],
        "reference_wall_clock": ref_time,
        "threshold": threshold,
        "window": window,
        "seconds_to_threshold": times,
        "median_seconds": median if median != float("inf") else None,
        "speedup": ref_time / median if median != float("inf") else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--window", type=int, default=5, help="evaluations averaged (default 5)")
    parser.add_argument("--metric", default="predator_return")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        for run in [args.reference, *args.runs]:
            if not read_rows(run):
                raise ConfigError(f"{run} holds no metrics.jsonl rows: pass run directories written by train.py")
        result = speedup(args.reference, args.runs, args.window, args.metric)
    except ConfigError as error:
        exit_on_error(error)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
