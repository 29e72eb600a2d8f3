"""Checkpoints: one directory per step with one file per rank, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch


def checkpoint_dir(run_dir: Path, env_steps: int) -> Path:
    return run_dir / "checkpoints" / f"ckpt_{env_steps:012d}"


def rank_file(checkpoint: Path, rank: int) -> Path:
    return checkpoint / f"rank{rank}.pt"


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(state: dict, run_dir: Path, env_steps: int, rank: int, world_size: int, keep: int) -> None:
    """This rank's part of the checkpoint at `env_steps`; rank 0 then drops all but the newest `keep`."""
    save_atomic(state, rank_file(checkpoint_dir(run_dir, env_steps), rank))
    if rank == 0:
        for old in list_checkpoints(run_dir, world_size)[:-keep]:
            shutil.rmtree(old)


def list_checkpoints(run_dir: Path, world_size: int) -> list[Path]:
    """Complete checkpoints of a run (a file from every rank), oldest first (names sort by step)."""
    candidates = sorted((run_dir / "checkpoints").glob("ckpt_*"))
    return [c for c in candidates if all(rank_file(c, r).is_file() for r in range(world_size))]


def load_checkpoint(checkpoint: Path, rank: int, device: torch.device | str = "cpu") -> dict:
    return torch.load(rank_file(checkpoint, rank), map_location=device, weights_only=True)
