"""User-facing errors: each carries one sentence saying what is wrong and how to fix it.

`main` prints the message without a traceback and exits with `exit_code`.
"""


class WavejaxError(Exception):
    """A problem the user can fix (bad input, missing file, diverged run)."""

    exit_code = 1


class ConfigError(WavejaxError):
    """A config value that cannot work; raised before any work starts."""

    exit_code = 2


class DataError(ConfigError):
    """A data source that is missing, unreachable or too small for the config."""


class CheckpointError(WavejaxError):
    """A checkpoint that cannot be restored into the current config."""

    exit_code = 2


class TrainingDiverged(WavejaxError):
    """A step produced NaN or Inf; the last good checkpoint is kept."""

    exit_code = 3
