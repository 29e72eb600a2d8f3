"""Plots: a run's learning curve (written at the end of every run), and the comparison of runs:
mean learning curves with 95% bootstrap bands, and a final-performance table.

    maddpg-plot RUN_DIRS... [--x steps_per_learner|total_steps|wall_clock]
                [--metric predator_return] [--last 3] [--label KEY... | --names NAME...]
                [--until X] [--against GROUP...] [--out FIG.png]

Runs whose configs agree but for train.seed and run.* are one group (the seeds of one arm);
a group's label names the config keys on which the groups differ, or those given to
`--label` (e.g. `--label mode`), or is given outright, one `--names` entry per group in
order. Each group's curve is the mean over its runs, with a 95% percentile-bootstrap band
over runs, on the x values that all its runs reached (wall-clock is interpolated). The table
scores each run by the mean of its last `--last` evaluations; per group it gives the mean and
the interquartile mean with rliable's 95% stratified-bootstrap intervals (narrow at a few seeds)
and the mean's t-interval, and tests the group against each `--against` group (default: the
first): the difference with its Welch t-interval, Welch's t-test, an exact permutation test,
Hedges' g and rliable's probability of improvement (maddpg/stats.py). The tests against one
group are read together: every p-value is also given Holm-corrected over them, and a group
`differs` when both its corrected p-values fall below 0.05. `--metric population_mean_predator_return` scores a
genetic run by the mean over its learners, and a one-learner run by its own predator_return.
`--until X` drops evaluations past X on the x axis, so the table compares the arms there. The
figure is written to --out, the table printed and written beside it as JSON.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt
import numpy as np
from omegaconf import OmegaConf

from maddpg.core.errors import ConfigError, command_errors
from maddpg.core.metrics import read_rows
from maddpg.stats import bootstrap_ci, compare, holm, improvement, summarise

X_AXES = {  # --x choice: (metrics-row key, axis label)
    "steps_per_learner": ("env_steps_per_learner", "env steps per learner"),
    "total_steps": ("env_steps", "env steps, all learners"),
    "wall_clock": ("wall_clock", "wall-clock (s)"),
}
ALPHA = 0.05
POPULATION_MEAN = "population_mean_"


@dataclass
class Run:
    path: Path
    config: dict[str, object]  # flattened: "maddpg.batch_size" -> 256
    rows: list[dict]


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_run(path: Path) -> Run:
    if not (path / "config.yaml").is_file() or not read_rows(path):
        raise ConfigError(f"{path} is not a run directory with metrics: pass directories written by train.py")
    return Run(path, flatten(OmegaConf.to_container(OmegaConf.load(path / "config.yaml"))), read_rows(path))


def arm(run: Run) -> tuple:
    """What makes runs one arm: every config key but the seed and the run's name and place."""
    return tuple(sorted((k, str(v)) for k, v in run.config.items() if k != "train.seed" and not k.startswith("run.")))


def group(runs: list[Run], label_keys: list[str] | None = None, names: list[str] | None = None) -> dict[str, list[Run]]:
    """Runs by arm, in order of first appearance, labelled by `names` (one per arm, in that order), else
    by `label_keys` (default: the keys on which the arms differ)."""
    arms: dict[tuple, list[Run]] = {}
    for run in runs:
        arms.setdefault(arm(run), []).append(run)
    if names is not None:
        if len(names) != len(arms):
            raise ConfigError(f"--names gives {len(names)} names for {len(arms)} arms: give one per arm, in order")
        return dict(zip(names, arms.values(), strict=True))
    differing = label_keys or sorted({k for a in arms for k, v in a if any(dict(b).get(k) != v for b in arms)})
    labels = {}
    for key, members in arms.items():
        values = dict(key)
        label = ", ".join(f"{k}={values.get(k)}" for k in differing) or members[0].path.name
        if label in labels:
            raise ConfigError(f"two arms share the label {label!r}: add the keys that tell them apart to --label")
        labels[label] = members
    return labels


def curve(runs: list[Run], x_axis: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """-> (x (T,), values (n_runs, T)) on the x values of the first run within the range every run reached."""
    key = X_AXES[x_axis][0]
    xs = [np.array([row[key] for row in run.rows], dtype=float) for run in runs]
    ys = [np.array([value(row, metric) for row in run.rows], dtype=float) for run in runs]
    reached = min(x[-1] for x in xs)
    grid = xs[0][xs[0] <= reached]
    return grid, np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys, strict=True)])


def value(row: dict, metric: str) -> float:
    """`metric` in a row. A population_mean_* metric of a one-learner run, which logs none, is its
    learner's own: predator_return for population_mean_predator_return."""
    return row[metric] if metric in row else row[metric.removeprefix(POPULATION_MEAN)]


def final_score(run: Run, metric: str, last: int) -> float:
    return float(np.mean([value(row, metric) for row in run.rows[-last:]]))


def table(groups: dict[str, list[Run]], metric: str, last: int, against: list[str] | None = None) -> list[dict]:
    """`score_table` of the groups' final scores."""
    return score_table({label: [final_score(run, metric, last) for run in runs] for label, runs in groups.items()},
                       against)  # fmt: skip


def score_table(scores: dict[str, list[float]], against: list[str] | None = None) -> list[dict]:
    """A row per group of scores (one per run): the scores, their mean and IQM with 95% intervals
    (stats.summarise), and the tests of the group against each group in `against` (default: the
    first). The tests against one group are read together, as one family (e.g. every strategy
    against the control): each p-value is also Holm-corrected over its family; `differs`: both
    corrected p-values below ALPHA (Welch's alone would take a difference the permutation test does
    not see)."""
    against = against or list(scores)[:1]
    rows = []
    for label, values in scores.items():
        row = {"group": label, "runs": len(values), "scores": values} | summarise(values)
        tested = [other for other in against if other != label and len(values) > 1 and len(scores[other]) > 1]
        row["tests"] = {other: compare(values, scores[other]) | improvement(values, scores[other]) for other in tested}
        rows.append(row)
    for other in against:
        family = [row["tests"][other] for row in rows if other in row["tests"]]
        for name in ("welch_p", "permutation_p"):
            for test, corrected in zip(family, holm([test[name] for test in family]), strict=True):
                test[f"{name}_holm"] = corrected
        for test in family:
            test["differs"] = max(test["welch_p_holm"], test["permutation_p_holm"]) < ALPHA
    return rows


def markdown(rows: list[dict], score: str) -> str:
    """The table, its scores described by `score`; each test reads `difference [Welch t-interval] (Welch
    p, permutation p; Holm-corrected, the larger; Hedges' g; P(improvement))`."""
    against = [row["group"] for row in rows if any(row["group"] in other["tests"] for other in rows)]
    lines = [
        f"| group | runs | {score}: mean [95% bootstrap] [95% t] | IQM [95% bootstrap] | "
        + " | ".join(f"vs {other}" for other in against)
        + " |",
        "|---|---|---|---|" + "---|" * len(against),
    ]
    for row in rows:
        cells = [row["group"], str(row["runs"])]
        (low, high), (t_low, t_high) = row["mean_ci95"], row["mean_ci95_t"]
        cells.append(f"{row['mean']:.1f} [{low:.1f}, {high:.1f}] [{t_low:.1f}, {t_high:.1f}]")
        cells.append(f"{row['iqm']:.1f} [{row['iqm_ci95'][0]:.1f}, {row['iqm_ci95'][1]:.1f}]")
        for other in against:
            test = row["tests"].get(other)
            cells.append("" if test is None else (
                f"{test['difference']:+.1f} [{test['difference_ci95_t'][0]:+.1f}, {test['difference_ci95_t'][1]:+.1f}] "
                f"(p {test['welch_p']:.3f}, {test['permutation_p']:.3f}; "
                f"Holm {max(test['welch_p_holm'], test['permutation_p_holm']):.3f}; g {test['hedges_g']:+.2f}; "
                f"P(>) {test['probability_of_improvement']:.2f})" + (" differs" if test["differs"] else "")
            ))  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(groups: dict[str, list[Run]], x_axis: str, metric: str, out: Path, title: str | None = None) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, runs in groups.items():
        x, values = curve(runs, x_axis, metric)
        low, high = bootstrap_ci(values.T)
        line = ax.plot(x, values.mean(axis=0), label=f"{label} ({len(runs)} runs)")[0]
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(X_AXES[x_axis][1])
    ax.set_ylabel(f"{metric} (mean, 95% bootstrap band)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--x", choices=list(X_AXES), default="steps_per_learner", help="the curves' x axis")
    parser.add_argument("--metric", default="predator_return", help="a metrics-row key")
    parser.add_argument("--last", type=int, default=3, help="evaluations averaged into a run's final score")
    parser.add_argument("--label", nargs="+", metavar="KEY", help="label arms by these config keys only")
    parser.add_argument("--names", nargs="+", metavar="NAME", help="label the arms so, in order of first appearance")
    parser.add_argument("--until", type=float, help="drop evaluations past this x value")
    parser.add_argument("--against", nargs="+", metavar="GROUP", help="test the groups against these (default: first)")
    parser.add_argument("--title")
    parser.add_argument("--out", type=Path, default=Path("runs/comparison.png"))
    args = parser.parse_args(argv)
    with command_errors():
        runs = [load_run(path) for path in args.runs]
        for run in runs:
            if any(args.metric.removeprefix(POPULATION_MEAN) not in row for row in run.rows):
                raise ConfigError(f"{run.path} has rows without {args.metric}: pick a --metric every run logs")
            if args.until is not None:
                run.rows = [row for row in run.rows if row[X_AXES[args.x][0]] <= args.until]
                if not run.rows:
                    raise ConfigError(f"{run.path} has no evaluation at {args.x} <= {args.until}: raise --until")
        groups = group(runs, args.label, args.names)
        unknown = set(args.against or []) - set(groups)
        if unknown:
            names = " ".join(sorted(unknown))
            raise ConfigError(f"--against {names}: no such group; the groups are {', '.join(groups)}")
    plot(groups, args.x, args.metric, args.out, args.title)
    rows = table(groups, args.metric, args.last, args.against)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows, f"{args.metric}, mean of the last {args.last} evaluations"))


if __name__ == "__main__":
    main()
