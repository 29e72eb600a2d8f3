"""Elastic restarts: `torchrun --max-restarts=N` restarts every worker after one fails, and each run of
train.py then continues the job's run directory from its latest good checkpoint.

torchrun tells its workers the restart count, the allowed restarts and the job's rendezvous id
(a fresh id per `--standalone` launch; `--rdzv-id` elsewhere). A new run started by such a job
records the id in its directory (RUN_ID_FILE); a restarted worker continues a directory that
holds its own job's id, and nothing else. So a restart never continues another job's run, and
the name must be fixed in advance (run.name), since a timestamp would differ between attempts.

With PyTorch 2.13, workers restarted by torchrun that share its rendezvous store (the default)
can read their predecessors' gloo addresses and fail with "Connection refused" in
connectFullMesh (seen with 3 ranks); TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in torchrun's
environment gives every attempt a fresh store.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from maddpg.core.errors import ConfigError

RUN_ID_FILE = "torchelastic_run_id"


def restart_count() -> int:
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def can_restart() -> bool:
    """Launched by torchrun with --max-restarts > 0."""
    return int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0


def require_name(name: str | None) -> None:
    if name is None and can_restart():
        raise ConfigError(
            "torchrun --max-restarts restarts the job into the same run directory: set run.name=NAME "
            "(or pass --resume RUN_DIR)"
        )


def record(run_dir: Path) -> None:
    """Mark `run_dir` as this job's, for its restarts (rank 0, when it creates the directory)."""
    if can_restart():
        (run_dir / RUN_ID_FILE).write_text(os.environ["TORCHELASTIC_RUN_ID"] + "\n")
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            print(
                "warning: restarted workers may fail to connect through torchrun's shared store: "
                "launch with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun ...",
                file=sys.stderr,
            )


def continues(run_dir: Path) -> bool:
    """This process is a restarted worker and `run_dir` was created by an earlier attempt of its job."""
    marker = run_dir / RUN_ID_FILE
    return restart_count() > 0 and marker.is_file() and marker.read_text().strip() == os.environ["TORCHELASTIC_RUN_ID"]
