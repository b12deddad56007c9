"""Error types: every message says what was wrong and how to fix it."""


class GPT2InputError(ValueError):
    """Bad model input (ids, masks, lengths), raised before any graph runs."""


class GPT2ConfigError(ValueError):
    """Unknown or inconsistent configuration fields."""


class CheckpointError(ValueError):
    """A checkpoint whose keys or shapes don't match the model."""


class CheckpointNotFoundError(FileNotFoundError):
    """No loadable checkpoint where one was asked for."""


class ExportError(RuntimeError):
    """An export step that failed outside this process (a conversion child that crashed or was killed)."""
