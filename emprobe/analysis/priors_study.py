"""``emprobe priors``: predict per-question EM after fine-tuning from activations before it (paper §2).

Features: prompt-only activations (``last_prompt``, chosen layers) of one or more models *before*
fine-tuning (e.g. a pre-trained model and the instruct model), as :class:`~emprobe.probes.ActivationStore`
directories. Target: a per-question score after fine-tuning — the ``margin`` of an ``emprobe eval`` score
table (optionally minus a baseline table's, i.e. the rise), the EM rate of a judged table, or the EM rate of
anyone's judged answers CSV (columns ``question_id``, ``aligned``, ``coherent``), such as the
clarifying-EM CSVs. Layer ``l`` = residual stream after decoder block ``l``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from emprobe.analysis.priors import loqo_pls, loqo_ridge, random_feature_control, single_direction_predictor
from emprobe.analysis.results import AnalysisResult, new_figure
from emprobe.errors import ConfigError, DataError


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    raise DataError(f"{path}: expected an emprobe score table directory, a .csv or a .parquet file")


def load_target(source: str | Path, baseline: str | Path | None = None, thresholds=None) -> pd.DataFrame:
    """Per-question target ``[question_id, target, target_kind]`` (higher = more misaligned).

    ``source``: an ``emprobe eval`` score table directory (margin → ``margin``; judge → ``em_rate``) or a
    judged answers table (CSV/parquet with ``question_id``, ``aligned``, ``coherent`` → EM rate under
    ``thresholds``, default aligned < 30 and coherent > 50). With ``baseline`` (same kinds), the target is
    the difference after − before.
    """
    from emprobe.evaluate import EMThresholds, em_summary
    from emprobe.evaluate.tables import ScoreTable

    path = Path(source)
    if path.is_dir():
        table = ScoreTable.load(path)
        col = "margin" if "margin" in table.summary.columns else "em_rate"
        if col not in table.summary.columns:
            raise DataError(f"{path}: score table summary has neither 'margin' nor 'em_rate'")
        df = table.summary[["question_id", col]].rename(columns={col: "target"}).assign(target_kind=col)
    elif path.is_file():
        raw = _read_table(path)
        missing = {"question_id", "aligned", "coherent"} - set(raw.columns)
        if missing:
            raise DataError(f"{path}: judged answers table lacks columns {sorted(missing)}")
        summ = em_summary(raw, thresholds or EMThresholds())
        df = summ[["question_id", "em_rate"]].rename(columns={"em_rate": "target"}).assign(target_kind="em_rate")
    else:
        raise DataError(f"{path}: no such score table or judged answers file")
    df = df.dropna(subset=["target"])
    if baseline is not None:
        base = load_target(baseline, None, thresholds).set_index("question_id")["target"]
        df = df[df.question_id.isin(base.index)].copy()
        df["target"] = df["target"].to_numpy() - base.loc[df.question_id].to_numpy()
        df["target_kind"] = df["target_kind"] + "_rise"
    if df.empty:
        raise DataError(f"{path}: no question has a target score")
    return df.reset_index(drop=True)


def _store_layers(store, layers: str | Sequence[int] | None) -> list[int] | None:
    """Resolve a layer spec against the store's own model (stores of different models differ in depth)."""
    if layers is None or str(layers) == "all":
        return None
    from emprobe.models import resolve_layers

    n_total = int(store.model.get("fingerprint", {}).get("n_layers") or max(store.layers) + 1)
    return resolve_layers(layers, n_total)


def question_features(store, layers: str | Sequence[int] | None, question_ids: Sequence[str],
                      position: str = "last_prompt") -> np.ndarray:
    """``[n_questions, n_layers * d]``: each question's activations averaged over its paraphrases."""
    x = store.get(position, _store_layers(store, layers)).numpy()
    x = x.reshape(len(x), -1)
    groups = store.groups
    missing = [q for q in question_ids if q not in set(groups)]
    if missing:
        raise DataError(f"activation store lacks questions {missing[:5]} (extract on the same question set)")
    return np.stack([x[groups == q].mean(0) for q in question_ids])


def predict_priors(stores: dict[str, object], target: pd.DataFrame, layers: str | Sequence[int] | None = None,
                   direction=None, alpha: float = 1.0,
                   n_permutations: int = 1000, pls_permutations: int = 200, n_random: int = 50,
                   seed: int = 0) -> AnalysisResult:
    """Leave-one-question-out prediction of ``target`` from each feature store and from all combined.

    Controls: random features of the same dimension (``n_random`` draws), and — with ``direction`` — the
    single-direction predictor (projection on the direction at its best layer, using the store of the
    model the direction was fitted on).
    """
    if not stores:
        raise ConfigError("priors needs at least one activation store")
    qids = [q for q in target.question_id if all(q in set(s.groups) for s in stores.values())]
    if len(qids) < 4:
        raise DataError(f"only {len(qids)} questions are in both the target and every activation store (need >= 4)")
    y = target.set_index("question_id").loc[qids, "target"].to_numpy(float)
    feats = {name: question_features(s, layers, qids) for name, s in stores.items()}
    if len(feats) > 1:
        feats["combined"] = np.concatenate(list(feats.values()), axis=1)
    rows, preds = [], {"question_id": qids, "target": y}
    for name, x in feats.items():
        ridge = loqo_ridge(x, y, alpha=alpha, n_permutations=n_permutations, seed=seed)
        pls = loqo_pls(x, y, n_permutations=pls_permutations, seed=seed)
        ctrl = random_feature_control(x.shape, y, alpha=alpha, n_seeds=n_random, seed=seed)
        for res in (ridge, pls):
            rows.append({"features": name, "dim": x.shape[1], **res.summary(), **ctrl})
        preds[f"pred_{name}"] = ridge.predictions
    if direction is not None:
        from emprobe.probes.store import model_identity

        want = model_identity(direction.source.get("model", {})) if direction.source.get("model") else None
        match = [s for s in stores.values() if want is None or model_identity(s.model) == want]
        if not match:
            raise DataError(f"no feature store comes from the direction's model {want}")
        store = match[0]
        proj = direction.project(store, layer=direction.best_layer, position="last_prompt")
        per_q = np.array([proj[store.groups == q].mean() for q in qids])
        single = single_direction_predictor(per_q, y, n_permutations, seed)
        rows.append({"features": f"direction:{direction.method}@L{direction.best_layer}", "dim": 1,
                     "method": "projection", "spearman_rho": single["spearman_rho"], "r2": float("nan"),
                     "p_permutation": single["p_permutation"], "n_permutations": n_permutations})
        preds["direction_projection"] = per_q
    table = pd.DataFrame(rows)
    return _summarise(table, pd.DataFrame(preds), target["target_kind"].iloc[0], len(qids))


def _summarise(table: pd.DataFrame, preds: pd.DataFrame, kind: str, n: int) -> AnalysisResult:
    ridge = table[table.method == "ridge"]
    best = ridge.loc[ridge.spearman_rho.idxmax()]
    findings = [
        f"Leave-one-question-out ridge on '{best.features}' activations predicts the per-question {kind} of "
        f"{n} questions with Spearman ρ = {best.spearman_rho:.3f} (R² = {best.r2:.3f}, permutation p = "
        f"{best.p_permutation:.3g} over {int(best.n_permutations)} shuffles).",
        f"Control: random features of the same dimension give ρ = {best.random_rho_mean:.3f} ± "
        f"{best.random_rho_sd:.3f} (95th percentile {best.random_rho_95:.3f}).",
    ]
    for _, r in table[table.method == "projection"].iterrows():
        findings.append(f"Single-direction predictor ({r.features}): ρ = {r.spearman_rho:.3f} "
                        f"(permutation p = {r.p_permutation:.3g}).")
    fig, (ax,) = new_figure(1)
    col = f"pred_{best.features}"
    ax.scatter(preds[col], preds.target, s=14)
    for _, r in preds.iterrows():
        ax.annotate(str(r.question_id)[:14], (r[col], r.target), fontsize=5, alpha=0.7)
    ax.set(xlabel=f"LOQO prediction ({best.features})", ylabel=kind, title=f"priors → {kind} (ρ={best.spearman_rho:.2f})")
    summary = {"findings": findings, "n_questions": n, "target_kind": kind,
               "control": "random features of equal dimension; single-direction projection",
               "uncertainty": "label-permutation p-values (ridge and PLS), random-feature distribution",
               "best": {k: (v.item() if hasattr(v, "item") else v) for k, v in best.items()}}
    return AnalysisResult("priors", table, summary, fig, {"predictions": preds})


def priors(features: Sequence[str | Path], target: str | Path, baseline: str | Path | None = None,
           layers: str | Sequence[int] | None = None, direction: str | Path | None = None, alpha: float = 1.0,
           n_permutations: int = 1000, seed: int = 0) -> AnalysisResult:
    """File-level entry point: activation store directories + a target table (see :func:`load_target`)."""
    from emprobe.probes import ActivationStore, Direction

    stores = {}
    for f in features:
        st = ActivationStore.load(f)
        stores[str(st.model.get("name") or Path(f).name)] = st
    d = Direction.load(direction) if direction else None
    return predict_priors(stores, load_target(target, baseline), layers, d, alpha=alpha,
                          n_permutations=n_permutations, seed=seed)
