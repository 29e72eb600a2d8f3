"""The error every entry point turns into one line on stderr and exit code 2."""


class ConfigError(ValueError):
    """A bad configuration or input file; the message names the key and the fix."""
