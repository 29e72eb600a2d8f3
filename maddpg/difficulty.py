"""A prey's difficulty, measured: how well fresh predators learn to catch it. And the shipped weak
and strong prey, chosen by it.

    maddpg-difficulty measure PREY... [--steps 1000000] [--seeds 1 2 3] [--out runs/difficulty]
    maddpg-difficulty ship PREY_RUN --command "..." [--steps 1000000] [--out runs/difficulty]

`measure`: for every prey (weak, strong or a prey file) and seed, three fresh predators train
against it for --steps env steps on the fast schedule (configs/fast.yaml, prey.mode=fixed),
evaluated every 20k env steps. A run's score is the mean predator_return of its last 5 evaluations
(its last 100k env steps); the prey's difficulty is the mean of its runs' scores, with the 95% CI
and the IQM of rliable (maddpg/stats.py). The lower, the harder the prey. The runs are kept in
--out under the prey file's sha256 (and the overrides', when there are any), so a repeated
command measures only what it has not.

`ship` (make prey): the shipped weak and strong prey from the checkpoints of a run whose prey
learned. Every checkpoint's prey is a candidate, screened with one seed (SCREEN_SEED). The weak
prey is the first candidate past WEAK_STEPS env steps, as the study's weak prey was a prey trained
for about 1M steps; the strong prey is the candidate the screen found hardest among the later ones.
Both are then measured with MEASURE_SEEDS, seeds the screen did not use (a choice made on the
screen's noise would otherwise flatter the strong prey), must come out ordered, the strong prey's
CI wholly below the weak one's, and are shipped with their difficulty in the manifest. The screen
is written to --out/screen.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from functools import partial
from pathlib import Path

from maddpg.core.checkpoint import list_checkpoints, load_checkpoint, sha256
from maddpg.core.errors import ConfigError, command_errors
from maddpg.core.pretrained import PREY_DIR, manifest, resolve_prey, shipped_prey
from maddpg.core.prey import export, write_prey_file
from maddpg.experiments import ROOT, Jobs, run_all, run_or_keep
from maddpg.plot import final_score, load_run
from maddpg.stats import summarise

SCHEDULE = "configs/fast.yaml"
EVAL_EVERY = 20_000
LAST = 5  # evaluations averaged into a run's score
STEPS = 1_000_000  # the predators' training, env steps (N)
SCREEN_SEED = 0
MEASURE_SEEDS = (1, 2, 3)
WEAK_STEPS = 1_000_000


def prey_run(prey: str, seed: int, steps: int, out: Path, extra: list[str], jobs: Jobs) -> Path:
    """Fresh predators trained against `prey` (a shipped name or a prey file), with the `extra`
    overrides -> the run's directory."""
    prey_file = resolve_prey(prey)
    # other overrides measure something else: a run of their own
    options = "_o" + hashlib.sha256(" ".join(extra).encode()).hexdigest()[:8] if extra else ""
    run_dir = out / f"{prey_file.stem}_{sha256(prey_file)[:12]}_n{steps}{options}_s{seed}"
    checkpoint = prey if prey in manifest() else str(prey_file.resolve())
    overrides = ["prey.mode=fixed", f"prey.checkpoint={checkpoint}", f"train.eval_every={EVAL_EVERY}",
                 f"train.seed={seed}", *extra]  # fmt: skip
    return run_or_keep(run_dir, ROOT / SCHEDULE, overrides, steps, jobs=jobs)


def measure(
    preys: list[str], seeds: list[int], steps: int, out: Path, jobs: int, extra: list[str] | None = None
) -> dict[str, dict]:
    """Each prey's difficulty: {prey: {mean, mean_ci95, iqm, iqm_ci95, scores, seeds, env_steps, ...}}.
    `extra`: overrides for every run (they change what is measured: a toy test's)."""
    tasks = {(p, seed): partial(prey_run, p, seed, steps, out, extra or []) for p in preys for seed in seeds}
    runs = run_all(tasks, jobs)
    results = {}
    for prey in preys:
        scores = [final_score(load_run(runs[prey, seed]), "predator_return", LAST) for seed in seeds]
        results[prey] = summarise(scores) | {
            "scores": scores, "seeds": list(seeds), "env_steps": steps, "schedule": SCHEDULE,
            "eval_every": EVAL_EVERY, "last_evaluations": LAST, "prey_sha256": sha256(resolve_prey(prey)),
            "overrides": extra or [],
        }  # fmt: skip
    return results


def ship(
    run_dir: Path,
    command: str,
    steps: int,
    out: Path,
    jobs: int,
    weak_steps: int = WEAK_STEPS,
    prey_dir: Path = PREY_DIR,
) -> dict[str, dict]:
    """Choose, measure and ship (into prey_dir) the weak and strong prey from `run_dir`'s checkpoints
    (see above) -> their difficulties. A run with discrete actions ships weak_discrete and
    strong_discrete, measured by predators with discrete actions."""
    actions = load_checkpoint(list_checkpoints(run_dir, 1)[0], 0)["config"]["env"]["actions"]
    extra = [] if actions == "continuous" else [f"env.actions={actions}"]
    candidates = {}
    for checkpoint in list_checkpoints(run_dir, 1):
        step = int(checkpoint.name.removeprefix("ckpt_"))
        candidates[step] = out / "candidates" / f"prey_{step}.pt"
        if not candidates[step].is_file():
            write_prey_file(run_dir, step, candidates[step])
    screen = measure([str(path) for path in candidates.values()], [SCREEN_SEED], steps, out, jobs, extra)
    scores = {step: screen[str(path)]["mean"] for step, path in candidates.items()}
    (out / "screen.json").write_text(json.dumps({"seed": SCREEN_SEED, "env_steps": steps, "scores": scores}) + "\n")
    later = [step for step in scores if step >= weak_steps]
    if len(later) < 2:
        raise ConfigError(f"{run_dir} has {len(later)} checkpoints at >= {weak_steps} env steps: train it further")
    chosen = {"weak": later[0], "strong": min(later[1:], key=scores.get)}
    measured = measure(
        [str(candidates[step]) for step in chosen.values()], list(MEASURE_SEEDS), steps, out, jobs, extra
    )
    difficulty = {name: measured[str(candidates[step])] for name, step in chosen.items()}
    weak, strong = difficulty["weak"], difficulty["strong"]
    if strong["mean_ci95"][1] >= weak["mean_ci95"][0]:
        raise ConfigError(
            f"the strong prey (step {chosen['strong']}, {strong['mean']:.1f} {strong['mean_ci95']}) is not clearly "
            f"harder than the weak one (step {chosen['weak']}, {weak['mean']:.1f} {weak['mean_ci95']}): train "
            "the prey run further or with another seed"
        )
    for role, step in chosen.items():
        export(run_dir, step, shipped_prey(role, actions), command, prey_dir, entry={"difficulty": difficulty[role]})
    return difficulty


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["measure", "ship"])
    parser.add_argument("targets", nargs="+", help="measure: prey (weak, strong, prey files); ship: the prey run")
    parser.add_argument("--steps", type=int, default=STEPS, help="the predators' training, env steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(MEASURE_SEEDS), help="measure's seeds")
    parser.add_argument("--command", help="ship: the command that trained the prey run, for the manifest")
    parser.add_argument("--weak-steps", type=int, default=WEAK_STEPS, help="ship: the weak prey's least training")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "difficulty")
    args = parser.parse_args(argv)
    with command_errors():
        if args.action == "measure":
            result = measure(args.targets, args.seeds, args.steps, args.out, args.jobs)
        elif len(args.targets) != 1 or args.command is None:
            raise ConfigError("ship takes one prey run and --command: python -m maddpg.difficulty ship RUN --command C")
        else:
            result = ship(Path(args.targets[0]), args.command, args.steps, args.out, args.jobs, args.weak_steps)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
