"""The metrics file (one JSON row per evaluation) and TensorBoard events of a run directory."""

from __future__ import annotations

import json
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

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
