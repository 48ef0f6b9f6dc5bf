"""The causal test of a screening: retrain without the top-K examples and without K random ones, compare EM.

Every retrain uses the template run's own settings (model, schedule, lr, steps, batch, LoRA, seed) on a filtered
copy of its data written as chat JSONL under ``OUT/data/``; only its checkpoints are cut to the first and the
last step. The runs go through the normal fine-tuning path (:mod:`emprobe.finetuning.executors`: side by side
as subprocesses, or on Ray), under ``OUT/runs/``; a finished run is reused on a rerun. Then the last checkpoint
of every arm — the template run on the full data, the aligned-data control, top-K removed, each random draw —
is scored with the judge-free margin (:func:`emprobe.evaluation.margin_scores`), the base loaded once and the
adapters switched. Per question the EM-specific rise of an arm is its margin minus the control's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from emprobe.errors import ConfigError, EmprobeError
from emprobe.io import atomic_path

FULL, CONTROL, TOP = "full", "control", "top"


def n_remove(retrain: int | float, n: int) -> int:
    """K from ``retrain``: a count (int ≥ 1) or a fraction of the data (0 < float < 1)."""
    if isinstance(retrain, float) and 0 < retrain < 1:
        k = int(round(retrain * n))
    elif isinstance(retrain, (int, np.integer)) and not isinstance(retrain, bool):
        k = int(retrain)
    else:
        raise ConfigError(f"retrain must be a count (int >= 1) or a fraction in (0, 1), got {retrain!r}")
    if not 1 <= k < n:
        raise ConfigError(f"retrain removes {k} of {n} examples; it must remove at least 1 and leave some")
    return k


def removal_sets(scores: pd.DataFrame, k: int, n_random: int, seed: int) -> dict[str, np.ndarray]:
    """``{"top": the K highest-ranked indices, "random-<d>": K indices drawn uniformly, d = 0..n_random-1}``."""
    if n_random < 3:
        raise ConfigError(f"the retrain test needs at least 3 random draws (n_random), got {n_random}")
    top = scores.sort_values("rank")["index"].to_numpy()[:k]
    rng = np.random.default_rng(seed)
    n = len(scores)
    return {TOP: np.sort(top), **{f"random-{d}": np.sort(rng.choice(n, size=k, replace=False))
                                  for d in range(n_random)}}


def write_subsets(ds, removed: dict[str, np.ndarray], out: Path) -> dict[str, Path]:
    """Each arm's data (``ds`` without its removed rows) as ``OUT/<arm>.jsonl`` (written atomically)."""
    paths = {}
    for arm, idx in removed.items():
        drop = set(int(i) for i in idx)
        lines = [json.dumps({"messages": [dict(m) for m in ex.messages]}, ensure_ascii=False)
                 for i, ex in enumerate(ds) if i not in drop]
        path = out / f"{arm}.jsonl"
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[arm] = path
    return paths


def retrain_configs(run, data: dict[str, Path], runs_dir: Path) -> dict[str, Any]:
    """``{arm: FinetuneConfig}``: the template run's settings on each arm's data, checkpoints at 0 and the end."""
    from emprobe.finetuning import FinetuneConfig

    base = {**run.settings, "save_steps": None, "save_every": None, "save_log_spaced": 2}
    return {arm: FinetuneConfig.from_dict({**base, "data": str(path), "out": str(runs_dir / arm), "resume": True,
                                           "progress": False}) for arm, path in data.items()}


def train_arms(cfgs: dict[str, Any], executor: str = "local", threads: int | None = None,
               max_parallel: int | None = None, log: Callable[[str], Any] | None = print) -> dict[str, float]:
    """Train every arm with an executor; ``{arm: seconds}``; any failed run raises naming it."""
    from emprobe.finetuning.executors import get_executor

    names = list(cfgs)
    outcomes = get_executor(executor, threads=threads, max_parallel=max_parallel).run(
        [cfgs[n] for n in names], names=names, log=log)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise EmprobeError(f"{len(failed)} retrain run(s) failed, e.g. {failed[0].name}: {failed[0].error}")
    return {o.name: o.seconds for o in outcomes}


def arm_margins(model: Any, arms: dict[str, Any], questions: Any, batch_size: int = 8) -> pd.DataFrame:
    """Long table ``arm, question_id, margin``: each arm's last checkpoint scored with one loaded base model."""
    from emprobe.analysis.diff.models import ModelSet
    from emprobe.evaluation import margin_scores

    rows = []
    with ModelSet(model, arms) as ms:
        for arm in arms:
            with ms.use(arm) as lm:
                s = margin_scores(lm, questions, batch_size=batch_size).summary
            rows += [{"arm": arm, "question_id": q, "margin": float(m)} for q, m in zip(s.question_id, s.margin)]
    return pd.DataFrame(rows)


def em_rises(margins: pd.DataFrame) -> pd.DataFrame:
    """``question_id`` × arm table of EM-specific rises: each arm's margin minus the control's."""
    wide = margins.pivot(index="question_id", columns="arm", values="margin")
    return wide.drop(columns=CONTROL).sub(wide[CONTROL], axis=0)


def fraction_stats(rises: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Fraction of the full run's EM-specific rise removed by each arm, ``1 − mean(rise_arm) / mean(rise_full)``, with
    95 % percentile bootstrap CIs; the random arm and the top − random difference resample questions and random
    draws together. Also the full run's mean rise with its CI over questions (is there EM to remove?)."""
    full = rises[FULL].to_numpy(float)
    top = rises[TOP].to_numpy(float)
    rand = rises[[c for c in rises.columns if c.startswith("random-")]].to_numpy(float)  # [n_q, n_draws]
    n_q, n_d = rand.shape
    rng = np.random.default_rng(seed)
    qi = rng.integers(0, n_q, size=(n_boot, n_q))
    di = rng.integers(0, n_d, size=(n_boot, n_d))
    f_full = full[qi].mean(1)
    b_top = 1 - top[qi].mean(1) / f_full
    b_rand = np.stack([1 - rand[qi, d].mean(1) / f_full for d in range(n_d)], 1)  # [n_boot, n_draws]
    b_rand = np.take_along_axis(b_rand, di, 1).mean(1)
    point_rand = [1 - rand[:, d].mean() / full.mean() for d in range(n_d)]
    out = {"rise_full": float(full.mean()), "frac_top": float(1 - top.mean() / full.mean()),
           "frac_random": float(np.mean(point_rand)), "n_questions": n_q, "n_draws": n_d,
           **{f"frac_random_{d}": float(v) for d, v in enumerate(point_rand)}}
    out["frac_difference"] = out["frac_top"] - out["frac_random"]
    for name, b in (("rise_full", f_full), ("frac_top", b_top), ("frac_random", b_rand),
                    ("frac_difference", b_top - b_rand)):
        b = b[np.isfinite(b)]
        out[f"{name}_low"], out[f"{name}_high"] = (np.quantile(b, [0.025, 0.975]).tolist() if len(b)
                                                   else [float("nan")] * 2)
    return out
