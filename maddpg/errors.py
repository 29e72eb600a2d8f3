"""The errors every entry point turns into one line on stderr and an exit code (see config.exit_on_error)."""


class ConfigError(ValueError):
    """A bad configuration or input file; the message names the key and the fix. It is kept to one
    line, even when it quotes input holding line breaks."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


class NonFiniteError(ArithmeticError):
    """A NaN or Inf loss or parameter; the message names the agent, the network and the env step."""

    exit_code = 3
