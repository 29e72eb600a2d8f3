"""The metrics file (one JSON row per evaluation), its TensorBoard mirror, and the tallies behind a row."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import torch
from torch.utils.tensorboard import SummaryWriter

from maddpg.core.checkpoint import write_atomic
from maddpg.core.comm import Comm
from maddpg.core.errors import ConfigError

METRICS_FILE = "metrics.jsonl"
SYNCS_FILE = "syncs.jsonl"  # genetic mode: one row per sync round


def read_rows(run_dir: Path, name: str = METRICS_FILE) -> list[dict]:
    """The rows of a rows file; a last line cut short (its writer was killed mid-row) is left out."""
    path = run_dir / name
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise ConfigError(f"{path}, line {number}, is not a JSON row: repair or remove that line") from None
    return rows


def open_rows(run_dir: Path, name: str, resume_step: int | None) -> TextIO:
    """A rows file opened for appending; on resume, without the rows logged after `resume_step`. The
    file is rewritten only when it holds such rows, and then whole into a new file renamed over it,
    so a crash mid-rewrite loses nothing."""
    path = run_dir / name
    if resume_step is not None:
        rows = read_rows(run_dir, name)
        kept = [row for row in rows if row["env_steps"] <= resume_step]
        if len(kept) < len(rows) or (path.is_file() and not path.read_text().endswith("\n")):  # a row cut short
            write_atomic(path, lambda tmp: tmp.write_text("".join(json.dumps(row) + "\n" for row in kept)))
    return path.open("a")


class MetricsLog:
    """Appends rows to runs/<name>/metrics.jsonl (and sync rows to syncs.jsonl) and mirrors the
    metrics to TensorBoard.

    On resume from a checkpoint at `resume_step`, rows logged after it (by a run that went on
    past its last checkpoint) are dropped, so the resumed run neither repeats nor skips a row;
    -1 drops them all (a restarted job that had written no checkpoint starts again).
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        self.run_dir, self.resume_step = run_dir, resume_step
        self.file = open_rows(run_dir, METRICS_FILE, resume_step)
        self.syncs: TextIO | None = None  # opened by the first sync row, or now to drop rows past resume_step
        if resume_step is not None and (run_dir / SYNCS_FILE).exists():
            self.syncs = open_rows(run_dir, SYNCS_FILE, resume_step)
        purge = None if resume_step is None else resume_step + 1
        self.tensorboard = SummaryWriter(run_dir / "tensorboard", purge_step=purge)

    def log(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        for key, value in row.items():
            if key != "env_steps" and isinstance(value, (int, float)):
                self.tensorboard.add_scalar(key, value, row["env_steps"])

    def log_sync(self, row: dict) -> None:
        if self.syncs is None:
            self.syncs = open_rows(self.run_dir, SYNCS_FILE, self.resume_step)
        self.syncs.write(json.dumps(row) + "\n")
        self.syncs.flush()

    def close(self) -> None:
        self.file.close()
        if self.syncs is not None:
            self.syncs.close()
        self.tensorboard.close()


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Tally:
    """What happened since the last metrics row: losses, finished episodes, time by stage and in collectives.

    `gather` collects the per-agent loss sums of every rank when ranks hold different agents
    (model mode); in data mode each rank keeps its own micro-batch losses and rank 0 reports its own.
    """

    def __init__(self, agent_names: list[str], comm: Comm, gather: Callable[[torch.Tensor], torch.Tensor]):
        self.agent_names, self.comm, self.gather = agent_names, comm, gather  # every learning agent
        self.losses: torch.Tensor | int = 0  # (2, local agents): critic, actor sums over updates
        self.reset()

    def reset(self) -> None:
        self.losses = 0
        self.updates, self.steps, self.episodes, self.episode_return = 0, 0, 0, 0.0
        self.seconds = {"env": 0.0, "update": 0.0, "sync": 0.0}  # sync: genetic mode's rounds
        self.comm.seconds = 0.0

    @contextmanager
    def timer(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[stage] += time.perf_counter() - start

    def add_update(self, critic_loss: torch.Tensor, actor_loss: torch.Tensor) -> None:
        """Per-agent losses (local agents,) of one update; summed where they are, without a device sync."""
        self.losses = self.losses + torch.stack([critic_loss, actor_loss])
        self.updates += 1

    def add_episodes(self, predator_returns: torch.Tensor) -> None:
        """Predator returns (E,) of finished training episodes (with exploration)."""
        self.episodes += predator_returns.numel()
        self.episode_return += predator_returns.sum().item()

    def summary(self) -> dict[str, float]:
        """steps_per_s counts acting, env stepping, updates and syncs (not evaluation); update_time_share
        and comm_share are the parts of that time spent in updates and in collectives; update_ms
        is the time of one update (this rank's part, collectives included); peak_rss_mb is this
        process's peak resident memory so far.
        Every rank calls it together (in model mode it gathers the losses)."""
        busy = sum(self.seconds.values())
        row = {}
        if busy:
            row["steps_per_s"] = self.steps / busy
            row["update_time_share"] = self.seconds["update"] / busy
            row["comm_share"] = self.comm.seconds / busy
        if self.updates:
            row["update_ms"] = 1000 * self.seconds["update"] / self.updates
            critic, actor = (self.gather(self.losses) / self.updates).tolist()
            row["critic_loss"], row["actor_loss"] = sum(critic) / len(critic), sum(actor) / len(actor)
            for name, c, a in zip(self.agent_names, critic, actor, strict=True):
                row[f"critic_loss/{name}"], row[f"actor_loss/{name}"] = c, a
        if self.episodes:
            row["train_predator_return"] = self.episode_return / self.episodes
        return row | {"peak_rss_mb": peak_rss_mb()}

    def state_dict(self) -> dict:
        state = {k: getattr(self, k) for k in ("losses", "updates", "steps", "episodes", "episode_return", "seconds")}
        return state | {"comm_seconds": self.comm.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.comm.seconds = state.pop("comm_seconds")
        for key, value in state.items():
            setattr(self, key, value)
