"""User-facing errors: each message is one line that names the problem."""


class EmprobeError(Exception):
    """Base class for errors caused by bad input or environment; the CLI prints them in one line."""


class DataError(EmprobeError, ValueError):
    """Malformed or empty data files, unknown built-in names."""


class ModelError(EmprobeError):
    """A model, adapter or chat template that cannot be loaded or used."""


class ConfigError(EmprobeError, ValueError):
    """Invalid options: unknown layer, bad position, conflicting settings."""
