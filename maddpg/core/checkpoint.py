"""Checkpoints: one directory per step with one file per rank and a record (complete.json) that lists
every rank's file with its sha256, written after every file is on disk; verified before a resume, loaded
with weights_only=True."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from maddpg.core.buffer import buffer_class
from maddpg.core.comm import Comm
from maddpg.core.errors import ConfigError

CHECKPOINT_VERSION = 2  # 2: records the mode and world size that wrote it
RECORD_FILE = "complete.json"


def checkpoint_dir(run_dir: Path, env_steps: int) -> Path:
    return run_dir / "checkpoints" / f"ckpt_{env_steps:012d}"


def rank_file(checkpoint: Path, rank: int) -> Path:
    return checkpoint / f"rank{rank}.pt"


def record_file(checkpoint: Path) -> Path:
    return checkpoint / RECORD_FILE


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fsync(path: Path) -> None:
    """Flush a file's contents, or a directory's entries (the renames into it), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path` and flush it to the disk -> the temporary file,
    whole, for os.replace to put in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    fsync(tmp)
    return tmp


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """`write` a temporary file (prepare), rename it over `path` and flush the directory: readers never
    see a partial file, and once this returns the new file survives a crash."""
    os.replace(prepare(path, write), path)
    fsync(path.parent)


def save_atomic(obj: dict, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


@dataclass(frozen=True)
class Record:
    """A checkpoint's RECORD_FILE: the world size that wrote it and every rank's file with its sha256."""

    world_size: int
    env_steps: int
    sha256: dict[str, str]  # rank file name -> its sha256, one per rank

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


class Incomplete(Exception):
    """A checkpoint that is not complete; the message says why, e.g. `no complete.json (...)`."""


def save_checkpoint(state: dict, run_dir: Path, env_steps: int, comm: Comm, keep: int) -> None:
    """This rank's file of the checkpoint at `env_steps`, written atomically and flushed to the disk. Every
    rank's sha256 then goes to rank 0 in one collective, which is also the barrier: every file is in place
    when rank 0 writes the record, from which on the checkpoint is complete, and only then prunes the
    older checkpoints beyond the newest `keep`. Every rank must call it."""
    checkpoint = checkpoint_dir(run_dir, env_steps)
    path = rank_file(checkpoint, comm.rank)
    save_atomic(state, path)
    digests = comm.all_gather_object(sha256(path))
    if comm.is_main:
        files = {rank_file(checkpoint, rank).name: digest for rank, digest in enumerate(digests)}
        write_atomic(record_file(checkpoint), Record(comm.world_size, env_steps, files).write)
        fsync(checkpoint.parent)  # the checkpoint's own directory entry
        prune(run_dir, checkpoint, keep)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Every checkpoint directory of a run, complete or not, oldest first (names sort by step)."""
    return sorted(c for c in (run_dir / "checkpoints").glob("ckpt_*") if c.is_dir())


def prune(run_dir: Path, newest: Path, keep: int) -> None:
    """Delete the checkpoints older than `newest` but the newest `keep` - 1 of them that hold a record:
    the others, and leftovers of saves that never finished. Each loses its record first, so a prune cut
    short leaves an incomplete checkpoint, never one that looks complete. (A record, not its sha256s,
    decides here: checking them would read every kept file at every save.)"""
    older = [c for c in checkpoint_dirs(run_dir) if c.name < newest.name]
    recorded = [c for c in older if record_file(c).is_file()]
    kept = recorded[::-1][: keep - 1]
    for old in older:
        if old not in kept:
            record_file(old).unlink(missing_ok=True)
            shutil.rmtree(old)


def read_record(checkpoint: Path) -> Record:
    """A checkpoint's record, which lists one file per rank; Incomplete if it is missing or does not parse."""
    path = record_file(checkpoint)
    try:
        raw = json.loads(path.read_text())
        record = Record(int(raw["world_size"]), int(raw["env_steps"]), dict(raw["sha256"]))
    except FileNotFoundError:
        raise Incomplete(f"no {RECORD_FILE}: its save did not finish, or an older version wrote it") from None
    except (OSError, ValueError, KeyError, TypeError) as error:  # unreadable, not JSON, or not a record
        raise Incomplete(f"{RECORD_FILE} is not a checkpoint record ({error!r:.100})") from None
    if sorted(record.sha256) != sorted(rank_file(checkpoint, r).name for r in range(record.world_size)):
        raise Incomplete(f"{RECORD_FILE} does not list one file per rank of {record.world_size}")
    return record


def verify(checkpoint: Path) -> Record:
    """The record of a complete checkpoint, every file it lists read back and matching its sha256;
    Incomplete saying why otherwise."""
    record = read_record(checkpoint)
    for name, digest in record.sha256.items():
        try:
            matches = sha256(checkpoint / name) == digest
        except OSError as error:
            raise Incomplete(f"{name} is unreadable ({error.strerror})") from None
        if not matches:
            raise Incomplete(f"{name} does not match its sha256 in {RECORD_FILE} (truncated or changed)")
    return record


def require_complete(checkpoint: Path, fix: str) -> Record:
    """The record of `checkpoint`, verified; a ConfigError that says why and `fix` if it is not complete."""
    try:
        return verify(checkpoint)
    except Incomplete as why:
        raise ConfigError(f"{checkpoint} is not a complete checkpoint ({why}): {fix}") from None


def rewrite(checkpoint: Path, edit: Callable[[dict], object]) -> None:
    """Rewrite every rank file of a complete `checkpoint` once `edit(state)` has changed its state in
    place, and its record. Every edited file, and the new record, is first written to a temporary file
    and flushed to the disk; then they are renamed into place, the record last. A crash before the first
    rename leaves the checkpoint as it was; one within the few renames leaves it incomplete (the files
    renamed so far no longer match the old record; the others' temporary files lie beside them), so a
    resume passes it over; after the last rename it is the rewritten one."""
    record = require_complete(checkpoint, "restore it, or rewrite another checkpoint")
    prepared, digests = {}, {}
    for rank in range(record.world_size):
        state, path = load_checkpoint(checkpoint, rank), rank_file(checkpoint, rank)
        edit(state)
        prepared[path] = prepare(path, lambda tmp, state=state: torch.save(state, tmp))
        digests[path.name] = sha256(prepared[path])
    prepared[record_file(checkpoint)] = prepare(record_file(checkpoint), replace(record, sha256=digests).write)
    for path, tmp in prepared.items():  # in insertion order: the record last
        os.replace(tmp, path)
    fsync(checkpoint)


def drop_buffer(checkpoint: Path) -> None:
    """Rewrite a complete `checkpoint` without its replay buffers' contents, if it holds any: a finished
    run's checkpoint stays resumable, without the buffer, at a fraction of the disk."""
    ranks = range(require_complete(checkpoint, "restore it, or drop the buffer of another checkpoint").world_size)
    if any(buffered_transitions(load_checkpoint(checkpoint, rank)) for rank in ranks):
        rewrite(checkpoint, without_buffer_data)


def without_buffer_data(state: dict) -> None:
    """Drop a rank's replay buffer contents from its state, in place, as the buffer's class drops them
    (a pipeline learner holds no buffer)."""
    if "buffer" in state:
        buffer_class(state["buffer"]).drop_data(state["buffer"])


def buffered_transitions(state: dict) -> int:
    """The transitions a rank's state holds in its replay buffer (0 without the contents)."""
    return buffer_class(state["buffer"]).transitions(state["buffer"]) if "buffer" in state else 0


def list_checkpoints(run_dir: Path, world_size: int | None = None) -> list[Path]:
    """The complete checkpoints of a run (every file its record lists matches its sha256), written by
    `world_size` ranks when given, oldest first."""
    complete = []
    for checkpoint in checkpoint_dirs(run_dir):
        try:
            record = verify(checkpoint)
        except Incomplete:
            continue
        if world_size is None or record.world_size == world_size:
            complete.append(checkpoint)
    return complete


def latest_good_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, with one warning line on stderr naming every newer one
    passed over and why; None if no checkpoint was ever complete. Decided in one process (rank 0), so
    every rank loads the same step. Raises a ConfigError if checkpoints were complete once but none is
    now (truncated or changed since)."""
    candidates = checkpoint_dirs(run_dir)
    passed = []
    for checkpoint in reversed(candidates):
        try:
            verify(checkpoint)
        except Incomplete as why:
            passed.append(f"{checkpoint.name} ({why})")
            continue
        if passed:
            print(f"warning: {run_dir}: passed over {', '.join(passed)}; taking {checkpoint.name}", file=sys.stderr)
        return checkpoint
    if any(record_file(c).is_file() for c in candidates):
        raise ConfigError(
            f"every checkpoint in {run_dir / 'checkpoints'} is corrupted (the newest, {passed[0]}): restore one "
            "from a backup, or start a new run with another run.name"
        )
    return None


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
