"""The study's experiments (Figs. 3-6) at a budget that fits one machine, and their figures.

    python -m maddpg.experiments [--steps-per-learner N] [--seeds 0 1 2] [--learners P] [--out runs/figures]

Every arm is a config in configs/experiments/ run once per seed: baseline arms with
`python train.py` (all the machine's threads), genetic arms with `torchrun` on P ranks (a
thread each). Budgets are equal per learner: a genetic run gets P times the baseline's
train.total_steps and train.eval_every, so every learner collects N env steps and is
evaluated every 1000 of its own steps. A finished run is kept and an interrupted one
resumed, so the command can be repeated. Each figure is drawn with `maddpg.plot`
against env steps per learner and against wall-clock, with its table beside it.
The study's full budget is the configs' own: 2M env steps per learner, 4 learners.
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
    "fig4_weak_prey": ("Fig. 4: genetic vs baseline, weak prey", ["baseline_weak_prey", "genetic_weak_prey"]),
    "fig5_strong_prey": ("Fig. 5: genetic vs baseline, strong prey", ["baseline_strong_prey", "genetic_strong_prey"]),
    "fig6_scratch": ("Fig. 6: genetic vs baseline, both from scratch", ["baseline_scratch", "genetic_scratch"]),
}
EVAL_EVERY = 1000  # env steps per learner


def is_genetic(arm: str) -> bool:
    return OmegaConf.load(EXPERIMENTS / f"{arm}.yaml").get("mode") == "genetic"


def run_arm(arm: str, seed: int, steps: int, learners: int, out: Path) -> Path:
    """One seed of an arm, run to `steps` env steps per learner (or kept/resumed) -> its run directory."""
    population = learners if is_genetic(arm) else 1
    total = steps * population
    run_dir = out / f"{arm}_s{seed}"
    rows = read_rows(run_dir)
    if rows and rows[-1]["env_steps"] >= total:
        return run_dir
    overrides = [f"train.total_steps={total}", f"train.eval_every={EVAL_EVERY * population}", f"train.seed={seed}"]
    overrides += [f"run.dir={out}", f"run.name={run_dir.name}", "run.progress=false", "run.gif=false"]
    if list_checkpoints(run_dir, population):
        command = ["train.py", "--resume", str(run_dir), *overrides]
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # started but never checkpointed: start again
        command = ["train.py", "--config", str(EXPERIMENTS / f"{arm}.yaml"), *overrides]
    if population > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={population}"]
        command += ["run.threads=1"]
    else:
        launcher = [sys.executable]
    print(f"{arm} seed {seed}: {steps} env steps per learner", file=sys.stderr)
    subprocess.run([*launcher, *command], check=True, cwd=ROOT)
    return run_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps-per-learner", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learners", type=int, default=2, help="genetic arms' population (ranks)")
    parser.add_argument("--figures", nargs="+", choices=list(FIGURES), default=list(FIGURES))
    parser.add_argument("--out", type=Path, default=Path("runs/figures"))
    args = parser.parse_args(argv)
    for figure in args.figures:
        title, arms = FIGURES[figure]
        runs = [str(run_arm(arm, seed, args.steps_per_learner, args.learners, args.out)) for arm in arms
                for seed in args.seeds]  # fmt: skip
        for x in ("steps_per_learner", "wall_clock"):
            print(f"\n{title} (x: {x})")
            plot.main([*runs, "--x", x, "--title", title, "--out", str(args.out / f"{figure}_{x}.png")])


if __name__ == "__main__":
    main()
