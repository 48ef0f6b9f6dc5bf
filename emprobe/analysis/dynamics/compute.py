"""``ep.dynamics`` (paper §1, claim 1): in-domain loss vs off-domain alignment over runs and checkpoints.

Claim tested: *learning schedules give no better-aligned minimum at similar or lower in-domain loss*.
Every checkpoint of every non-control run is a point (in-domain validation loss, off-domain margin); the
schedules are compared at matched loss levels with a bootstrap CI over questions
(:mod:`emprobe.analysis.dynamics.matched_loss`). Runs marked as aligned-data controls never enter that comparison.

Input: a sweep directory, one run, a list of runs, or a ready table of checkpoints: one row per
checkpoint (``run``, ``schedule``, ``step``, ``val_loss``, ``ood_score``; optional ``lr``, ``data`` (or
``dataset``), ``control``) or, for CIs over questions, one row per checkpoint and question (``question_id``,
``margin`` instead of ``ood_score``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emprobe.analysis.dynamics.correlations import (
    REQUIRED,
    best_alignment_at_loss,
    loss_alignment_correlations,
)
from emprobe.analysis.dynamics.matched_loss import compare_at_matched_loss
from emprobe.analysis.dynamics.external_result import ExternalDynamicsResult
from emprobe.analysis.dynamics.result import DynamicsResult
from emprobe.analysis.dynamics.rise import em_rises, seed_noise
from emprobe.analysis.margins import checkpoint_table, margins, resolve_runs
from emprobe.errors import ConfigError

LONG = ("run", "schedule", "step", "val_loss", "question_id", "margin")


def is_aligned_control(data: Any) -> bool:
    """Whether a training-data source is an aligned-data control by name (``builtin:risky-finance-aligned``,
    ``.../bad_medical_aligned.jsonl.gz``): its name ends in ``-aligned`` or ``_aligned``."""
    name = Path(str(data).split(":", 1)[-1]).name.split(".")[0]
    return bool(re.search(r"[-_]aligned$", name))


def _control_names(ck: pd.DataFrame, control_runs: Sequence | None) -> set[str]:
    runs = set(ck.run.astype(str))
    if control_runs is None:
        if "control" in ck.columns:
            return set(ck.loc[ck.control.astype(bool), "run"].astype(str))
        return {str(r) for r, d in zip(ck.run, ck.data) if is_aligned_control(d)}
    names = {getattr(r, "name", None) or Path(str(r)).name for r in control_runs}
    unknown = sorted(names - runs)
    if unknown:
        raise ConfigError(f"control run {unknown[0]!r} is not among the runs ({', '.join(sorted(runs))})")
    return names


def _from_table(df: pd.DataFrame) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """``(long margins or None, checkpoints)`` from a ready table (long or one row per checkpoint)."""
    if {"question_id", "margin"} <= set(df.columns):
        missing = [c for c in LONG if c not in df.columns]
        if missing:
            raise ConfigError(f"dynamics table lacks columns {missing}")
        if not np.all(np.isfinite(df[["val_loss", "margin"]].to_numpy(float))):
            raise ConfigError("NaN or inf in val_loss / margin")
        long = _with_defaults(df.assign(question_id=df.question_id.astype(str)))
        return long, _checkpoints(long)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"dynamics table lacks columns {missing} (or question_id + margin per question)")
    return None, df.copy()


def _with_defaults(df: pd.DataFrame, controls: set[str] | None = None) -> pd.DataFrame:
    out = df.assign(run=df.run.astype(str), schedule=df.schedule.astype(str))
    if "data" not in out.columns:  # the dataset each run was trained on: schedules are compared within it
        out["data"] = out["dataset"].astype(str) if "dataset" in out.columns else "?"
    if "lr" not in out.columns:
        out["lr"] = np.nan
    if controls is not None:
        out["control"] = out.run.isin(controls)
    return out


def _correlations(ck: pd.DataFrame, n_permutations: int, seed: int) -> pd.DataFrame:
    """Per-run ρ for every run; the pooled ('all runs') row over the non-control runs only."""
    non, ctrl = ck[~ck.control], ck[ck.control]
    frames = [loss_alignment_correlations(non, n_permutations, seed).assign(control=False)]
    if len(ctrl):
        c = loss_alignment_correlations(ctrl, n_permutations, seed)
        frames.append(c[c.scope != "all runs"].assign(control=True))
    return pd.concat(frames, ignore_index=True)


def dynamics(runs_or_table: Any = None, *, results: Any = None, score: str = "aligned", sesoi: float | None = None,
             questions: Any = "builtin:em-core", control_runs: Sequence | None = None,
             n_permutations: int = 1000, loss_levels: Sequence[float] | None = None, batch_size: int = 8,
             seed: int = 0, merge: bool = False, sesoi_fraction: float = 0.25, n_boot: int = 2000,
             min_gap: float | None = None) -> DynamicsResult | ExternalDynamicsResult:
    """Relate in-domain validation loss to off-domain alignment and compare schedules at matched loss.

    ``results``: evaluations made elsewhere instead of runs (files, a folder, a glob, a ``runs.yaml`` or
    :func:`ep.load_results <emprobe.evaluation.external.load_results>` output): claim 1 on them in ``score``'s units
    with ``sesoi`` (:func:`~emprobe.analysis.dynamics.external.external_dynamics`; ``loss_levels`` and ``seed`` apply).

    ``runs_or_table``: a sweep directory, a run (directory or :class:`~emprobe.finetuning.Run`), a list of
    runs, or a DataFrame of checkpoints (see the module docstring). Runs are scored with the margin on
    ``questions`` (cached per run; identical step-0 checkpoints scored once). ``control_runs``: names (or
    runs) of aligned-data controls; default: a ``control`` column of the table, else every run whose
    training data is named ``*-aligned`` / ``*_aligned``. ``loss_levels``: matched in-domain loss levels
    (default: the lower end and quartiles of the loss range every schedule reaches); ``merge``: score each
    LoRA checkpoint with its adapter merged into the weights (faster). The unit compared is the table's
    ``schedule``: its runs (seeds, learning rates) are resampled by the hierarchical bootstrap; set it to e.g.
    ``"cosine@0.001"`` in a table to compare schedule x learning-rate variants instead. A ``seed`` column (or
    the runs' own seeds) tells seeds apart for the noise floor.

    Claim 1's smallest effect of interest, declared before looking: ``sesoi_fraction`` (default 0.25) of each
    dataset's established EM-specific rise (misaligned runs' rise over step 0 minus the aligned control's
    change), or ``sesoi``, an absolute margin gap in nats/token (``min_gap`` is its former name). ``n_boot``:
    hierarchical bootstrap draws. See :mod:`emprobe.analysis.dynamics.decision` for the verdict.
    """
    if results is not None:
        from emprobe.analysis.dynamics.external import external_dynamics

        return external_dynamics(results, score=score, sesoi=sesoi, loss_levels=loss_levels, seed=seed)
    if runs_or_table is None:
        raise ConfigError("dynamics needs runs (a sweep directory, runs or a table) or `results`")
    sesoi = min_gap if sesoi is None else sesoi
    if not 0 < sesoi_fraction <= 1:
        raise ConfigError(f"sesoi_fraction must be in (0, 1], got {sesoi_fraction}")
    if sesoi is not None and not sesoi > 0:
        raise ConfigError(f"sesoi must be > 0 (nats/token), got {sesoi}")
    long, ck, meta = _inputs(runs_or_table, questions, batch_size, merge)
    controls = _control_names(_with_defaults(ck), control_runs)
    ck = _with_defaults(ck, controls)
    non = ck[~ck.control]
    if non.empty:
        raise ConfigError("every run is an aligned-data control: no schedule to compare")
    if long is not None:
        long = _with_defaults(long, controls)
    every = long if long is not None else ck.assign(question_id="<mean>", margin=ck.ood_score)
    comparison = compare_at_matched_loss(every[~every.control], loss_levels, n_boot=n_boot, seed=seed)
    return DynamicsResult(checkpoints=ck.reset_index(drop=True), margins=long,
                          correlations=_correlations(ck, n_permutations, seed),
                          best_at_loss=best_alignment_at_loss(non, list(loss_levels) if loss_levels else None),
                          comparison=comparison, rises=em_rises(every, n_boot=n_boot, seed=seed),
                          noise=seed_noise(ck), controls=tuple(sorted(controls)), meta=meta,
                          sesoi_fraction=sesoi_fraction, sesoi=sesoi)


def _inputs(runs_or_table, questions, batch_size: int, merge: bool):
    """``(long margins or None, checkpoints, meta)`` from a table or from runs (scored here)."""
    meta: dict[str, Any] = {"questions": getattr(questions, "source", str(questions))}
    if isinstance(runs_or_table, pd.DataFrame):
        if runs_or_table.empty:
            raise ConfigError("dynamics table is empty")
        long, ck = _from_table(runs_or_table)
        return long, ck, {**meta, "source": "table"}
    runs = resolve_runs(runs_or_table)
    scored = margins(runs, questions, batch_size=batch_size, merge=merge, cache=True)
    long = scored.loss_margins()
    seeds = {r.name: r.settings.get("seed") for r in runs}
    long = _with_defaults(long.assign(seed=long.run.map(seeds)))
    meta.update({"runs": [str(r.path) for r in runs], "checkpoints_scored": scored.meta["checkpoints_scored"],
                 "checkpoints_reused": scored.meta["checkpoints_reused"]})
    return long, _checkpoints(long), meta


def _checkpoints(long: pd.DataFrame) -> pd.DataFrame:
    """One row per checkpoint (``ood_score`` = mean margin), keeping the run's seed when the table has one."""
    ck = checkpoint_table(long)
    if "seed" in long.columns:
        ck["seed"] = ck.run.map(long.drop_duplicates("run").set_index("run").seed)
    return ck
