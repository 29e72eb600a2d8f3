"""The errors every entry point turns into one line on stderr and an exit code (exit_on_error)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ConfigError(ValueError):
    """A bad configuration or input file; the message names the key and the fix. It is kept to one
    line, even when it quotes input holding line breaks."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


class NonFiniteError(ArithmeticError):
    """A NaN or Inf loss or parameter; the message names the agent, the network and the env step."""

    exit_code = 3


def exit_on_error(
    error: ConfigError | NonFiniteError, speak: bool = True, before_exit: Callable[[], None] = lambda: None
) -> None:
    """Exit with the error's code (2 for bad input, 3 for a non-finite value); under torchrun every rank
    exits, and only rank 0 (`speak`) prints, then calls `before_exit`."""
    if speak:
        print(f"error: {error}", file=sys.stderr)
    before_exit()
    raise SystemExit(error.exit_code)


@contextmanager
def command_errors() -> Iterator[None]:
    """The body of a one-process command (`python -m maddpg.TOOL`): its bad input or non-finite value
    ends it with one line on stderr and the error's exit code."""
    try:
        yield
    except (ConfigError, NonFiniteError) as error:
        exit_on_error(error)
