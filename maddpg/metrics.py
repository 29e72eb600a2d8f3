"""The metrics file (one JSON row per evaluation), its TensorBoard mirror, and the tallies behind a row."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from maddpg.distributed import Comm

METRICS_FILE = "metrics.jsonl"


def read_rows(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLog:
    """Appends rows to runs/<name>/metrics.jsonl and mirrors them to TensorBoard.

    On resume from a checkpoint at `resume_step`, rows logged after it (by a run that went on
    past its last checkpoint) are dropped, so the resumed run neither repeats nor skips a row.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        self.path = run_dir / METRICS_FILE
        if resume_step is not None:
            kept = [row for row in read_rows(run_dir) if row["env_steps"] <= resume_step]
            self.path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        self.file = self.path.open("a")
        purge = None if resume_step is None else resume_step + 1
        self.tensorboard = SummaryWriter(run_dir / "tensorboard", purge_step=purge)

    def log(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        for key, value in row.items():
            if key != "env_steps" and isinstance(value, (int, float)):
                self.tensorboard.add_scalar(key, value, row["env_steps"])

    def close(self) -> None:
        self.file.close()
        self.tensorboard.close()


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
        self.seconds = {"env": 0.0, "update": 0.0}
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
        """steps_per_s counts acting, env stepping and updates (not evaluation); update_time_share
        and comm_share are the parts of that time spent in updates and in collectives; update_ms
        is the time of one update (this rank's part, collectives included).
        Every rank calls it together (in model mode it gathers the losses)."""
        busy = self.seconds["env"] + self.seconds["update"]
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
        return row

    def state_dict(self) -> dict:
        state = {k: getattr(self, k) for k in ("losses", "updates", "steps", "episodes", "episode_return", "seconds")}
        return state | {"comm_seconds": self.comm.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.comm.seconds = state.pop("comm_seconds")
        for key, value in state.items():
            setattr(self, key, value)
