"""train.py under torchrun, except that on the job's first attempt rank KILL_RANK kills itself with
SIGKILL in its evaluation number KILL_AT_EVAL (0: the untrained policy's), after writing to
KILL_RECORD the sha256 of every checkpoint file written so far and the time (see test_fault.py)."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import train
from maddpg.checkpoint import sha256
from maddpg.distributed import exit_process
from maddpg.elastic import restart_count

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


if __name__ == "__main__":
    train.evaluate = evaluate_or_die
    train.main(sys.argv[1:])
    exit_process()
