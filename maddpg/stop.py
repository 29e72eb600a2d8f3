"""Clean stops: SIGINT (Ctrl-C) and SIGTERM ask a training run to stop, rather than kill it mid-step.

While a `StopRequest` is entered, either signal only records itself; the training loop looks at
the record at the end of every episode, where every rank agrees on it (one small all-reduce), writes
a checkpoint and stops, and the process exits with 128 + the signal's number (130, 143). torchrun
forwards the signal it receives to every rank, and Ctrl-C in a terminal reaches every process of
the job, so later copies of the signal are ignored. Outside the loop (start-up, the final GIF) the
signals keep their default behaviour.
"""

from __future__ import annotations

import signal
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The first SIGINT or SIGTERM received while entered; the previous handlers return on exit."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        self._previous = {sig: signal.signal(sig, self._record) for sig in SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum
