"""Errors a user can act on. The app prints their message and exits non-zero, without a traceback."""


class RunnerError(Exception):
    """Base class: the message says what was wrong, where, and what to do."""


class ConfigError(RunnerError):
    """A config value is out of range, unknown or inconsistent."""


class DataError(RunnerError):
    """A data file is missing, truncated, corrupt or fails its checksum."""


class TrainingError(RunnerError):
    """Training cannot go on (for example the loss became NaN)."""
