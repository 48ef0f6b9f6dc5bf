"""Quiet library output by default: transformers / huggingface_hub / datasets progress bars and logs.

Every model load prints transformers' ``Loading weights`` bar and hub/datasets bars of their own; emprobe
shows its own progress instead. :func:`set_verbose` (the CLI's root ``--verbose`` flag) turns them back on.
It works through the libraries' environment variables, so processes emprobe starts (fine-tuning workers)
inherit the setting, and through their functions for the libraries already imported.

The Python API is quiet too (a notebook user did not ask for third-party bars): model loading runs inside
:func:`quiet`, which silences transformers' and huggingface_hub's bars and logs for its duration and puts the
caller's settings back afterwards, unless ``$EMPROBE_VERBOSE`` = 1 (``set_verbose(True)``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

#: environment variables read by the libraries at import time: (name, value when quiet, value when verbose)
ENV = (("HF_HUB_DISABLE_PROGRESS_BARS", "1", "0"), ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1", "0"),
       ("TRANSFORMERS_VERBOSITY", "error", "warning"), ("EMPROBE_VERBOSE", "0", "1"))


def set_verbose(verbose: bool = False) -> None:
    """Quiet (``verbose=False``) or restore library progress bars and logs, here and in child processes."""
    for name, quiet, loud in ENV:
        os.environ[name] = loud if verbose else quiet
    if "transformers" in sys.modules:
        from transformers.utils import logging as tlog

        (tlog.enable_progress_bar if verbose else tlog.disable_progress_bar)()
        (tlog.set_verbosity_warning if verbose else tlog.set_verbosity_error)()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        (enable_progress_bars if verbose else disable_progress_bars)()
    if "datasets" in sys.modules:
        import datasets

        (datasets.enable_progress_bars if verbose else datasets.disable_progress_bars)()
        datasets.logging.set_verbosity(datasets.logging.WARNING if verbose else datasets.logging.ERROR)


def is_verbose() -> bool:
    """Whether library output is on (``$EMPROBE_VERBOSE`` = 1)."""
    return os.environ.get("EMPROBE_VERBOSE", "0") == "1"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence transformers / huggingface_hub progress bars and logs inside the block (unless verbose), then
    restore what the caller had."""
    if is_verbose():
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as tlog

    bar, level, hub = tlog.is_progress_bar_enabled(), tlog.get_verbosity(), are_progress_bars_disabled()
    tlog.disable_progress_bar()
    tlog.set_verbosity_error()
    disable_progress_bars()
    try:
        yield
    finally:
        (tlog.enable_progress_bar if bar else tlog.disable_progress_bar)()
        tlog.set_verbosity(level)
        if not hub:
            enable_progress_bars()
