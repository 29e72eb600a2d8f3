"""The study's experiments (Figs. 3-6) and the population figures: the run grid, its figures, and every
arm's final predators against common opponents.

    maddpg-experiments [--budget short|full|population] [--figures fig4_weak_prey ...]
                       [--arms genetic ...] [--steps-per-learner N] [--learners P] [--seeds 0 1 2]
                       [--eval-every N] [--jobs J] [--set key=value ...] [--out DIR] [--earlier DIR]

A budget sets the grid's defaults; every flag overrides its part:

- `short` (default): 50k env steps per learner, 2 learners, seeds 0-2, an evaluation every 1000 env
  steps per learner, the arms' own (the study's) schedule, into runs/figures. About an hour.
- `full`, the study's budget: 2M env steps per learner, 4 learners, seeds 0-4, an evaluation every
  20k env steps per learner, on the fast schedule (configs/fast.yaml laid over every arm's config),
  into runs/figures_full. Checkpoints carry the replay buffer (one kept, a new one every 10 minutes
  of training), so a run stopped by Ctrl-C or a session's end resumes exactly where it was; a
  finished run's checkpoint drops its buffer.
- `population`: the full budget at seeds 0-7, into runs/population.

The figures (`--figures`) default to the budget's: the population figures at the population budget,
the study's Figs. 3-6 at the others.

Each figure compares the arms (ARMS), every one a config in configs/experiments/ (with the arm's
overrides, after the budget's) run once per seed: baseline, one learner with N env steps; genetic, P
learners syncing the fittest critic, its fitness measured afresh at every sync (`torchrun`, P ranks), N
env steps each; nosync, the same P learners never syncing (the control that tells "sharing the critic"
from "P learners"); baseline_total, one learner given the P learners' total P * N env steps (equal
total compute); adaptive, genetic with rare early syncs and ever more frequent ones (the study's
proposal). The population figures' strategies beside genetic and nosync: genetic_optimizer, genetic
sending the critic's Adam state too; pbt, population-based training (genetic.strategy=pbt); shared,
nosync whose learners' buffers also receive each other's transitions (genetic.share_experience);
pbt_shared, both. The sync period counts env steps per learner on any schedule: a sync shares what a
learner learned from its experience, and the fast schedule changes the updates per env step, not the
experience. Every process takes one thread (the default run.threads); `--jobs J` runs J runs at once.
Runs are done in the order of the figures, then arms, then seeds; a finished run is kept and an
interrupted one resumed, so the command can be repeated. Each run's CPU time is recorded per segment
(segments.jsonl in its directory).

A run's score is the mean over its learners of predator_return (population_mean_predator_return),
averaged over its last evaluations (5 at the full budget, 3 at the short). Per figure, `maddpg.plot`
draws the curves against env steps per learner and against total env steps (and, with --jobs 1,
wall-clock), and writes the table beside each figure: per arm, mean and IQM with 95% CIs and the tests
against the baseline, the no-sync control and the study's genetic arm (maddpg/stats.py); a population
figure tests every strategy against the no-sync control alone, as one family. Then every run's final
predators (each learner's) play 100 episodes against common opponents, on the same start states for
every run (seed OPPONENT_SEED), cached in opponents.json in the run: the study's figures against the
shipped weak and strong prey and a uniform random prey (OPPONENTS), each run scored by its learners'
mean, in <figure>_opponents.json, so arms trained against different prey are compared against the same
opponents. A population figure plays SUITE (still, random, flee, weak, strong) and scores its declared
outcomes (OUTCOMES) in <figure>_outcomes.json: primary, the run's best learner (named by its
best_learner.json, chosen on start states of its own; a run without one is refused) averaged over the
five; secondary, that average over every learner. The JSON also holds each run's learners' scores,
best rank, CPU hours and commits (provenance.jsonl); <figure>_opponents.json the best learner's tables.

`--retable DIR` runs nothing: it recomputes the tests of every table of the figures' report in DIR
from the run scores the tables hold, when the statistics change (maddpg/stats.py).

`--earlier DIR` completes a report with the arms of an earlier one whose runs are no longer on disk
(its <figure>_steps_per_learner.json, <figure>_opponents.json and a population figure's
<figure>_outcomes.json in DIR, e.g. docs/figures/full_budget): their per-run scores and CPU hours join
the tables and tests, their curves are not redrawn, and each table names them under "earlier". An arm
run now replaces the earlier one; a budget that differs from the earlier report's is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from statistics import fmean
from typing import NamedTuple, TypeVar

from omegaconf import OmegaConf

from maddpg import plot
from maddpg.core.checkpoint import Incomplete, checkpoint_dirs, drop_buffer, list_checkpoints, read_record, sha256
from maddpg.core.config import leaves, load_config, load_yaml, to_dict
from maddpg.core.errors import ConfigError, command_errors
from maddpg.core.evaluation import PROTOCOL, SUITE
from maddpg.core.metrics import read_rows
from maddpg.core.pretrained import SHIPPED, resolve_prey
from maddpg.core.provenance import PROVENANCE_FILE
from maddpg.distributed.genetic import BEST_LEARNER_FILE
from maddpg.evaluate import evaluate_run

ROOT = Path(__file__).parent.parent
EXPERIMENTS = ROOT / "configs" / "experiments"
SEGMENTS_FILE = "segments.jsonl"  # a run's training segments: env steps reached, CPU and wall seconds
OPPONENTS_FILE = "opponents.json"
OPPONENTS = ("weak", "strong", "random")
OPPONENT_SEED = 10_000  # the final evaluations' start states, the same for every run
OPPONENT_EPISODES = 100
K = TypeVar("K")
METRIC = "population_mean_predator_return"  # a one-learner run's own predator_return (maddpg.plot)


@dataclass(frozen=True)
class Budget:
    steps_per_learner: int
    learners: int  # the population arms' P
    seeds: tuple[int, ...]
    eval_every: int  # env steps per learner between evaluations
    last: int  # evaluations averaged into a run's score
    schedule: str | None  # a config laid over every arm's (relative to the repository), None: the arms' own
    overrides: tuple[str, ...]  # for every run
    out: str


CHECKPOINTED = ("train.checkpoint_buffer=true", "train.keep_checkpoints=1", "train.checkpoint_minutes=10")
BUDGETS = {
    "short": Budget(50_000, 2, (0, 1, 2), 1000, 3, None, (), "runs/figures"),
    "full": Budget(2_000_000, 4, (0, 1, 2, 3, 4), 20_000, 5, "configs/fast.yaml", CHECKPOINTED, "runs/figures_full"),
    "population": Budget(
        2_000_000, 4, tuple(range(8)), 20_000, 5, "configs/fast.yaml", CHECKPOINTED, "runs/population"
    ),
}


@dataclass(frozen=True)
class Arm:
    config: str  # configs/experiments/<config>_<setting>.yaml
    population: bool = False  # P learners on P ranks, N env steps each
    total_budget: bool = False  # one learner given the population's total, P * N env steps
    overrides: tuple[str, ...] = ()  # laid over the config after the budget's


STUDY_ARMS = {
    "baseline": Arm("baseline"),
    "genetic": Arm("genetic", population=True),
    "nosync": Arm("nosync", population=True),
    "baseline_total": Arm("baseline", total_budget=True),
    "adaptive": Arm("adaptive", population=True),
}
ARMS = STUDY_ARMS | {  # the population figures' strategies, beside the study's genetic arm and its control
    "genetic_optimizer": Arm("genetic", population=True, overrides=("genetic.sync_optimizer=true",)),
    "pbt": Arm("genetic", population=True, overrides=("genetic.strategy=pbt",)),
    "shared": Arm("nosync", population=True, overrides=("genetic.share_experience=true",)),
    "pbt_shared": Arm("genetic", population=True, overrides=("genetic.strategy=pbt", "genetic.share_experience=true")),
}
STRATEGIES = ("nosync", "genetic", "genetic_optimizer", "pbt", "shared", "pbt_shared")
AGAINST = ("baseline", "nosync", "genetic")  # the study's figures test every arm against these


class Figure(NamedTuple):
    """A figure: its arms' curves on one setting, and their final predators against common opponents."""

    title: str
    setting: str  # configs/experiments/<config>_<setting>.yaml
    arms: tuple[str, ...]
    against: tuple[str, ...] = AGAINST  # every arm is tested against these
    opponents: tuple[str, ...] = OPPONENTS  # the final predators play these
    outcomes: bool = False  # a population figure: its declared outcomes (OUTCOMES), of its best and all learners


def population_figure(title: str, setting: str) -> Figure:
    """A figure of the population strategies, each tested against the no-sync control (one family), with
    the declared outcomes on SUITE."""
    return Figure(title, setting, STRATEGIES, against=("nosync",), opponents=SUITE, outcomes=True)


FIGURES = {
    "fig3_baseline_weak_prey": Figure("Fig. 3: MADDPG vs the weak prey", "weak_prey", ("baseline",)),
    "fig4_weak_prey": Figure("Fig. 4: the weak prey", "weak_prey", tuple(STUDY_ARMS)),
    "fig5_strong_prey": Figure("Fig. 5: the strong prey", "strong_prey", tuple(STUDY_ARMS)),
    "fig6_scratch": Figure("Fig. 6: predators and prey from scratch", "scratch", tuple(STUDY_ARMS)),
    "population_weak_prey": population_figure("A population against the weak prey", "weak_prey"),
    "population_scratch": population_figure("A population from scratch", "scratch"),
}
OUTCOMES = {  # a population figure's, per run, from every learner's final evaluation against SUITE
    "primary": "the best learner's predator_return, mean over the opponents",
    "secondary": "the population's: each learner's predator_return, mean over the opponents, mean over the learners",
}


def default_figures(budget: str) -> list[str]:
    """The figures run unless --figures names others: the population figures at the population budget, the
    study's (Figs. 3-6) at the others."""
    return [name for name, figure in FIGURES.items() if figure.outcomes == (budget == "population")]


class RunStopped(Exception):
    """A run of the grid stopped (Ctrl-C) or failed; its message says which and what to do."""


class Planned(NamedTuple):
    """A run as run_or_keep takes it: its folder, config and overrides, env steps and ranks."""

    run_dir: Path
    config: Path
    overrides: list[str]
    total: int
    population: int


@dataclass(frozen=True)
class Grid:
    budget: Budget
    out: Path
    set: tuple[str, ...]  # the user's overrides, after the budget's

    def record(self) -> dict:
        """The budget as a report's JSON states it, the user's overrides included."""
        return asdict(self.budget) | {"set": list(self.set)}

    def run_dir(self, arm: str, setting: str, seed: int) -> Path:
        return self.out / f"{arm}_{setting}_s{seed}"

    def plan(self, arm: str, setting: str, seed: int) -> Planned:
        """One seed of an arm at the grid's budget."""
        spec, budget = ARMS[arm], self.budget
        ranks = budget.learners if spec.population else 1
        total = budget.steps_per_learner * (budget.learners if spec.population or spec.total_budget else 1)
        overrides = [*schedule_overrides(budget.schedule), *budget.overrides, *spec.overrides]
        overrides += [f"train.eval_every={budget.eval_every * ranks}", f"train.seed={seed}", *self.set]
        config = EXPERIMENTS / f"{spec.config}_{setting}.yaml"
        return Planned(self.run_dir(arm, setting, seed), config, overrides, total, ranks)

    def run(self, arm: str, setting: str, seed: int, jobs: Jobs) -> Path:
        """One seed of an arm, trained to its budget (or kept, or resumed) -> its run directory."""
        run_dir = run_or_keep(*self.plan(arm, setting, seed), jobs)
        checkpoints = list_checkpoints(run_dir)
        if checkpoints:
            drop_buffer(checkpoints[-1])
        return run_dir


def schedule_overrides(schedule: str | None) -> list[str]:
    """A schedule's config file as key=value overrides, but for train.*, which the grid sets."""
    if schedule is None:
        return []
    flat = plot.flatten(to_dict(OmegaConf.load(ROOT / schedule)))
    return [f"{key}={json.dumps(value)}" for key, value in flat.items() if not key.startswith("train.")]


class Jobs:
    """The runs' processes under way, so that a Ctrl-C reaching only the driver reaches them too."""

    def __init__(self):
        self.running: set[subprocess.Popen] = set()
        self.stopping = False
        self.lock = threading.Lock()

    def stop(self) -> None:
        """SIGINT to every run under way (a run ignores a second copy: torchrun's, the terminal's); none
        starts after it."""
        with self.lock:
            self.stopping = True
            for job in self.running:
                job.send_signal(signal.SIGINT)

    def wait(self, command: list[str]) -> tuple[int, float]:
        """Run `command` in the repository -> (its exit code, its CPU seconds, children included); 130
        at once after stop()."""
        with self.lock:
            if self.stopping:
                return 130, 0.0
            job = subprocess.Popen(command, cwd=ROOT)
            self.running.add(job)
        _, status, usage = os.wait4(job.pid, 0)
        job.returncode = os.waitstatus_to_exitcode(status)
        with self.lock:
            self.running.discard(job)
        return job.returncode, usage.ru_utime + usage.ru_stime


def train_overrides(run_dir: Path, overrides: list[str], total: int) -> list[str]:
    """train.py's overrides for a run of `total` env steps in run_dir."""
    where = [f"run.dir={run_dir.parent}", f"run.name={run_dir.name}", "run.progress=false", "run.gif=false"]
    return [f"train.total_steps={total}", *overrides, *where]


def require_same_run(run_dir: Path, config: Path, overrides: list[str], total: int, population: int = 1) -> None:
    """A run folder that exists must hold the run asked for (run_or_keep's arguments): its config.yaml,
    the config train.py resolved, equal to `config` with the overrides in every key but run.*, and its
    checkpoints written by `population` ranks (their records say). Otherwise a ConfigError names what
    differs and the fix. A folder without config.yaml holds no run: train.py writes it first."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    world_size = recorded_world_size(run_dir)
    asked = load_config(str(config), train_overrides(run_dir, overrides, total), world_size=population)
    there = dict(leaves(load_config(base=load_yaml(saved, "the run's config"), world_size=world_size or population)))
    changed = [f"{key} {there[key]} there, {value} here" for key, value in leaves(asked)
               if not key.startswith("run.") and value != there[key]]  # fmt: skip
    if world_size not in (None, population):
        changed.append(f"{world_size} ranks there, {population} here")
    if changed:
        raise ConfigError(f"{run_dir} holds a run with other settings ({'; '.join(changed)}): write to another "
                          "folder (--out), or remove that one yourself to run it again")  # fmt: skip


def recorded_world_size(run_dir: Path) -> int | None:
    """The world size the newest checkpoint record of a run names; None if no checkpoint holds one."""
    for checkpoint in reversed(checkpoint_dirs(run_dir)):
        try:
            return read_record(checkpoint).world_size
        except Incomplete:
            continue
    return None


def remove_unstarted(run_dir: Path) -> None:
    """Remove a run folder to start its run again; only one holding no checkpoint file at all (an attempt
    that never checkpointed) is removed. One holding some (but no complete checkpoint: a save cut short,
    or an older version's) is refused: a ConfigError, and nothing removed."""
    files = sorted(path for path in (run_dir / "checkpoints").rglob("*") if path.is_file())
    if files:
        raise ConfigError(
            f"{run_dir} holds checkpoint files ({files[-1].relative_to(run_dir)}) but no complete checkpoint: "
            "remove that folder yourself to run it again, or write to another (--out)"
        )
    shutil.rmtree(run_dir, ignore_errors=True)


def run_or_keep(
    run_dir: Path, config: Path, overrides: list[str], total: int, population: int = 1, jobs: Jobs | None = None
) -> Path:
    """`train.py --config config` with `overrides` to `total` env steps in run_dir: kept if it got
    there, resumed from its newest complete checkpoint if it has one, else started afresh (see
    remove_unstarted). A folder holding another run is refused first (require_same_run): no folder
    holding a complete checkpoint or a finished run is ever removed. `population` ranks (torchrun) when
    more than one. Each segment's CPU time is appended to run_dir/segments.jsonl. -> run_dir; raises
    RunStopped if the run was stopped or failed."""
    require_same_run(run_dir, config, overrides, total, population)
    rows = read_rows(run_dir)
    if rows and rows[-1]["env_steps"] >= total:
        return run_dir
    overrides = train_overrides(run_dir, overrides, total)
    if list_checkpoints(run_dir):
        command = ["train.py", "--resume", str(run_dir), *overrides]
    else:
        remove_unstarted(run_dir)
        command = ["train.py", "--config", str(config), *overrides]
    launcher = [sys.executable]
    if population > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={population}"]
    print(f"{run_dir}: training to {total} env steps", file=sys.stderr)
    start = time.perf_counter()
    jobs = jobs or Jobs()
    code, cpu = jobs.wait([*launcher, *command])
    rows = read_rows(run_dir)
    segment = {"env_steps": rows[-1]["env_steps"] if rows else 0, "exit_code": code, "cpu_s": cpu,
               "wall_s": time.perf_counter() - start}  # fmt: skip
    if run_dir.is_dir():
        with (run_dir / SEGMENTS_FILE).open("a") as segments:
            segments.write(json.dumps(segment) + "\n")
    if code in (130, 143) or (code and jobs.stopping):  # a clean stop (torchrun exits 1 on SIGINT)
        raise RunStopped(f"{run_dir} stopped; rerun to resume it")
    if code:
        raise RunStopped(f"{run_dir} failed (its error is above); rerun to resume it")
    return run_dir


def run_cpu_hours(run_dir: Path) -> float:
    """A run's CPU hours, every segment's (SEGMENTS_FILE), children included."""
    return sum(row["cpu_s"] for row in read_rows(run_dir, SEGMENTS_FILE)) / 3600


def cpu_hours(run_dirs: list[Path]) -> float:
    return sum(run_cpu_hours(run) for run in run_dirs)


def interrupt(*_) -> None:
    raise KeyboardInterrupt


def run_all(tasks: dict[K, Callable[[Jobs], Path]], jobs: int) -> dict[K, Path]:
    """Every task (one run: trains it, or keeps it, -> its directory) done, `jobs` at once, in order.
    A run that fails leaves the others going; a Ctrl-C or SIGTERM lets every run under way checkpoint
    and starts no other. Either way the driver then exits with what to rerun."""
    # A shell starts a background job with SIGINT ignored; `kill -INT` must stop the driver all the same.
    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    processes = Jobs()
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {key: pool.submit(task, processes) for key, task in tasks.items()}
            try:
                for future in futures.values():
                    future.exception()  # waits for it
            except KeyboardInterrupt:
                for future in futures.values():
                    future.cancel()
                processes.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    errors = [str(f.exception()) for f in futures.values() if not f.cancelled() and f.exception()]
    if errors or any(f.cancelled() for f in futures.values()):
        sys.exit("\n".join(errors) or "stopped; rerun to resume")
    return {key: future.result() for key, future in futures.items()}


def final_evaluation(run_dir: Path, opponents: tuple[str, ...]) -> dict:
    """Every learner of the run against each of `opponents`, OPPONENT_EPISODES episodes from the start
    states of OPPONENT_SEED -> {opponent: {"learners": [mean predator_return per learner], "mean": ...}},
    cached in run_dir/opponents.json with what it was measured on (the checkpoint, the shipped prey's
    sha256, the evaluation protocol): all measured again when any changed, and an opponent the cache
    lacks measured and added to it (a run of the study's and a population figure: OPPONENTS in SUITE)."""
    checkpoint = list_checkpoints(run_dir)[-1]
    learners = read_record(checkpoint).world_size
    shipped = {name: sha256(resolve_prey(name)) for name in SHIPPED}
    measured_on = {"checkpoint": checkpoint.name, "episodes": OPPONENT_EPISODES, "seed": OPPONENT_SEED,
                   "protocol": PROTOCOL} | shipped  # fmt: skip
    cache = run_dir / OPPONENTS_FILE
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    results = cached["opponents"] if cached.get("measured_on") == measured_on else {}
    missing = [opponent for opponent in opponents if opponent not in results]
    for opponent in missing:
        returns = [
            evaluate_run(run_dir, opponent, OPPONENT_SEED, rank, OPPONENT_EPISODES)[0]["predator_return"]["mean"]
            for rank in range(learners)
        ]
        results[opponent] = {"learners": returns, "mean": fmean(returns)}
    if missing:
        cache.write_text(json.dumps({"measured_on": measured_on, "opponents": results}, indent=2) + "\n")
    return {opponent: results[opponent] for opponent in opponents}


def best_rank(run_dir: Path) -> int:
    """The rank of a population run's best learner, as rank 0 chose it at the run's end on its final
    checkpoint (BEST_LEARNER_FILE). A ConfigError naming the fix if the run has no such choice."""
    path, final = run_dir / BEST_LEARNER_FILE, list_checkpoints(run_dir)[-1]
    chosen = json.loads(path.read_text()) if path.is_file() else {}
    if chosen.get("checkpoint") != final.name:
        why = f"a {BEST_LEARNER_FILE} of {chosen['checkpoint']}" if chosen else f"no {BEST_LEARNER_FILE}"
        launch = f"torchrun --standalone --nproc_per_node={read_record(final).world_size} train.py --resume {run_dir}"
        raise ConfigError(f"{run_dir} has {why}, none of its final checkpoint {final.name} (an older version "
                          f"trained it): resume it with `{launch}` to choose its best learner, or delete it to train "
                          "it again")  # fmt: skip
    return chosen["rank"]


def run_record(run: plot.Run, final: dict) -> dict:
    """A population run as its figure's outcomes state it: its folder, seed and best learner, every
    learner's predator_return against each opponent (`final`: its final_evaluation), its outcomes
    (OUTCOMES), CPU hours, and the code it ran (the distinct commit and dirty flag of its provenance rows)."""
    learners = [dict(zip(final, scores, strict=True))
                for scores in zip(*(result["learners"] for result in final.values()), strict=True)]  # fmt: skip
    means = [fmean(learner.values()) for learner in learners]
    rank = best_rank(run.path)
    code = dict.fromkeys((row["commit"], row["dirty"]) for row in read_rows(run.path, PROVENANCE_FILE))
    return {"run": run.path.name, "seed": run.config["train.seed"], "best_rank": rank, "learners": learners,
            "primary": means[rank], "secondary": fmean(means), "cpu_hours": run_cpu_hours(run.path),
            "provenance": [{"commit": commit, "dirty": dirty} for commit, dirty in code]}  # fmt: skip


def report_tables(report_: dict) -> dict[str, list[dict]]:
    """The tables of one of a figure's report JSONs by name: its curves' ("arms"), those against each
    opponent, or those of each outcome; the very lists the JSON holds."""
    tables = {"arms": report_["arms"]} if "arms" in report_ else {}
    return tables | report_.get("opponents", {}) | report_.get("outcomes", {})


@dataclass(frozen=True)
class Earlier:
    """An earlier report's arms, from its table JSONs: per table (report_tables), its runs' scores per
    arm, and every arm's CPU hours."""

    source: Path | None  # None: no earlier report
    tables: dict[str, dict[str, list[float]]]  # table name: {arm: scores}
    cpu_hours: dict[str, float]

    @classmethod
    def none(cls) -> Earlier:
        return cls(None, {}, {})

    def scores(self, table: str) -> dict[str, list[float]]:
        return self.tables.get(table, {})

    @classmethod
    def load(cls, directory: Path, figure: str, budget: dict) -> Earlier:
        """The report of `figure` in `directory`; raises ConfigError if it is missing or its budget
        (but for its output folder) is not `budget`."""
        names = ["steps_per_learner", "opponents", *(["outcomes"] if FIGURES[figure].outcomes else [])]
        paths = [directory / f"{figure}_{name}.json" for name in names]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise ConfigError(f"--earlier {directory}: no {' or '.join(missing)}; pass the folder of an "
                              f"earlier `python -m maddpg.experiments` report of {figure}")  # fmt: skip
        reports = [json.loads(path.read_text()) for path in paths]
        theirs = reports[0]["budget"]
        ours = json.loads(json.dumps(budget))  # tuples as the JSON's lists
        changed = [f"{key} {theirs.get(key)} there, {value} here" for key, value in ours.items()
                   if key != "out" and value != theirs.get(key)]  # fmt: skip
        if changed:
            raise ConfigError(f"--earlier {directory}: its {figure} had another budget ({'; '.join(changed)}); "
                              "pass the flags it was run with")  # fmt: skip
        tables = {name: {row["group"]: row["scores"] for row in rows}
                  for report_ in reports for name, rows in report_tables(report_).items()}  # fmt: skip
        return cls(directory, tables, reports[0]["cpu_hours"])


@dataclass(frozen=True)
class Report:
    """A figure's report under way: where its JSONs go, what each states first (`context`), its arms in
    order, and the earlier report that completes them."""

    out: Path
    figure: str
    context: dict
    order: list[str]  # the arms run here and the earlier report's, in the figure's order
    earlier: Earlier

    @property
    def spec(self) -> Figure:
        return FIGURES[self.figure]

    def table(self, name: str, scores: dict[str, list[float]]) -> list[dict]:
        """Table `name` (report_tables): plot.score_table of the runs' `scores` ({arm: one per run}), or
        of the earlier report's for an arm not run here, each arm tested against the figure's references."""
        earlier = self.earlier.scores(name)
        against = [arm for arm in self.spec.against if arm in self.order]
        return plot.score_table({arm: scores[arm] if arm in scores else earlier[arm] for arm in self.order}, against)

    def write(self, name: str, record: dict) -> None:
        """<figure>_<name>.json: the context, then `record`."""
        (self.out / f"{self.figure}_{name}.json").write_text(json.dumps(self.context | record, indent=2) + "\n")


def show(heading: str, rows: list[dict], score: str) -> None:
    """A table, printed as markdown under its heading."""
    print(f"\n{heading}")
    print(plot.markdown(rows, score))


def report(grid: Grid, figure: str, runs: dict[str, list[Path]], wall_clock: bool, earlier: Earlier) -> None:
    """The figure's curves and tables (see the module's docstring), each table JSON with the budget."""
    spec, budget = FIGURES[figure], grid.budget
    order = [arm for arm in spec.arms if arm in runs or arm in earlier.scores("arms")]
    kept = [arm for arm in order if arm not in runs]
    hours = {arm: cpu_hours(runs[arm]) if arm in runs else earlier.cpu_hours[arm] for arm in order}
    context = {"figure": figure, "title": spec.title, "budget": grid.record(), "metric": METRIC,
               "last_evaluations": budget.last, "cpu_hours": hours, "cpu_hours_total": sum(hours.values())}  # fmt: skip
    if kept:
        context["earlier"] = {"from": str(earlier.source), "arms": kept}  # in the tables, not in the curves
    out = Report(grid.out, figure, context, order, earlier)
    loaded = {arm: [plot.load_run(path) for path in paths] for arm, paths in runs.items()}
    scores = {arm: [plot.final_score(run, METRIC, budget.last) for run in group] for arm, group in loaded.items()}
    rows = out.table("arms", scores)
    score = f"{METRIC}, mean of the last {budget.last} evaluations"
    show(f"{spec.title}: {score}", rows, score)
    for x in ("steps_per_learner", "total_steps", *(["wall_clock"] if wall_clock else [])):
        plot.plot(loaded, x, METRIC, grid.out / f"{figure}_{x}.png", spec.title)
        out.write(x, {"axis": x, "arms": rows})
    finals = {arm: [final_evaluation(path, spec.opponents) for path in paths] for arm, paths in runs.items()}
    if not spec.outcomes:
        means = {arm: [{name: result["mean"] for name, result in final.items()} for final in group]
                 for arm, group in finals.items()}  # fmt: skip
        opponent_tables(out, means, "final predators")
        return
    records = {arm: [run_record(run, final) for run, final in zip(loaded[arm], finals[arm], strict=True)]
               for arm in runs}  # fmt: skip
    best = {arm: [record["learners"][record["best_rank"]] for record in group] for arm, group in records.items()}
    opponent_tables(out, best, "the best learner")
    outcome_tables(out, records)


def opponent_tables(out: Report, scores: dict[str, list[dict[str, float]]], predators: str) -> None:
    """Per opponent of the figure, the table of the runs' `predators` against it (`scores`: {arm: per
    run {opponent: predator_return}}), printed and written to <figure>_opponents.json."""
    spec, tables = out.spec, {}
    for opponent in spec.opponents:
        tables[opponent] = out.table(opponent, {arm: [run[opponent] for run in group] for arm, group in scores.items()})
        show(f"{spec.title}: {predators} against the {opponent} prey, {OPPONENT_EPISODES} episodes",
             tables[opponent], f"predator_return over {OPPONENT_EPISODES} episodes")  # fmt: skip
    out.write("opponents", {"predators": predators, "episodes": OPPONENT_EPISODES, "seed": OPPONENT_SEED,
                            "opponents": tables})  # fmt: skip


def outcome_tables(out: Report, records: dict[str, list[dict]]) -> None:
    """A population figure's declared outcomes (OUTCOMES): the table of each, printed and written to
    <figure>_outcomes.json with every run's record (run_record)."""
    spec, tables = out.spec, {}
    for name, outcome in OUTCOMES.items():
        tables[name] = out.table(name, {arm: [record[name] for record in group] for arm, group in records.items()})
        show(f"{spec.title}: the {name} outcome, {outcome}", tables[name],
             f"predator_return over {OPPONENT_EPISODES} episodes")  # fmt: skip
    out.write("outcomes", {"episodes": OPPONENT_EPISODES, "seed": OPPONENT_SEED, "prey": list(spec.opponents),
                           "declared": OUTCOMES, "outcomes": tables, "runs": records})  # fmt: skip


def retable(directory: Path, figure: str) -> None:
    """Recompute every table of `figure`'s report in `directory` from the run scores it holds, with
    today's statistics (plot.score_table): the runs and their scores stay, the tests are redone."""
    paths = sorted(directory.glob(f"{figure}_*.json"))
    if not paths:
        raise ConfigError(f"--retable {directory}: no {figure}_*.json there; pass the folder of a report")
    for path in paths:
        report_ = json.loads(path.read_text())
        tables = report_tables(report_)
        for rows in tables.values():
            scores = {row["group"]: row["scores"] for row in rows}
            rows[:] = plot.score_table(scores, [arm for arm in FIGURES[figure].against if arm in scores])
        path.write_text(json.dumps(report_, indent=2) + "\n")
        print(f"{path}:")
        for name, rows in tables.items():
            print(plot.markdown(rows, name))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=list(BUDGETS), default="short", help="the grid's defaults (see above)")
    parser.add_argument("--figures", nargs="+", choices=list(FIGURES), help="default: the budget's (above)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), help="only these arms (default: each figure's)")
    parser.add_argument("--steps-per-learner", type=int)
    parser.add_argument("--learners", type=int, help="the population arms' learners (ranks)")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--eval-every", type=int, help="env steps per learner between evaluations")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--set", nargs="+", default=[], metavar="key=value", help="overrides for every run")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--earlier", type=Path, metavar="DIR", help="take arms not run here from its report (above)")
    parser.add_argument("--retable", type=Path, metavar="DIR", help="redo the tests of DIR's tables; run nothing")
    args = parser.parse_args(argv)
    figures = args.figures or default_figures(args.budget)
    if args.retable:
        with command_errors():
            for figure in figures:
                retable(args.retable, figure)
        return
    budget = BUDGETS[args.budget]
    changes = {"steps_per_learner": args.steps_per_learner, "learners": args.learners, "eval_every": args.eval_every,
               "seeds": tuple(args.seeds) if args.seeds else None}  # fmt: skip
    budget = replace(budget, **{key: value for key, value in changes.items() if value is not None})
    grid = Grid(budget, args.out or ROOT / budget.out, tuple(args.set))
    with command_errors():
        earlier = {figure: Earlier.load(args.earlier, figure, grid.record()) if args.earlier else Earlier.none()
                   for figure in figures}  # fmt: skip
    arms = {figure: [a for a in FIGURES[figure].arms if args.arms is None or a in args.arms] for figure in figures}
    plan = [(arm, FIGURES[f].setting, seed) for f in figures for arm in arms[f] for seed in budget.seeds]
    with command_errors():  # before any run starts: every folder that exists holds the run asked for
        for key in plan:
            require_same_run(*grid.plan(*key))
    done = run_all({key: partial(grid.run, *key) for key in plan}, args.jobs)
    with command_errors():  # e.g. a population run without its best learner
        for figure in figures:
            setting = FIGURES[figure].setting
            runs = {arm: [done[arm, setting, seed] for seed in budget.seeds] for arm in arms[figure]}
            report(grid, figure, runs, wall_clock=args.jobs == 1, earlier=earlier[figure])


if __name__ == "__main__":
    main()
