"""train.py under torchrun, except that on the job's first attempt rank KILL_RANK kills itself with
SIGKILL in its evaluation number KILL_AT_EVAL (0: the untrained policy's), after writing to
KILL_RECORD the sha256 of every checkpoint file written so far and the time (see test_fault.py).
With NODE_LOCAL_DIR=DIR, rank r sees DIR/node{r} mounted over DIR/runs in a mount namespace of its own,
as nodes whose run directories lie on local disks: one path, different files (needs root)."""

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path

import train
from maddpg.core.checkpoint import sha256
from maddpg.distributed.elastic import restart_count

real_evaluate = train.evaluate
evaluations = 0


def evaluate_or_die(*args, **kwargs):
    global evaluations
    first_attempt = restart_count() == 0 and os.environ["RANK"] == os.environ["KILL_RANK"]
    if first_attempt and evaluations == int(os.environ["KILL_AT_EVAL"]):
        run_dir = Path(os.environ["KILL_RUN_DIR"])
        files = {str(f.relative_to(run_dir)): sha256(f) for f in sorted(run_dir.glob("checkpoints/*/rank*.pt"))}
        Path(os.environ["KILL_RECORD"]).write_text(json.dumps({"time": time.time(), "checkpoints": files}))
        os.kill(os.getpid(), signal.SIGKILL)
    evaluations += 1
    return real_evaluate(*args, **kwargs)


def node_local_disk(root: Path, rank: int) -> None:
    """Mount root/node{rank} over root/runs for this process alone."""
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newns, ms_rec, ms_private, ms_bind = 0x20000, 0x4000, 0x40000, 0x1000
    own, shared = root / f"node{rank}", root / "runs"
    own.mkdir(exist_ok=True)
    calls = [
        lambda: libc.unshare(clone_newns),
        lambda: libc.mount(b"none", b"/", None, ms_rec | ms_private, None),  # keep our mounts to ourselves
        lambda: libc.mount(bytes(own), bytes(shared), None, ms_bind, None),
    ]
    for call in calls:
        if call() != 0:
            raise OSError(ctypes.get_errno(), "a private mount needs root")


if __name__ == "__main__":
    train.evaluate = evaluate_or_die
    if "NODE_LOCAL_DIR" in os.environ:
        node_local_disk(Path(os.environ["NODE_LOCAL_DIR"]), int(os.environ["RANK"]))
    train.main(sys.argv[1:])  # ends the process
