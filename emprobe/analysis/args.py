"""Argument checks of ``ep.diff``, ``ep.screen`` and ``ep.consistency``, light (no torch, no pandas): each verb runs
its check first, and the command line runs the same check before it imports anything heavy, so a bad argument
comes back in about a second. Messages name the parameter in backticks (:mod:`emprobe.validate`); the command line
shows the option that sets it.
"""

from __future__ import annotations

from typing import Any

from emprobe.errors import ConfigError
from emprobe.validate import CHECKS, check_args, check_as, model_arg, number, one_of


def check_diff(*, base: Any, tuned: Any, control: Any = None, questions: Any = "builtin:em-core",
               text: Any = "builtin:neutral-text", rises: Any = None, n_questions: int | None = None,
               n_texts: int | None = None, max_new_tokens: int = 48, max_text_tokens: int = 64, lens_tokens: int = 5,
               top_k: int = 10, sesoi: float = 0.2, n_boot: int = 2000, batch_size: int = 8) -> None:
    """What :func:`emprobe.analysis.diff.diff` checks before loading anything."""
    model_arg(base, "base")
    check_as("tuned", tuned, "tuned")
    if control is not None:
        check_as("tuned", control, "control")
    check_args(questions=questions, text=text, n_questions=n_questions, max_new_tokens=max_new_tokens, sesoi=sesoi,
               n_boot=n_boot, batch_size=batch_size)
    check_as("table", rises, "rises")
    check_as("limit", n_texts, "n_texts")
    for name, value in (("max_text_tokens", max_text_tokens), ("lens_tokens", lens_tokens), ("top_k", top_k)):
        number(value, name, low=1, integer=True)


def check_screen(*, direction: Any, data: Any = None, model: Any = None, layer: int | None = None,
                 baseline: Any = "generate", run: Any = None, control: Any = None, retrain: Any = None,
                 n_random: int = 3, questions: Any = "builtin:em-core", n_questions: int | None = None,
                 out: Any = None, executor: str = "local", max_parallel: int | None = None, sesoi: float = 0.1,
                 n_boot: int = 2000, batch_size: int = 8, max_new_tokens: int = 96, out_param: str = "out") -> None:
    """What :func:`emprobe.analysis.screen.screen` checks before loading anything; with ``retrain`` the output
    policy for the retrain directory ``out`` (named ``out_param`` in messages; a screen's own directory is
    continued, anything else emprobe wrote is not)."""
    CHECKS["direction"](direction, "direction")
    check_args(model=model, run=run, questions=questions, n_questions=n_questions, sesoi=sesoi, n_boot=n_boot,
               batch_size=batch_size, max_new_tokens=max_new_tokens)
    check_as("run", control, "control")
    if data is None and run is None:
        raise ConfigError("screen needs the training data (`data`) or the run trained on it (`run`)")
    if data is not None:
        check_as("data", data, "data")
    if baseline != "generate":
        check_as("data", baseline, "baseline")
    number(layer, "layer", low=0, integer=True, none=True)
    one_of(executor, ("local", "ray"), "executor")
    number(max_parallel, "max_parallel", low=1, integer=True, none=True)
    if retrain is None:
        return
    number(retrain, "retrain", low=0, low_open=True)
    if run is None or control is None or out is None:
        raise ConfigError(f"the retrain test needs `run` (the full-data run), `control` (its aligned-data control) "
                          f"and `{out_param}` (where the retrain runs go)")
    number(n_random, "n_random", low=3, integer=True)
    from emprobe.outdir import check_out

    check_out(out, reuse=("screen_retrain",), param=out_param)


def check_consistency(*, score: str = "aligned", sesoi: float = 0.1, n_boot: int = 2000) -> None:
    """What :func:`emprobe.analysis.consistency.consistency` checks before reading the results."""
    from emprobe.evaluation.external.types import SCORES

    one_of(score, SCORES, "score")
    check_args(sesoi=sesoi, n_boot=n_boot)


def check_runs(res: Any, score: str) -> None:
    """``res`` (:class:`~emprobe.evaluation.external.ExternalResults`) holds >= 2 runs, each with ``score``."""
    from emprobe.errors import DataError

    if len(res) < 2:
        raise DataError(f"consistency needs >= 2 runs, got {len(res)} ({res[0].source})")
    lacking = [r.name for r in res if not r.has(score)]
    if lacking:
        raise DataError(f"run {lacking[0]} has no {score} scores")
