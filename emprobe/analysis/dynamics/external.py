"""Claim 1 on runs evaluated elsewhere: ``ep.dynamics(results=...)`` / ``emprobe dynamics --results GLOB``.

Claim tested: *no learning schedule reaches a better-aligned minimum at similar or lower in-domain loss*.
Every run is a point (in-domain eval loss, per-question off-domain scores). A schedule's points form a path:
its runs' final points at their learning rates sorted by loss, or each run's checkpoints in step order where
the results give trajectories. Schedules trained on the same data by the same model are compared at matched
eval loss (the lower end, quartiles and upper end of the loss range every schedule reaches; quartiles only for
trajectories, whose top is the shared base model), their scores interpolated along each path.

Uncertainty: one joint bootstrap resamples the questions (paired across runs; a question's answer-format variants
``_json`` / ``_template`` together, as one unit), the held-out sequences behind each
eval loss (paired across runs when they share the held-out set), and adds run-to-run noise: a variance component
estimated from replicate seeds, else from near-identical schedules (same schedule family and learning rate,
warm-up differing by at most ``near_identical`` of the training steps); when neither exists, the findings say the
CIs cover question and sequence sampling only. The loss levels are the shared range's quantiles in every replicate.

Verdict (:func:`~emprobe.analysis.stats.verdict.decide_equivalence`, as the study's claim 1): the gap (better −
worse, in the score's units) of every schedule pair at every level; *not supported* when a gap of at least the
SESOI (default 5 points on 0-100 scores) has a Bonferroni-corrected CI excluding 0; *supported* when every gap's
90 % TOST interval lies inside ±SESOI; *inconclusive* otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emprobe.analysis.dynamics.external_paths import closest_pairs, matched_gaps
from emprobe.analysis.dynamics.external_result import ExternalDynamicsResult
from emprobe.errors import ConfigError, DataError
from emprobe.evaluation.external.types import question_units

DEFAULT_SESOI = {"aligned": 5.0, "harmless": 5.0, "coherent": 5.0, "em_rate": 5.0, "margin": 0.02}
FINAL_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
TRAJECTORY_LEVELS = (0.0, 0.25, 0.5, 0.75)
REPLICATE_KEYS = ("model", "dataset", "schedule", "lr", "warmup", "base_lr", "max_lr")


@dataclass
class Group:
    """The runs of one (model, dataset): their oriented scores, losses, units and paths."""

    data: str
    runs: list  # ExternalRun
    questions: list[str]
    align: np.ndarray  # [R, Q] oriented: higher = better aligned
    clusters: np.ndarray  # [Q] the independent unit of each question (its Betley format variants share one)
    loss: np.ndarray  # [R]
    units: list[str]
    paths: dict[str, list[list[list[int]]]]  # unit -> paths -> points -> run indices (averaged)
    trajectories: bool

    @property
    def n_units(self) -> int:
        """Independent question units the bootstrap resamples."""
        return int(self.clusters.max()) + 1


def external_dynamics(results: Any, *, score: str = "aligned", sesoi: float | None = None, unit: str = "schedule",
                      loss_levels: Sequence[float] | None = None, near_identical: float = 0.1, n_boot: int = 2000,
                      alpha: float = 0.05, n_pairs: int = 5, seed: int = 0) -> ExternalDynamicsResult:
    """Claim 1 on external results (see the module docstring).

    ``results``: anything :func:`~emprobe.evaluation.external.load_results` reads (files, a folder, a glob, a
    ``runs.yaml``) or loaded :class:`~emprobe.evaluation.external.ExternalResults`; ``score``: ``aligned`` |
    ``harmless`` | ``coherent`` | ``em_rate`` | ``margin``; ``sesoi``: the smallest gap of interest in the score's
    units (default 5 points on 0-100 scores, 0.02 nats/token for margins), declared before looking; ``unit``: the
    metadata field compared (``schedule``); ``loss_levels``: fixed eval-loss levels instead of the shared range's
    quantiles; ``n_pairs``: how many "better aligned at similar or lower loss" run pairs to list.
    """
    from emprobe.evaluation.external import HIGHER_IS_BETTER, load_results

    if score not in DEFAULT_SESOI:
        raise ConfigError(f"score must be one of {', '.join(DEFAULT_SESOI)}, got {score!r}")
    sesoi = DEFAULT_SESOI[score] if sesoi is None else float(sesoi)
    if not sesoi > 0:
        raise ConfigError(f"sesoi must be > 0, got {sesoi}")
    res = load_results(results)
    usable, excluded = _usable(res, score)
    sign = 1.0 if HIGHER_IS_BETTER[score] else -1.0
    groups = [_group(data, runs, score, sign, unit) for data, runs in _by_data(usable).items()]
    rng = np.random.default_rng(seed)
    noise = [_noise(g, near_identical) for g in groups]
    boots = [_bootstrap(g, nz, n_boot, rng) for g, nz in zip(groups, noise)]
    fixed = None if loss_levels is None else [float(v) for v in loss_levels]
    matched, gaps, n_cmp = matched_gaps(groups, boots, fixed, FINAL_LEVELS, TRAJECTORY_LEVELS, alpha, sign)
    pairs = closest_pairs(groups, boots, n_pairs, alpha, sign)
    return ExternalDynamicsResult(
        points=pd.concat([_points(g, b, sign, alpha) for g, b in zip(groups, boots)], ignore_index=True),
        matched=matched, gaps=gaps, pairs=pairs, noise=pd.concat([nz[2] for nz in noise], ignore_index=True),
        score=score, sesoi=sesoi, higher_is_better=sign > 0, n_comparisons=n_cmp, alpha=alpha,
        noise_source="; ".join(sorted({nz[3] for nz in noise})), sigma_run=_pooled([nz[0] for nz in noise]),
        sigma_loss=_pooled([nz[1] for nz in noise]), excluded=excluded,
        meta={"results": [r.source for r in usable], "unit": unit, "n_boot": n_boot, "seed": seed,
              "near_identical": near_identical, "counts": res.counts(),
              "mode": "trajectories" if any(g.trajectories for g in groups) else "final points",
              "n_questions": {g.data: len(g.questions) for g in groups},
              "n_question_units": {g.data: g.n_units for g in groups}})


def _pooled(values: list[float]) -> float:
    v = [x for x in values if np.isfinite(x)]
    return float(np.sqrt(np.mean(np.square(v)))) if v else float("nan")


def _usable(res, score: str) -> tuple[list, dict[str, str]]:
    usable, excluded = [], {}
    for r in res:
        if not r.has(score):
            excluded[r.name] = f"no {score} score"
        elif r.eval_loss is None or not np.isfinite(r.eval_loss):
            excluded[r.name] = "no in-domain eval loss (give eval_loss in runs.yaml)"
        else:
            usable.append(r)
    if not usable:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(excluded.items())[:3])
        raise DataError(f"no run has both a {score} score and an eval loss ({reasons})")
    return usable, excluded


def _by_data(runs: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in runs:
        key = f"{r.meta.get('model') or '?'}/{r.meta.get('dataset') or '?'}"
        out.setdefault(key, []).append(r)
    return out


def _group(data: str, runs: list, score: str, sign: float, unit: str) -> Group:
    shared = set.intersection(*[set(r.scores.question_id[r.scores[score].notna()]) for r in runs])
    questions = [q for q in runs[0].scores.question_id if q in shared]
    if len(questions) < 2:
        raise DataError(f"{data}: the runs share {len(questions)} question(s) with a {score} score (need >= 2)")
    align = np.stack([sign * r.scores.set_index("question_id")[score].loc[questions].to_numpy(float) for r in runs])
    units = [str(r.meta.get(unit) if r.meta.get(unit) is not None else r.run) for r in runs]
    steps_per_run = pd.Series([r.run for r in runs]).value_counts()
    trajectories = bool((steps_per_run > 1).any())
    loss = np.array([r.eval_loss for r in runs], float)
    clusters = question_units(questions)
    return Group(data, runs, questions, align, clusters, loss, units, _paths(runs, units, loss, trajectories),
                 trajectories)


def _paths(runs: list, units: list[str], loss: np.ndarray, trajectories: bool) -> dict:
    """Per unit: its paths (trajectories: one per run, in step order; final points: one, replicate seeds of a
    learning rate averaged, sorted by loss)."""
    out: dict[str, list] = {}
    for u in dict.fromkeys(units):
        idx = [i for i, x in enumerate(units) if x == u]
        if trajectories:
            by_run: dict[str, list[int]] = {}
            for i in idx:
                by_run.setdefault(runs[i].run, []).append(i)
            out[u] = [[[i] for i in sorted(v, key=lambda i: runs[i].step or 0)] for v in by_run.values()]
        else:
            by_lr: dict[Any, list[int]] = {}
            for i in idx:
                by_lr.setdefault(runs[i].meta.get("lr", runs[i].run), []).append(i)
            points = sorted(by_lr.values(), key=lambda p: float(loss[p].mean()))
            out[u] = [points]
    return out


def _noise_pairs(g: Group, near_identical: float) -> tuple[list[tuple[int, int]], str]:
    """Replicate pairs (same configuration, different seed) or else near-identical schedule pairs."""
    key = [tuple(r.meta.get(k) for k in REPLICATE_KEYS) + (r.step,) for r in g.runs]
    reps = [(i, j) for i in range(len(key)) for j in range(i + 1, len(key)) if key[i] == key[j]]
    if reps:
        return reps, "replicate seeds"
    near = []
    for i, a in enumerate(g.runs):
        for j in range(i + 1, len(g.runs)):
            b, m = g.runs[j], a.meta
            same = a.step == b.step and all(m.get(k) is not None and m.get(k) == b.meta.get(k)
                                            for k in ("family", "lr"))
            steps = m.get("max_steps") or b.meta.get("max_steps")
            wa, wb = m.get("warmup"), b.meta.get("warmup")
            if same and steps and wa is not None and wb is not None and abs(wa - wb) <= near_identical * steps:
                near.append((i, j))
    return near, ("near-identical schedules" if near else "none")


def _noise(g: Group, near_identical: float) -> tuple[float, float, pd.DataFrame, str]:
    """``(sd of a run's mean score, sd of its eval loss, pairs table, source)`` by the method of moments: a pair's
    squared mean difference minus its question-sampling (sequence-sampling) variance, halved."""
    pairs, source = _noise_pairs(g, near_identical)
    rows = []
    for i, j in pairs:
        d = g.align[i] - g.align[j]
        si, sj = g.runs[i].seq_losses, g.runs[j].seq_losses
        v_loss = _loss_var(si, sj)
        rows.append({"data": g.data, "run_a": g.runs[i].name, "run_b": g.runs[j].name, "source": source,
                     "score_diff": float(d.mean()), "score_var_questions": float(d.var(ddof=1) / len(d)),
                     "loss_diff": float(g.loss[i] - g.loss[j]), "loss_var_sequences": v_loss})
    table = pd.DataFrame(rows, columns=["data", "run_a", "run_b", "source", "score_diff", "score_var_questions",
                                        "loss_diff", "loss_var_sequences"])
    if table.empty:
        return float("nan"), float("nan"), table, source
    s2 = max(0.0, float((table.score_diff ** 2 - table.score_var_questions).mean()) / 2)
    l2 = max(0.0, float((table.loss_diff ** 2 - table.loss_var_sequences.fillna(0)).mean()) / 2)
    return float(np.sqrt(s2)), float(np.sqrt(l2)), table, source


def _loss_var(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return float("nan")
    if len(a) == len(b):
        return float(np.var(a - b, ddof=1) / len(a))
    return float(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))


def _bootstrap(g: Group, noise: tuple, n_boot: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``(alignment [B+1, R], loss [B+1, R])``: row 0 observed, then ``n_boot`` joint replicates."""
    k = g.n_units
    draws = rng.multinomial(k, np.full(k, 1 / k), size=n_boot)  # clusters of questions, resampled
    size = np.bincount(g.clusters, minlength=k)
    w = draws[:, g.clusters] / (k * size[g.clusters])
    align = w @ g.align.T
    loss = np.tile(g.loss, (n_boot, 1))
    seqs = [r.seq_losses for r in g.runs]
    lengths = {len(s) for s in seqs if s is not None}
    if len(lengths) == 1 and all(s is not None for s in seqs):  # one held-out set: resample it jointly
        n = lengths.pop()
        c = rng.multinomial(n, np.full(n, 1 / n), size=n_boot) / n
        loss = c @ np.stack(seqs).T
    else:
        for i, s in enumerate(seqs):
            if s is not None and len(s) > 1:
                loss[:, i] = (rng.multinomial(len(s), np.full(len(s), 1 / len(s)), size=n_boot) / len(s)) @ s
    sd_s, sd_l = noise[0], noise[1]
    if np.isfinite(sd_s) and sd_s > 0:
        align = align + rng.normal(0.0, sd_s, align.shape)
    if np.isfinite(sd_l) and sd_l > 0:
        loss = loss + rng.normal(0.0, sd_l, loss.shape)
    return np.vstack([g.align.mean(1), align]), np.vstack([g.loss, loss])


def _points(g: Group, boot: tuple[np.ndarray, np.ndarray], sign: float, alpha: float) -> pd.DataFrame:
    a, lo = boot
    qa = np.quantile(sign * a[1:], [alpha / 2, 1 - alpha / 2], axis=0)
    ql = np.quantile(lo[1:], [alpha / 2, 1 - alpha / 2], axis=0)
    return pd.DataFrame({
        "data": g.data, "name": [r.name for r in g.runs], "run": [r.run for r in g.runs],
        "unit": g.units, "lr": [r.meta.get("lr") for r in g.runs], "seed": [r.meta.get("seed") for r in g.runs],
        "step": [r.step for r in g.runs], "eval_loss": g.loss, "loss_ci_low": ql[0], "loss_ci_high": ql[1],
        "score": sign * a[0], "score_ci_low": np.minimum(qa[0], qa[1]), "score_ci_high": np.maximum(qa[0], qa[1])})
