"""Claim 2 on an external target: ``ep.priors(target=FILE[:score], prompts=..., model=...)`` /
``emprobe priors --target FILE[:score] --prompts PROMPTS.jsonl --model M``.

Do the prompt activations of a local model (before any fine-tuning) predict a fine-tuned model's per-question
scores measured elsewhere? Every predictor is scored on the same repeated k-fold splits (5 x 10 by default, R² per
fold, Nadeau–Bengio corrected CIs) against the controls that could explain it away:

- **category only**: the question's category mean on the training folds (from the ``question_id`` prefix or a
  ``category`` field) — topic;
- **text only**: kernel ridge on the prompt's TF-IDF vector;
- **random projections** of the same activations through the same estimator;
- **beyond category**: category means plus activations (nested), against category alone.

Estimators: ``ridge`` (kernel ridge on the z-scored activations, penalty tuned by leave-one-out; fast) or ``paper`` (PCA
on the evaluation or training prompts, squared projections on 150 PCs, StandardScaler + Lasso with alpha tuned by
inner CV; :mod:`emprobe.analysis.priors.paper`). The activations' R² gets a permutation p (the whole procedure
on shuffled targets). Verdict (:func:`~emprobe.analysis.stats.verdict.decide`, SESOI in R², default 0.05), on two
fold-paired margins: beyond category (category means + activations vs category alone) and over text (activations
vs TF-IDF ridge); supported only when both are, not supported when either is shown below the SESOI.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from emprobe.analysis.priors import baselines as bl
from emprobe.analysis.priors.cv import fold_r2, kernel_ridge_cv, nadeau_bengio, repeated_folds
from emprobe.analysis.priors.external_inputs import align_prompts, load_id_prompts, load_target, prompt_text
from emprobe.analysis.priors.external_result import ExternalPriorsResult
from emprobe.analysis.priors.paper import N_COMPONENTS, lasso_cv, pc_energies
from emprobe.analysis.stats.verdict import decide
from emprobe.errors import ConfigError, DataError

ESTIMATORS = ("ridge", "paper")


def external_priors(target: Any, *, prompts: Any, model: Any = None, features: Any = None,
                    layers: str | Sequence[int] = "-1", estimator: str = "ridge", pca_on: str = "eval",
                    train_prompts: Any = None, n_train: int = 320, n_components: int = N_COMPONENTS,
                    score: str | None = None, sesoi: float = 0.05, n_splits: int = 5, n_repeats: int = 10,
                    n_permutations: int = 200, n_random: int = 3, n_power: int = 20, batch_size: int = 8,
                    n_jobs: int = 1, store_out: Any = None, seed: int = 0) -> ExternalPriorsResult:
    """Claim 2 on ``target`` (see the module docstring).

    ``target``: a run's evaluation (anything :func:`~emprobe.evaluation.external.load_results` reads, one run;
    ``FILE:score`` picks the score); ``prompts``: one prompt per question id (chat JSONL with
    ``metadata.question_id``, or a question set); ``model`` (alias, hub id or directory) whose prompt activations
    at ``layers`` (layer ``l`` = residual stream after decoder block ``l``; default the last) and position
    ``last_prompt`` are the features, or ``features``: a ready :class:`~emprobe.probes.ActivationStore` over the
    same prompt ids; ``estimator``: ``ridge`` | ``paper``; ``pca_on``: ``eval`` | ``train`` (the paper's PCA, on
    the first ``n_train`` prompts of ``train_prompts``, a chat JSONL or ``builtin:`` set); ``sesoi``: the smallest
    R² margin over the controls that counts; ``store_out``: save the extracted activations there for reuse.
    """
    if estimator not in ESTIMATORS:  # checked before minutes of extraction
        raise ConfigError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if pca_on not in ("eval", "train"):
        raise ConfigError(f"pca_on must be 'eval' or 'train', got {pca_on!r}")
    if (model is None) == (features is None):
        raise ConfigError("give either model= (prompt activations are extracted) or features= (a ready store)")
    t0 = time.perf_counter()
    tgt = load_target(target, score)
    ps = load_id_prompts(prompts)
    items, y, given = align_prompts(tgt, ps)
    cats = bl.categories([it.uid for it in items], given, what=f"target {tgt.source}")
    x, info = _activations(model, features, items, ps.source, layers, batch_size, store_out)
    fit_on = None if estimator == "ridge" or pca_on == "eval" else \
        _train_activations(model, train_prompts, n_train, layers, batch_size)
    meta = {"target": tgt.source, "score": tgt.score, "run": tgt.run, "n_null_target": tgt.n_null,
            "prompts": str(ps.source), "pca_on": pca_on if estimator == "paper" else None, **info,
            "seconds_features": round(time.perf_counter() - t0, 1)}
    return priors_from_features(x, y, [it.uid for it in items], cats, [prompt_text(it) for it in items],
                                fit_on=fit_on, estimator=estimator, n_components=n_components, sesoi=sesoi,
                                n_splits=n_splits, n_repeats=n_repeats, n_permutations=n_permutations,
                                n_random=n_random, n_power=n_power, n_jobs=n_jobs, seed=seed, meta=meta)


def priors_from_features(x: np.ndarray, y: np.ndarray, question_ids: Sequence[str], categories: Sequence[str],
                         texts: Sequence[str], *, fit_on: np.ndarray | None = None, estimator: str = "ridge",
                         n_components: int = N_COMPONENTS, sesoi: float = 0.05, n_splits: int = 5, n_repeats: int = 10,
                         n_permutations: int = 200, n_random: int = 3, n_power: int = 20, n_jobs: int = 1,
                         seed: int = 0, meta: dict | None = None) -> ExternalPriorsResult:
    """The analysis of :func:`external_priors` on ready features ``x [n, d]`` (one row per question), target ``y``,
    categories and prompt texts; ``fit_on``: the rows the paper estimator's PCA is fit on (default ``x``);
    ``n_power``: planted-effect simulations (an effect of exactly the SESOI beyond category, through the same
    procedure): when more than 10 % of them come out "not supported", a null here cannot be called "not supported"."""
    if estimator not in ESTIMATORS:
        raise ConfigError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DataError("NaN or inf in the features or the target")
    t0 = time.perf_counter()
    folds = repeated_folds(len(y), n_splits, n_repeats, seed)
    scores, preds, null, miss = _score_all(x, x if fit_on is None else fit_on, y, list(categories), list(texts),
                                           folds, estimator, n_components, n_permutations, n_random, n_jobs, seed,
                                           sesoi, n_power)
    meta = {**(meta or {}), "estimator": estimator, "n_components": n_components if estimator == "paper" else None,
            "n_splits": n_splits, "n_repeats": n_repeats, "n_permutations": n_permutations, "n_random": n_random,
            "n_power": n_power, "seed": seed, "seconds_analysis": round(time.perf_counter() - t0, 1)}
    return ExternalPriorsResult(fold_scores=scores, question_ids=list(question_ids), categories=list(categories),
                                target=y, predictions=preds, null_r2=null, n_splits=n_splits, sesoi=sesoi,
                                power_miss=miss, meta=meta)


def _matrix(store, uids: list[str], layers) -> tuple[np.ndarray, list[int]]:
    from emprobe.probes import ActivationStore

    store = ActivationStore.load(store)
    pos = store.uids
    missing = [u for u in uids if u not in set(pos)]
    if missing:
        raise DataError(f"the activation store lacks {len(missing)} of the prompts (e.g. {missing[0]!r})")
    idx = [pos.index(u) for u in uids]
    ls = store.resolve_layers(layers)
    x = store.get("last_prompt", ls).numpy()[idx]
    return x.reshape(len(idx), -1).astype(np.float64), ls


def _activations(model, features, items, source, layers, batch_size, store_out) -> tuple[np.ndarray, dict]:
    """``([n, n_layers * d], info)``: the prompts' ``last_prompt`` activations (extracted, or from a store)."""
    uids = [it.uid for it in items]
    if features is not None:
        x, ls = _matrix(features, uids, layers)
        return x, {"features": str(features), "layers": ls}
    from emprobe.models import load_model
    from emprobe.probes import extract
    from emprobe.probes.sources import PromptSet

    lm = load_model(model)
    store = extract(lm, PromptSet(list(items), str(source), "none", {"kind": "id-prompts"}), layers=layers,
                    positions=["last_prompt"], batch_size=batch_size)
    if store_out is not None:
        store.save(store_out, overwrite=True)
    x, ls = _matrix(store, uids, layers)
    return x, {"model": lm.spec.name, "layers": ls, "d_model": lm.d_model,
               "extraction_seconds": store.manifest["extraction"]["seconds"],
               **({"store_out": str(store_out)} if store_out is not None else {})}


def _train_activations(model, train_prompts, n_train: int, layers, batch_size: int) -> np.ndarray:
    """Activations of the fine-tuning prompts (the paper's PCA basis)."""
    if train_prompts is None or model is None:
        raise ConfigError("pca_on='train' needs train_prompts= (the fine-tuning data) and model=")
    from emprobe.models import load_model
    from emprobe.probes import extract, load_prompts

    ps = load_prompts(train_prompts, limit=n_train)
    store = extract(load_model(model), ps, layers=layers, positions=["last_prompt"], batch_size=batch_size)
    return store.get("last_prompt", store.layers).numpy().reshape(store.n_prompts, -1).astype(np.float64)


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)


def _estimator(x, fit_on, cats, folds, estimator, n_components, n_random, n_jobs, seed):
    """``(features, fit, random-projection features)``: ``fit(features, y [n, m], nested)`` gives out-of-fold
    predictions ``[n_repeats, n, m]`` (``nested``: category means of each training fold + the estimator)."""
    onehot = bl.one_hot(np.asarray(cats))

    def category_offset(col):
        return bl.category_predictions(np.asarray(cats), col, folds)

    if estimator == "paper":
        feats = pc_energies(fit_on, x, n_components)

        def fit(f, cols, nested=False):
            return lasso_cv(f, cols, folds, offset=category_offset if nested else None, n_jobs=n_jobs, seed=seed)

        rand = [bl.random_projections(x, feats.shape[1], seed + i, center=fit_on.mean(0)) for i in range(n_random)]
        return feats, fit, rand
    feats = _zscore(x)

    def fit(f, cols, nested=False):
        return kernel_ridge_cv(None, cols, folds, covariates=onehot if nested else None, features=f)

    return feats, fit, [bl.random_projections(feats, N_COMPONENTS, seed + i, squared=False) for i in range(n_random)]


def _score_all(x, fit_on, y, cats, texts, folds, estimator, n_components, n_permutations, n_random, n_jobs, seed,
               sesoi, n_power):
    """Per-fold R² of every predictor, mean out-of-fold predictions, the activations' permutation null, and the
    share of planted SESOI effects the procedure would call "not supported"."""
    rng = np.random.default_rng(seed)
    feats, fit, rand = _estimator(x, fit_on, cats, folds, estimator, n_components, n_random, n_jobs, seed)
    c = np.asarray(cats)
    preds = {"activations": fit(feats, y[:, None])[..., 0], "category": bl.category_predictions(c, y, folds),
             "text": kernel_ridge_cv(bl.text_kernel(texts), y, folds)[..., 0],
             "category+activations": fit(feats, y[:, None], nested=True)[..., 0]}
    for i, f in enumerate(rand):
        preds[f"random projections {i}"] = fit(f, y[:, None])[..., 0]
    scores = {k: fold_r2(y, v, folds) for k, v in preds.items()}
    null = np.zeros(0)
    if n_permutations:  # statistic: mean R² over the first repeat's folds, observed and shuffled alike
        _, fit1, _ = _estimator(x, fit_on, cats, folds[:1], estimator, n_components, 0, n_jobs, seed)
        ys = np.stack([y[rng.permutation(len(y))] for _ in range(n_permutations)], 1)
        null = fold_r2(ys, fit1(feats, ys), folds[:1]).mean(0)
    miss = _power_miss(fit, feats, y, c, folds, sesoi, n_power, rng) if n_power else float("nan")
    return scores, {k: v.mean(0) for k, v in preds.items()}, null, miss


def _within(v: np.ndarray, cats: np.ndarray) -> np.ndarray:
    """``v`` minus its category means (rows)."""
    out = np.array(v, float, copy=True)
    for c in np.unique(cats):
        out[cats == c] -= out[cats == c].mean(0)
    return out


def planted_targets(feats: np.ndarray, y: np.ndarray, cats: np.ndarray, sesoi: float, n: int, rng) -> np.ndarray:
    """``[n_rows, n]`` targets with a planted effect of exactly ``sesoi`` R² beyond category: y's category means, plus
    a signal along a random direction of the (category-centred, standardised) features, plus y's own within-category
    residuals shuffled within each category (any real signal destroyed)."""
    m = y - _within(y, cats)
    e = y - m
    xr = _within(feats, cats)
    xr = xr / np.where(xr.std(0) > 0, xr.std(0), 1.0)
    a = np.sqrt(sesoi * y.var() / (1 - sesoi))
    cols = []
    for _ in range(n):
        sig = xr @ rng.standard_normal(xr.shape[1])
        sig = (sig - sig.mean()) / (sig.std() or 1.0)
        shuffled = e.copy()
        for c in np.unique(cats):
            idx = np.flatnonzero(cats == c)
            shuffled[idx] = e[rng.permutation(idx)]
        cols.append(m + a * sig + shuffled)
    return np.stack(cols, 1)


def _power_miss(fit, feats, y, cats, folds, sesoi, n_power, rng) -> float:
    """Share of planted effects at the SESOI (beyond category) that this procedure calls "not supported"."""
    ys = planted_targets(feats, y, cats, sesoi, n_power, rng)
    gain = fold_r2(ys, fit(feats, ys, nested=True), folds) - fold_r2(ys, bl.category_predictions(cats, ys, folds),
                                                                      folds)
    k = int(np.atleast_2d(folds)[0].max()) + 1
    calls = [decide(nadeau_bengio(gain[:, j], k), sesoi).verdict for j in range(ys.shape[1])]
    return float(np.mean([v == "not supported" for v in calls]))
