"""Errors wxb raises on bad input.

Every message is one line that names the file, field or value at fault and says what would work.
The CLI prints it as is, with no traceback.
"""


class WxbError(Exception):
    """Base class of every error wxb raises on purpose."""


class ConfigError(WxbError):
    """A configuration value (training argument, model field, YAML key) is invalid."""


class DataError(WxbError):
    """A data file or dataset is missing, empty or malformed."""


class CheckpointError(WxbError):
    """A checkpoint is missing, incomplete, or belongs to a different model."""


class TrainingError(WxbError):
    """Training cannot go on (for example the loss became NaN); a checkpoint was saved first."""
