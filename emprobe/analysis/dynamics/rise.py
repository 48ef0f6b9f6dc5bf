"""Is there EM to compare schedules on? The rise that claim 1's SESOI is tied to, and the seed noise floor.

Per dataset, each run's **rise** is its per-question off-domain margin at its last checkpoint minus at its first
(step 0: the base model). The misaligned runs' rise (every non-control run of the dataset) with a hierarchical
bootstrap CI (runs, then questions) says whether EM happened at all; minus the aligned-data control runs' change it
is the **EM-specific rise**, the effect a schedule gap is measured against (claim 1's SESOI is a stated fraction of
it). A control run belongs to the dataset its data names without the ``-aligned`` / ``_aligned`` suffix (or to the
table's ``dataset``). The **noise floor** is the seed-to-seed standard deviation of the final off-domain margin among
runs that share dataset, schedule and learning rate (pooled); with one seed per cell there is none to report.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from emprobe.analysis.dynamics.matched_loss import trajectories
from emprobe.analysis.stats.hierarchical import hierarchical_bootstrap

RISE_COLUMNS = ["data", "n_runs", "n_control_runs", "n_questions", "rise", "rise_ci_low", "rise_ci_high",
                "control_change", "em_specific", "em_ci_low", "em_ci_high", "established", "why"]


def dataset_key(data: str, control: bool) -> str:
    """The dataset a run belongs to: a control's data name without its ``-aligned`` / ``_aligned`` suffix."""
    return re.sub(r"[-_]aligned(?=(\.[^/]*)?$)", "", str(data)) if control else str(data)


def _run_rises(long: pd.DataFrame, questions: list[str]) -> list[np.ndarray]:
    """Each run's per-question margin at its last checkpoint minus at its first (runs with >= 2 checkpoints)."""
    return [m[-1] - m[0] for _, _, m in trajectories(long, questions).values() if len(m) >= 2]


def em_rises(long: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per dataset (``RISE_COLUMNS``): the misaligned runs' rise, the control change and the EM-specific
    rise with 95 % CIs (hierarchical bootstrap); ``established`` when the rise's CI excludes 0 (``why`` otherwise).
    ``long``: per (run, step, question) ``margin`` with ``data`` and a boolean ``control`` column."""
    long = long.assign(key=[dataset_key(d, c) for d, c in zip(long.data, long.control)])
    rows = []
    for i, (key, g) in enumerate(long.groupby("key", sort=True)):
        mis, ctl = g[~g.control], g[g.control]
        if mis.empty:
            continue
        qs = sorted(set.intersection(*[set(r.question_id) for _, r in g.groupby("run")]))
        groups = {"misaligned": _run_rises(mis, qs), "control": _run_rises(ctl, qs) if len(ctl) else []}
        row = {"data": key, "n_runs": len(groups["misaligned"]), "n_control_runs": len(groups["control"]),
               "n_questions": len(qs)}
        if not groups["misaligned"] or not qs:
            rows.append({**row, "established": False,
                         "why": "every run has a single checkpoint: no rise over step 0 to measure"})
            continue
        hb = hierarchical_bootstrap({k: np.stack(v) for k, v in groups.items() if v}, n_boot, seed + i)
        rise = hb.contrast({"misaligned": 1.0}).effect()
        row.update(rise=rise.estimate, rise_ci_low=rise.ci_low, rise_ci_high=rise.ci_high)
        if groups["control"]:
            em = hb.contrast({"misaligned": 1.0, "control": -1.0}).effect()
            row.update(control_change=hb.contrast({"control": 1.0}).estimate, em_specific=em.estimate,
                       em_ci_low=em.ci_low, em_ci_high=em.ci_high)
        ok = bool(rise.ci_low > 0)
        why = "" if ok else (f"no EM established: the misaligned runs' rise {rise.text('+.4f')} "
                             + ("has no CI (one run, one question)" if not rise.finite else "touches 0"))
        rows.append({**row, "established": ok, "why": why})
    return pd.DataFrame(rows, columns=RISE_COLUMNS)


def seed_noise(checkpoints: pd.DataFrame) -> dict[str, float]:
    """Pooled seed-to-seed SD of the final off-domain margin (``ood_score`` at each run's last step) among runs that
    share dataset, schedule and learning rate: ``{"sd", "n_cells", "n_runs"}`` (sd NaN with one run per cell).
    Aligned-data control runs (a true ``control`` column) are no seeds of a misaligned cell: left out."""
    if "control" in checkpoints.columns:
        checkpoints = checkpoints[~checkpoints.control.astype(bool)]
    last = checkpoints.sort_values("step").groupby("run", sort=True).tail(1)
    cells = last.assign(lr=last.lr.astype(str)).groupby(["data", "schedule", "lr"]).ood_score
    var, dof, n_cells, n_runs = 0.0, 0, 0, 0
    for _, v in cells:
        if len(v) > 1:
            var += float(v.var(ddof=1)) * (len(v) - 1)
            dof, n_cells, n_runs = dof + len(v) - 1, n_cells + 1, n_runs + len(v)
    return {"sd": float(np.sqrt(var / dof)) if dof else float("nan"), "n_cells": n_cells, "n_runs": n_runs}
