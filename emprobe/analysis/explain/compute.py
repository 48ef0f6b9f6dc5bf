"""``explain``: why EM hits some questions far more than others.

One row per question: its EM-specific rise (misaligned change − aligned-control change) with a t-interval over
its reference pairs, the raw rise and the control's change beside it, the base margin (headroom), each
per-question factor and the category. A *nested* leave-one-question-out ridge of the rise on the factors (base
margin always included) gives the full model's R² (95% bootstrap CI) and ρ against shuffled targets, and each
factor's unique contribution — drop-one ΔR² with a permutation null and a 95% bootstrap CI, Holm-corrected over
the factors. Optional ``prior_features`` (e.g. the pre-fine-tuning prompt activations ``priors`` uses) add the
stacked factor ``prior_prediction``: a ridge prediction of the same target from those features, rebuilt inside
every fold and every permutation so no held-out question's target reaches its own training rows (see
:mod:`emprobe.analysis.explain.nested`; the standardisation is rebuilt per fold too). Each factor's marginal ρ
with the aligned control's change stands beside its ρ with the target. The split-half reliability of the rise
across pairs (Spearman–Brown) is the ceiling any predictor can reach. With ``dataset`` in ``rises`` (≥ 2 narrow
datasets) the per-question EM of the datasets is compared, and the model runs on the pooled target (mean over
datasets) and per dataset. The verdict: the model's R² against the SESOI ``sesoi`` (R², declared before looking)
under :mod:`emprobe.analysis.stats.verdict`, with the permutation p and a credited factor required for
"supported".
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from emprobe.analysis.explain.model import (
    PRIOR,
    FactorModel,
    category_term,
    factor_contributions,
    model_fit,
    pair_ci,
    rho_with_ci,
)
from emprobe.analysis.explain.result import ExplainResult
from emprobe.analysis.stats import bootstrap_ci, split_half_reliability
from emprobe.errors import ConfigError, DataError

VALUES = ("base", "misaligned_change", "control_change", "em_rise")
N_WORST = 5


def explain(rises: Any, factors: Any = None, *, control: Any = None, questions: Any = "builtin:em-core",
            batch_size: int = 8, prior_features: Any = None, categories: Any = None, answers: Any = None,
            reliability_splits: int = 200, n_permutations: int = 1000, alpha: float = 1.0, prior_alpha: float = 1.0,
            sesoi: float = 0.10, seed: int = 0) -> ExplainResult:
    """Explain the per-question EM-specific rise by per-question factors (see the module docstring).

    ``rises``: a :class:`~emprobe.analysis.margins.MarginsResult` (``ep.margins``), the misaligned run(s) with
    their aligned-data ``control`` run (scored here with :func:`~emprobe.analysis.margins.margins` on
    ``questions``), or a long table (or parquet/CSV path) with ``question_id, pair[, dataset], base,
    misaligned_change, control_change, em_rise[, category]`` (a study's ``margins/rises.parquet``). ``factors``:
    per-question numeric columns indexed by (or with a column) ``question_id``; a ready-made prediction of the
    target (``prior_prediction``) is refused — pass its inputs as ``prior_features`` (per-question numeric
    columns, same forms) so it is refit inside every fold. ``categories``: question_id → category (overrides the
    ``category`` column). ``answers``: ``question_id, base, misaligned`` answer texts shown beside the
    worst-explained questions. ``alpha`` / ``prior_alpha``: ridge penalties (scale-free) of the model and of the
    prior fit. ``sesoi``: the smallest out-of-sample R² of interest, declared before looking.
    """
    if not 0 < sesoi < 1:
        raise ConfigError(f"sesoi must be an R² in (0, 1), got {sesoi}")
    long = _read_rises(_rises_table(rises, control, questions, batch_size, seed), categories)
    pooled = long.groupby(["question_id", "pair"], sort=True)[list(VALUES)].mean().reset_index()
    per_q = _per_question(pooled, long)
    qids = per_q.question_id.to_numpy()
    fac = _factor_frame(factors, qids, "factors")
    if PRIOR in fac.columns:
        raise ConfigError(f"factors has a {PRIOR!r} column: a prediction of the target fit outside explain leaks the "
                          "held-out targets; pass its inputs as prior_features (refit inside every fold)")
    kernel = _prior_kernel(prior_features, qids)
    fm = FactorModel(np.c_[per_q.base.to_numpy(float), fac.to_numpy(float)], ("base", *fac.columns), kernel, alpha,
                     prior_alpha)
    y = per_q.em_rise.to_numpy(float)
    rel = split_half_reliability(pooled[["question_id", "pair", "em_rise"]], reliability_splits, seed, value="em_rise")
    model, contrib = factor_contributions(fm, y, control=per_q.control_change.to_numpy(float),
                                          n_permutations=n_permutations, seed=seed)
    pred = model.pop("prediction")
    table = per_q.assign(**{n: fac[n].to_numpy(float) for n in fac.columns}, prediction=pred, residual=y - pred)
    if kernel is not None:
        table[PRIOR] = fm.prior_loqo(y)
    cats = table.category.astype(str).to_numpy()
    model.update(category_term(fm, cats, y, model["r2"], n_permutations=n_permutations, seed=seed))
    datasets, consistency = _across_datasets(long, fm, qids, n_permutations, reliability_splits, seed)
    return ExplainResult(
        questions=table, factors=contrib, categories=_category_table(table, seed), worst=_worst(table, answers),
        datasets=datasets, consistency=consistency, model=model, reliability=rel,
        meta={"n_questions": len(qids), "n_pairs": int(pooled.pair.nunique()), "factors": list(fm.all_names),
              "datasets": sorted(long.dataset.unique()) if "dataset" in long else [], "alpha": alpha,
              "prior_alpha": prior_alpha, "n_prior_features": 0 if kernel is None else _n_prior(prior_features),
              "sesoi": sesoi, "n_permutations": n_permutations, "reliability_splits": reliability_splits,
              "seed": seed})


# ---- inputs -----------------------------------------------------------------------------------------
def _rises_table(rises: Any, control: Any, questions: Any, batch_size: int, seed: int) -> Any:
    """The rises table of a :class:`MarginsResult`, of runs scored against ``control``, or ``rises`` as given
    (the misaligned run becomes the ``dataset`` of each row)."""
    from emprobe.analysis.margins import MarginsResult, margins

    if control is not None:
        rises = margins(rises, questions, controls=control, batch_size=batch_size, merge=True, seed=seed)
    if isinstance(rises, MarginsResult):
        return rises.rises.rename(columns={"run": "dataset"})
    return rises


def _table(x: Any, what: str) -> pd.DataFrame:
    if isinstance(x, pd.DataFrame):
        return x.copy()
    from emprobe.io import read_table

    return read_table(x, what) if not isinstance(x, pd.Series) else x.to_frame()


def _read_rises(rises: Any, categories: Any) -> pd.DataFrame:
    df = _table(rises, "rises table")
    missing = [c for c in ("question_id", "pair", *VALUES) if c not in df.columns]
    if missing:
        raise DataError(f"rises table lacks column(s) {', '.join(missing)} (need question_id, pair, "
                        f"{', '.join(VALUES)}; the study's margins/rises.parquet has them)")
    bad = [c for c in VALUES if not np.all(np.isfinite(pd.to_numeric(df[c], errors="coerce")))]
    if bad:
        raise DataError(f"rises table: column {bad[0]!r} has missing or non-numeric values")
    df["question_id"] = df.question_id.astype(str)
    if categories is not None:
        cat = categories if isinstance(categories, (dict, pd.Series)) else \
            _table(categories, "categories").set_index("question_id")["category"]
        df["category"] = df.question_id.map(lambda q: pd.Series(cat).get(q, "uncategorised"))
    elif "category" not in df.columns:
        df["category"] = "uncategorised"
    if df.question_id.nunique() < 5:
        raise DataError(f"explain needs >= 5 questions, the rises table has {df.question_id.nunique()}")
    return df


def _factor_frame(factors: Any, qids: np.ndarray, what: str) -> pd.DataFrame:
    """Numeric per-question columns aligned with ``qids`` (``base`` comes from the rises and is dropped here)."""
    if factors is None:
        return pd.DataFrame(index=qids)
    f = _table(factors, f"{what} table")
    if "question_id" in f.columns:
        f = f.set_index("question_id")
    f.index = f.index.astype(str)
    f = f.drop(columns=[c for c in ("base", "category", "pair", "dataset") if c in f.columns])
    non_num = [c for c in f.columns if not pd.api.types.is_numeric_dtype(f[c])]
    if non_num:
        raise DataError(f"{what} table: column {non_num[0]!r} is not numeric")
    f = f.reindex(qids)
    for col in f.columns:
        gap = f.index[~np.isfinite(f[col].to_numpy(float))]
        if len(gap):
            raise DataError(f"{what[:-1] if what.endswith('s') else what} {col!r} is missing for {len(gap)} "
                            f"question(s), e.g. {gap[0]!r}")
    return f


def _prior_kernel(prior_features: Any, qids: np.ndarray) -> np.ndarray | None:
    """The linear kernel ``X Xᵀ`` of the prior features (as given), one row per question in ``qids``."""
    if prior_features is None:
        return None
    x = _factor_frame(prior_features, qids, "prior_features").to_numpy(float)
    if not x.shape[1]:
        raise DataError("prior_features has no numeric column")
    return x @ x.T


def _n_prior(prior_features: Any) -> int:
    f = _table(prior_features, "prior_features table")
    return int(sum(pd.api.types.is_numeric_dtype(f[c]) for c in f.columns if c != "question_id"))


# ---- per-question tables ------------------------------------------------------------------------------
def _per_question(pooled: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    g = pooled.groupby("question_id", sort=True)
    out = g[list(VALUES)].mean().reset_index()
    ci = g.em_rise.apply(pair_ci)
    out["em_rise_ci_low"] = [c[0] for c in ci.loc[out.question_id]]
    out["em_rise_ci_high"] = [c[1] for c in ci.loc[out.question_id]]
    out["n_pairs"] = g.size().loc[out.question_id].to_numpy()
    cats = long.drop_duplicates("question_id").set_index("question_id").category
    out["category"] = cats.loc[out.question_id].to_numpy()
    cols = ["question_id", "category", "em_rise", "em_rise_ci_low", "em_rise_ci_high", "misaligned_change",
            "control_change", "base", "n_pairs"]
    return out[cols]


def _category_table(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    rows = []
    for cat, g in table.groupby("category", sort=True):
        lo, hi = bootstrap_ci(g.em_rise.to_numpy(float), seed=seed)
        rows.append({"category": cat, "n_questions": len(g), "em_rise": g.em_rise.mean(), "ci_low": lo, "ci_high": hi,
                     "misaligned_change": g.misaligned_change.mean(), "control_change": g.control_change.mean()})
    return pd.DataFrame(rows).sort_values("em_rise", ascending=False).reset_index(drop=True)


def _worst(table: pd.DataFrame, answers: Any) -> pd.DataFrame:
    w = table.assign(abs_residual=table.residual.abs()).nlargest(N_WORST, "abs_residual")
    w = w[["question_id", "category", "em_rise", "prediction", "residual", "base"]].reset_index(drop=True)
    if answers is not None:
        a = _table(answers, "answers table")
        if not {"question_id", "base", "misaligned"} <= set(a.columns):
            raise DataError("answers table needs columns question_id, base, misaligned")
        a = a.assign(question_id=a.question_id.astype(str)).drop_duplicates("question_id").set_index("question_id")
        w["answer_base"] = w.question_id.map(a["base"])
        w["answer_misaligned"] = w.question_id.map(a["misaligned"])
    return w


# ---- across datasets ----------------------------------------------------------------------------------
def _across_datasets(long: pd.DataFrame, fm: FactorModel, qids: np.ndarray, n_permutations: int, splits: int,
                     seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    if "dataset" not in long.columns or long.dataset.nunique() < 2:
        return pd.DataFrame(), pd.DataFrame()
    long = long.assign(dataset=long.dataset.astype(str))
    per = long.groupby(["dataset", "question_id"])[["em_rise", "misaligned_change"]].mean()
    rows = []
    for ds, g in long.groupby("dataset", sort=True):
        y = per.loc[ds].em_rise.reindex(qids)
        if y.isna().any():
            raise DataError(f"dataset {ds!r} lacks {int(y.isna().sum())} question(s) of the pooled target")
        rel = split_half_reliability(g[["question_id", "pair", "em_rise"]], splits, seed, value="em_rise")
        fit = model_fit(fm, y.to_numpy(float), n_permutations=n_permutations, seed=seed)
        fit.pop("prediction")
        rows.append({"dataset": ds, "n_questions": len(y), "em_rise": y.mean(), "reliability": rel["reliability"],
                     "ceiling_rho": rel["ceiling_rho"], **fit})
    cons = []
    for a, b in combinations(sorted(long.dataset.unique()), 2):
        for target, col in (("em_specific", "em_rise"), ("raw", "misaligned_change")):
            va, vb = per.loc[a][col].reindex(qids), per.loc[b][col].reindex(qids)
            cons.append({"dataset_a": a, "dataset_b": b, "target": target,
                         **rho_with_ci(va.to_numpy(float), vb.to_numpy(float), n_permutations=n_permutations,
                                       seed=seed)})
    return pd.DataFrame(rows), pd.DataFrame(cons)
