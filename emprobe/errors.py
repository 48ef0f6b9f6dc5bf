"""User-facing errors: each message is one line that names the problem (and, where there is one, the fix).

Library messages name the *parameter* of the Python API in backticks (```batch_size` must be >= 1``); the
command line shows the matching option instead (``--batch-size must be >= 1``), see
:func:`emprobe.cli.common.cli_message`.
"""


class EmprobeError(Exception):
    """Base class for errors caused by bad input or environment; the CLI prints them in one line."""


class DataError(EmprobeError, ValueError):
    """Malformed or empty data files, unknown built-in names."""


class ModelError(EmprobeError):
    """A model, adapter or chat template that cannot be loaded or used."""


class ConfigError(EmprobeError, ValueError):
    """Invalid options: unknown layer, bad position, conflicting settings."""


class OutputError(ConfigError):
    """An output path that emprobe will not write: an existing file, a directory emprobe did not write,
    finished output without ``overwrite``, or a place that cannot be written."""
