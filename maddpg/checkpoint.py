"""Checkpoints: one directory per step with one file per rank, written atomically with its sha256
beside it, verified before a resume, loaded with weights_only=True."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from maddpg.errors import ConfigError

CHECKPOINT_VERSION = 2  # 2: records the mode and world size that wrote it


def checkpoint_dir(run_dir: Path, env_steps: int) -> Path:
    return run_dir / "checkpoints" / f"ckpt_{env_steps:012d}"


def rank_file(checkpoint: Path, rank: int) -> Path:
    return checkpoint / f"rank{rank}.pt"


def digest_file(path: Path) -> Path:
    """Where the sha256 of `path` is recorded: rank0.pt -> rank0.pt.sha256."""
    return path.with_name(f"{path.name}.sha256")


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_atomic(obj: dict, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def save_with_digest(state: dict, path: Path) -> None:
    """Write a rank file, then its sha256 (each renamed into place, so a file with a digest is whole)."""
    save_atomic(state, path)
    digest = sha256(path)
    write_atomic(digest_file(path), lambda tmp: tmp.write_text(digest + "\n"))


def save_checkpoint(state: dict, run_dir: Path, env_steps: int, rank: int, world_size: int, keep: int) -> None:
    """This rank's part of the checkpoint at `env_steps`, with its sha256; rank 0 then drops all but
    the newest `keep` complete checkpoints."""
    save_with_digest(state, rank_file(checkpoint_dir(run_dir, env_steps), rank))
    if rank == 0:
        for old in list_checkpoints(run_dir, world_size)[:-keep]:
            shutil.rmtree(old)


def rewrite(checkpoint: Path, world_size: int, edit: Callable[[dict], object]) -> None:
    """Rewrite every rank file of `checkpoint` once `edit(state)` has changed its state in place, and
    record the new sha256."""
    for rank in range(world_size):
        state = load_checkpoint(checkpoint, rank)
        edit(state)
        save_with_digest(state, rank_file(checkpoint, rank))


def drop_buffer(checkpoint: Path, world_size: int) -> None:
    """Rewrite `checkpoint` without its replay buffers' contents: a finished run's checkpoint stays
    resumable, without the buffer, at a fraction of the disk."""
    rewrite(checkpoint, world_size, without_buffer_data)


def without_buffer_data(state: dict) -> None:
    """Drop a rank's replay buffer contents from its state, in place (a pipeline learner holds none)."""
    state.get("buffer", {}).pop("data", None)


def list_checkpoints(run_dir: Path, world_size: int) -> list[Path]:
    """Complete checkpoints of a run (a file from every rank), oldest first (names sort by step)."""
    candidates = sorted((run_dir / "checkpoints").glob("ckpt_*"))
    return [c for c in candidates if all(rank_file(c, r).is_file() for r in range(world_size))]


def rank_checkpoints(run_dir: Path, rank: int) -> list[str]:
    """The names of the checkpoints of `run_dir` that hold `rank`'s file, as this process sees them."""
    return sorted(c.parent.name for c in (run_dir / "checkpoints").glob(f"ckpt_*/{rank_file(Path(), rank).name}"))


def require_one_directory(run_dir: Path, views: list[tuple[str, list[str]]]) -> None:
    """Every rank must see the run directory rank 0 sees. `views[r]` is rank r's host and the checkpoints
    holding its own file as it sees them; where rank 0 sees others, the nodes keep directories of their
    own, and a restart would lose rows or start again: a ConfigError that names the fix."""
    host0 = views[0][0]
    for rank, (host, own) in enumerate(views):
        seen = rank_checkpoints(run_dir, rank)
        if own != seen:
            latest = {"as rank 0 sees them": seen, f"as rank {rank} sees them": own}
            listed = "; ".join(f"{where}: {names[-1] if names else 'none'}" for where, names in latest.items())
            raise ConfigError(
                f"rank {rank} on {host} and rank 0 on {host0} see different checkpoints of {run_dir} (latest of "
                f"rank {rank}'s files {listed}): the nodes do not share the run directory; put run.dir on a "
                "file system every node mounts, or copy every node's checkpoints to every node (launch/README.md)"
            )


def corrupted_ranks(checkpoint: Path, world_size: int) -> list[int]:
    """Ranks whose file does not match its recorded sha256 (truncated or changed since it was written).
    A file with no sha256 beside it (written before digests were recorded, or its writer died between
    the two renames, after which the file is still whole) is taken as it is."""
    bad = []
    for rank in range(world_size):
        path = rank_file(checkpoint, rank)
        recorded = digest_file(path)
        if recorded.is_file() and recorded.read_text().strip() != sha256(path):
            bad.append(rank)
    return bad


def latest_good_checkpoint(run_dir: Path, world_size: int) -> Path | None:
    """The newest complete checkpoint whose every rank file matches its sha256, with a warning on stderr
    for each newer one passed over; None if the run has no complete checkpoint. Decided in one process
    (rank 0), so every rank loads the same step."""
    checkpoints = list_checkpoints(run_dir, world_size)
    skipped = []
    for checkpoint in reversed(checkpoints):
        bad = corrupted_ranks(checkpoint, world_size)
        if not bad:
            for name, ranks in skipped:
                print(f"warning: {name}: rank file(s) {ranks} do not match their sha256 (truncated or corrupted); "
                      f"resuming from {checkpoint.name}", file=sys.stderr)  # fmt: skip
            return checkpoint
        skipped.append((checkpoint, bad))
    if checkpoints:
        raise ConfigError(
            f"every checkpoint in {run_dir / 'checkpoints'} is corrupted (its rank files do not match their sha256): "
            "restore one from a backup, or start a new run with another run.name"
        )
    return None


def load_file(path: Path, device: torch.device | str = "cpu") -> object:
    """torch.load with weights_only=True: tensors, containers and numbers only, so a file crafted to run
    code when unpickled is refused before anything in it runs. Any failure to read it is a ConfigError."""
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # a foreign, truncated or hostile file: what torch raises varies
        # torch wraps what its weights-only unpickler refused between paragraphs of advice: keep the refusal
        paragraphs = [p.strip() for p in str(error).split("\n\n") if p.strip()] or [type(error).__name__]
        refused = paragraphs[0].startswith("Weights only load failed") and len(paragraphs) > 1
        reason = (paragraphs[1] if refused else paragraphs[0].splitlines()[0]).split(". ")[0].rstrip(".")[:160]
        raise ConfigError(
            f"{path} is not a readable checkpoint ({reason}); it was loaded with weights_only=True, so nothing "
            "in it ran: use a file written by train.py"
        ) from None


def load_checkpoint(checkpoint: Path, rank: int, device: torch.device | str = "cpu") -> dict:
    """This rank's part of `checkpoint`, checked to be a checkpoint train.py wrote."""
    path = rank_file(checkpoint, rank)
    state = load_file(path, device)
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{path} is not a checkpoint of this version of train.py (version {CHECKPOINT_VERSION})")
    return state
