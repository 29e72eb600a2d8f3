"""train.py in one process, killed with SIGKILL inside its KILL_SAVE-th checkpoint save, at the KILL_CALL-th
call there of os.fsync, os.replace or os.unlink (the steps on the disk a save takes: each file flushed,
renamed into place, its directory flushed, then the record the same way, then the older checkpoints
pruned); the call never happens (see test_fault.py)."""

import os
import signal
import sys

import train

real_save = train.save_checkpoint
saves, calls, saving = 0, 0, False


def killing(real):
    def call(*args, **kwargs):
        global calls
        if saving and saves == int(os.environ["KILL_SAVE"]):
            calls += 1
            if calls == int(os.environ["KILL_CALL"]):
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    return call


def counted_save(*args, **kwargs):
    global saves, saving
    saves, saving = saves + 1, True
    real_save(*args, **kwargs)
    saving = False


if __name__ == "__main__":
    for name in ("fsync", "replace", "unlink"):
        setattr(os, name, killing(getattr(os, name)))
    train.save_checkpoint = counted_save
    train.main(sys.argv[1:])
