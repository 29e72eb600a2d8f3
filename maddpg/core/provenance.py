"""What a run ran on, recorded at every start and resume: the code's commit, PyTorch, the processor
and the threads. Runs of one seed agree number for number only on the same code, build and kind of
processor; elsewhere they agree in distribution (tables say which they came from)."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent.parent
PROVENANCE_FILE = "provenance.jsonl"  # in the run directory: one row per start or resume


def git(*args: str) -> str | None:
    """`git args` in the project's checkout -> its output, None where there is no checkout (an image)."""
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def processor() -> str:
    """The CPU's model name (Linux), or what the platform says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def provenance(device: torch.device, world_size: int) -> dict:
    """This process's code, build and machine: commit (None outside a git checkout) and whether tracked
    files differed from it, PyTorch and Python versions, CPU model, GPU name (None on a CPU), threads."""
    commit = git("rev-parse", "HEAD")
    return {
        "commit": commit,
        "dirty": None if commit is None else bool(git("status", "--porcelain", "--untracked-files=no")),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": processor(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "world_size": world_size,
    }


def record(run_dir: Path, env_steps: int, device: torch.device, world_size: int) -> None:
    """Append this segment's row (starting at `env_steps`) to run_dir/provenance.jsonl (rank 0's view)."""
    row = {"env_steps": env_steps, "started": datetime.now(UTC).isoformat(timespec="seconds")}
    with (run_dir / PROVENANCE_FILE).open("a") as rows:
        rows.write(json.dumps(row | provenance(device, world_size)) + "\n")
