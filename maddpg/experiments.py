"""The study's experiments (Figs. 3-6) at a budget that fits one machine, and their figures.

    python -m maddpg.experiments [--steps-per-learner N] [--seeds 0 1 2] [--learners P]
                                 [--figures fig4_weak_prey ...] [--set key=value ...] [--out runs/figures]

Every arm is a config in configs/experiments/ run once per seed: baseline arms with
`python train.py`, genetic arms with `torchrun` on P ranks, every process with one thread
(the default run.threads; `--set run.threads=N` for more). Budgets are equal per learner, the study's comparison:
a genetic run gets P times the baseline's train.total_steps and train.eval_every, so every
learner collects N env steps and is evaluated every 1000 of its own. `--set` adds overrides
to every run. A finished run is kept and an interrupted one resumed, so the command can be
repeated. Each figure is drawn with `maddpg.plot` three times, with its table beside it:
against env steps per learner (equal per-learner budgets), against total env steps with the
table at the baseline's N (equal total budgets: a genetic learner has then had N / P), and
against wall-clock. The study's full budget is the configs' own: 2M env steps per learner,
4 learners (see the README).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from maddpg import plot
from maddpg.checkpoint import list_checkpoints
from maddpg.metrics import read_rows

ROOT = Path(__file__).parent.parent
EXPERIMENTS = ROOT / "configs" / "experiments"
FIGURES = {  # figure: (title, arms)
    "fig3_baseline_weak_prey": ("Fig. 3: MADDPG vs the weak prey", ["baseline_weak_prey"]),
    "fig4_weak_prey": (
        "Fig. 4: genetic, no-sync control and baseline, weak prey",
        ["baseline_weak_prey", "genetic_weak_prey", "nosync_weak_prey"],
    ),
    "fig5_strong_prey": (
        "Fig. 5: genetic, no-sync control and baseline, strong prey",
        ["baseline_strong_prey", "genetic_strong_prey", "nosync_strong_prey"],
    ),
    "fig6_scratch": (
        "Fig. 6: genetic, no-sync control and baseline, from scratch",
        ["baseline_scratch", "genetic_scratch", "nosync_scratch"],
    ),
}


def is_genetic(arm: str) -> bool:
    return OmegaConf.load(EXPERIMENTS / f"{arm}.yaml").get("mode") == "genetic"


def run_arm(arm: str, seed: int, args: argparse.Namespace) -> Path:
    """One seed of an arm, run to `steps` env steps per learner (or kept/resumed) -> its run directory."""
    population = args.learners if is_genetic(arm) else 1
    total = args.steps_per_learner * population
    overrides = [f"train.eval_every={args.eval_every * population}", f"train.seed={seed}", *args.set]
    return run_or_keep(args.out / f"{arm}_s{seed}", EXPERIMENTS / f"{arm}.yaml", overrides, total, population)


def run_or_keep(run_dir: Path, config: Path, overrides: list[str], total: int, population: int = 1) -> Path:
    """`train.py --config config` with `overrides` to `total` env steps in run_dir: kept if it got
    there, resumed from its latest checkpoint if it has one, else started afresh. `population` ranks
    (torchrun, a thread each) when more than one. -> run_dir"""
    rows = read_rows(run_dir)
    if rows and rows[-1]["env_steps"] >= total:
        return run_dir
    overrides = [f"train.total_steps={total}", *overrides]
    overrides += [f"run.dir={run_dir.parent}", f"run.name={run_dir.name}", "run.progress=false", "run.gif=false"]
    if list_checkpoints(run_dir, population):
        command = ["train.py", "--resume", str(run_dir), *overrides]
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # started but never checkpointed: start again
        command = ["train.py", "--config", str(config), *overrides]
    if population > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={population}"]
        command += ["run.threads=1"]
    else:
        launcher = [sys.executable]
    print(f"{run_dir}: training to {total} env steps", file=sys.stderr)
    job = subprocess.Popen([*launcher, *command], cwd=ROOT)
    try:
        code = job.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the run too: it finishes its episode and checkpoints
        job.wait()
        sys.exit(f"{run_dir} stopped; rerun to resume it")
    if code:
        sys.exit(f"{run_dir} failed (its error is above); rerun to resume it")
    return run_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps-per-learner", type=int, default=50_000)
    parser.add_argument("--eval-every", type=int, default=1000, help="env steps per learner between evaluations")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learners", type=int, default=2, help="genetic arms' population (ranks)")
    parser.add_argument("--figures", nargs="+", choices=list(FIGURES), default=list(FIGURES))
    parser.add_argument("--set", nargs="+", default=[], metavar="key=value", help="overrides for every run")
    parser.add_argument("--out", type=Path, default=Path("runs/figures"))
    args = parser.parse_args(argv)
    for figure in args.figures:
        title, arms = FIGURES[figure]
        runs = [str(run_arm(arm, seed, args)) for arm in arms for seed in args.seeds]
        for x, until in (("steps_per_learner", []), ("total_steps", ["--until", str(args.steps_per_learner)]),
                         ("wall_clock", [])):  # fmt: skip
            print(f"\n{title} (x: {x})")
            plot.main(
                [
                    *runs,
                    "--x",
                    x,
                    *until,
                    "--names",
                    *arms,
                    "--title",
                    title,
                    "--out",
                    str(args.out / f"{figure}_{x}.png"),
                ]
            )


if __name__ == "__main__":
    main()
