"""Checkpoints: written atomically, loaded with weights_only=True, newest K kept."""

from __future__ import annotations

import os
from pathlib import Path

import torch

PATTERN = "ckpt_*.pt"


def checkpoint_path(run_dir: Path, env_steps: int) -> Path:
    return run_dir / "checkpoints" / f"ckpt_{env_steps:012d}.pt"


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(state: dict, run_dir: Path, env_steps: int, keep: int) -> Path:
    path = checkpoint_path(run_dir, env_steps)
    save_atomic(state, path)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink()
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first (names sort by step)."""
    return sorted((run_dir / "checkpoints").glob(PATTERN))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    return torch.load(path, map_location=device, weights_only=True)
