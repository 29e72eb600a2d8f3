"""Clean stops: SIGINT (Ctrl-C) and SIGTERM ask a training run to stop, rather than kill it mid-step.

While a `StopRequest` is entered, either signal only records itself. At the end of every episode
the ranks agree on the signals recorded anywhere (the training loop's `Updates.agree`): if any rank
was signalled, every rank stops at that same env step, writes its checkpoint and exits with 128 +
the signal's number (130, 143), whichever ranks the signal reached: torchrun's whole job, one
worker killed by a batch scheduler or `timeout`, or all of them by Ctrl-C in a terminal. Later
copies of a signal are ignored. Outside the loop (start-up, the final GIF) the signals keep their
default behaviour.
"""

from __future__ import annotations

import signal
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The first SIGINT or SIGTERM this process receives while entered (`signum`, 0: none); the
    previous handlers return on exit."""

    def __init__(self):
        self.signum = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        self._previous = {sig: signal.signal(sig, self._record) for sig in SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + signum
