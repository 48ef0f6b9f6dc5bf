"""Causal checks of a fine-tune's change and of a misalignment direction (patching, steering, ablation).

Metric everywhere: the judge-free margin of :mod:`emprobe.evaluate.margin` — mean per-token log-prob of
a question's misaligned reference answers minus its aligned ones (higher = leans misaligned), averaged
over questions. Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``).

* :func:`patch` — cross-model activation patching: run the fine-tuned model with its residual stream at
  layer ``l`` (last prompt token, or every prompt position) replaced by the base model's activation for
  the same input, and the reverse; report the fraction of the base-to-fine-tuned margin gap restored.
  Control: the same patch with another item's base activation (rows shuffled within a batch).
* :func:`steer` — add ``α · direction`` at a layer, all positions, and sweep α; control: random
  directions of the same norm (≥ 5 seeds).
* :func:`ablate` — project the direction out at every layer of the fine-tuned model; report how much of
  the off-domain margin rise it removes and what it costs in-domain; control: random directions.

Samples (temperature 0.7, top-p 0.9 by default) from steered / ablated models are kept beside the scores.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from emprobe.analysis.results import AnalysisResult, new_figure
from emprobe.analysis.stats import bootstrap_ci, spearman
from emprobe.analysis.subspace import control_rng
from emprobe.errors import ConfigError
from emprobe.probes.interventions import add_vector, intervene, project_out, replace_where, scored_forward

SPANS = ("last_prompt", "prompt")
PATCH_DIRECTIONS = {"base→tuned": ("base", "tuned"), "tuned→base": ("tuned", "base")}


def _questions(source, n_questions: int | None):
    from emprobe.data import QuestionSet, load_questions

    qs = load_questions(source).with_references()
    if n_questions:
        qs = QuestionSet(qs.questions[:n_questions], qs.source, qs.name)
    return qs


def mean_margin(lm, questions, edits=None, batch_size: int = 8) -> tuple[float, pd.Series]:
    """Mean margin over questions (and the per-question margins) with ``edits`` active."""
    from emprobe.evaluate import margin_scores

    with intervene(lm.model, edits or {}):
        summ = margin_scores(lm, questions, batch_size=batch_size).summary
    per_q = summ.set_index("question_id").margin
    return float(per_q.mean()), per_q


def _margins(rows: pd.DataFrame, lp: np.ndarray) -> pd.Series:
    """Per-question margin from per-reference mean log-probs."""
    df = rows.assign(lp=lp)
    g = df.groupby(["question_id", "kind"]).lp.mean().unstack("kind")
    return g["misaligned"] - g["aligned"]


def _frac(patched: pd.Series, start: pd.Series, target: pd.Series) -> float:
    gap = float((target - start).mean())
    return float((patched - start).mean()) / gap if abs(gap) > 1e-12 else float("nan")


def patch_table(base_lm, tuned_lm, questions, layers: Sequence[int], spans: Sequence[str] = SPANS,
                batch_size: int = 8, seed: int = 0, directions: Sequence[str] = tuple(PATCH_DIRECTIONS)
                ) -> tuple[pd.DataFrame, dict]:
    """Patching sweep: one row per (direction, layer, span) with margin, fraction restored and control.

    ``directions``: ``base→tuned`` (base activations into the fine-tuned model) and/or ``tuned→base``.
    """
    unknown = set(directions) - set(PATCH_DIRECTIONS)
    if unknown or not directions:
        raise ConfigError(f"patch directions must be among {list(PATCH_DIRECTIONS)}, got {list(directions)}")
    from emprobe.evaluate.margin import reference_items
    from emprobe.probes.tokens import Encoded, make_batches

    rows, items = reference_items(tuned_lm, questions)
    base_items = reference_items(base_lm, questions)[1]
    if [list(i) for i, _ in items] != [list(i) for i, _ in base_items]:
        raise ConfigError("base and fine-tuned models tokenize the references differently (different tokenizers?)")
    pad = tuned_lm.tokenizer.pad_token_id if tuned_lm.tokenizer.pad_token_id is not None else 0
    batches = make_batches([Encoded(tuple(i), n) for i, n in items], batch_size, pad, "right")
    n = len(items)
    clean = {"base": np.zeros(n), "tuned": np.zeros(n)}
    patched = {(d, l_, s, c): np.zeros(n) for d in directions for l_ in layers for s in spans for c in (False, True)}
    rng = control_rng(seed)
    models = {"base": base_lm.model, "tuned": tuned_lm.model}
    for b in batches:
        idx = np.array(b.index)
        acts = {}
        for name, model in models.items():
            lp, acts[name] = scored_forward(model, b, capture=layers)
            clean[name][idx] = lp.numpy()
        perm = torch.as_tensor(rng.permutation(b.size)) if b.size > 1 else torch.zeros(1, dtype=torch.long)
        for direction in directions:
            src, dst = PATCH_DIRECTIONS[direction]
            for layer in layers:
                for span in spans:
                    mask = b.mask(span)
                    for control in (False, True):
                        values = acts[src][layer]
                        if control:  # another item's activation (the control): mismatched prompt, same model
                            values, mask = _shuffled(values, b, span, perm)
                        lp, _ = scored_forward(models[dst], b, {layer: replace_where(values, mask)})
                        patched[(direction, layer, span, control)][idx] = lp.numpy()
    m_base, m_tuned = _margins(rows, clean["base"]), _margins(rows, clean["tuned"])
    out = []
    for (direction, layer, span, control), lp in patched.items():
        m = _margins(rows, lp)
        start, target = (m_tuned, m_base) if direction == "base→tuned" else (m_base, m_tuned)
        boots = _boot_frac(m, start, target, seed)
        out.append({"direction": direction, "layer": layer, "span": span, "control": control,
                    "margin": float(m.mean()), "fraction_restored": _frac(m, start, target),
                    "ci_low": boots[0], "ci_high": boots[1]})
    gap = (m_tuned - m_base).to_numpy()
    ref = {"margin_base": float(m_base.mean()), "margin_tuned": float(m_tuned.mean()), "n_questions": len(m_base),
           "n_references": n, "gap_se": float(gap.std(ddof=1) / np.sqrt(len(gap))) if len(gap) > 1 else float("nan")}
    return pd.DataFrame(out), ref


def _shuffled(values: torch.Tensor, b, span: str, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values of another row, aligned on the span's last column (so the shapes of both spans still fit)."""
    lo, hi = b.span(span)
    out = values.clone()
    mask = torch.zeros_like(b.mask(span))
    for r in range(b.size):
        src = int(perm[r])
        width = min(int(hi[r] - lo[r]), int(hi[src] - lo[src]))
        out[r, int(hi[r]) - width:int(hi[r])] = values[src, int(hi[src]) - width:int(hi[src])]
        mask[r, int(hi[r]) - width:int(hi[r])] = True
    return out, mask


def _boot_frac(m: pd.Series, start: pd.Series, target: pd.Series, seed: int, n_boot: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    q = np.arange(len(m))
    mv, sv, tv = m.to_numpy(), start.loc[m.index].to_numpy(), target.loc[m.index].to_numpy()
    vals = []
    for _ in range(n_boot):
        i = rng.choice(q, len(q))
        gap = (tv[i] - sv[i]).mean()
        if abs(gap) > 1e-12:
            vals.append((mv[i] - sv[i]).mean() / gap)
    return (float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))) if vals else (float("nan"),) * 2


def patch(model: str, adapter: str, questions: str = "builtin:em-core", layers: str | Sequence[int] = "0:30:3",
          spans: Sequence[str] = SPANS, n_questions: int | None = 12, batch_size: int = 8, seed: int = 0
          ) -> AnalysisResult:
    """Cross-model activation patching between ``model`` and ``model`` + ``adapter`` (see module docstring)."""
    from emprobe.models import load_model, resolve_layers

    base, tuned = load_model(model), load_model(model, adapter=adapter)
    return patch_models(base, tuned, _questions(questions, n_questions), resolve_layers(layers, base.n_layers), spans,
                        batch_size, seed, {"model": model, "adapter": str(adapter)})


def patch_models(base, tuned, qs, layer_ids: Sequence[int], spans: Sequence[str] = SPANS, batch_size: int = 8,
                 seed: int = 0, inputs: dict | None = None, directions: Sequence[str] = tuple(PATCH_DIRECTIONS)
                 ) -> AnalysisResult:
    """:func:`patch` on loaded models (``tuned`` = base + adapter) and a question set with references."""
    table, ref = patch_table(base, tuned, qs, layer_ids, spans, batch_size, seed, directions)
    real = table[~table.control]
    gap = ref["margin_tuned"] - ref["margin_base"]
    findings = [f"The fine-tune moves the mean margin from {ref['margin_base']:+.3f} (base) to "
                f"{ref['margin_tuned']:+.3f} over {ref['n_questions']} questions (gap {gap:+.3f} ± {ref['gap_se']:.3f} SE)."]
    if not gap > 2 * ref["gap_se"]:
        findings.append(f"The gap ({gap:+.3f}) is not more than 2 SE ({2 * ref['gap_se']:.3f}) above zero on these "
                        "questions, so the fractions below are unstable; use more questions or a longer fine-tune.")
    what = {"base→tuned": ("Patching base activations into the fine-tuned model restores", "base"),
            "tuned→base": ("Patching fine-tuned activations into the base model carries", "fine-tuned")}
    for direction in directions:
        best = real[real.direction == direction].sort_values("fraction_restored").iloc[-1]
        ctrl = table[table.control & (table.direction == direction) & (table.layer == best.layer)
                     & (table.span == best.span)].iloc[0]
        findings.append(
            f"{what[direction][0]} the largest share of the gap at layer {int(best.layer)} ({best.span}): "
            f"{best.fraction_restored:.2f} of it (95% bootstrap CI [{best.ci_low:.2f}, {best.ci_high:.2f}]); the control "
            f"patch (another item's {what[direction][1]} activation) gives {ctrl.fraction_restored:.2f}.")
    fig, axes = new_figure(len(directions), 4.5, 3.8)
    for ax, direction in zip(axes, directions):
        sub = real[real.direction == direction].pivot(index="span", columns="layer", values="fraction_restored")
        im = ax.imshow(sub.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_xticks(range(len(sub.columns)), [str(c) for c in sub.columns], fontsize=7)
        ax.set_yticks(range(len(sub.index)), list(sub.index), fontsize=7)
        ax.set(xlabel="layer (output of block l)", title=f"{direction}: fraction of gap")
        fig.colorbar(im, ax=ax, fraction=0.046)
    summary = {"findings": findings, **ref, "layers": layer_ids, "spans": list(spans),
               "control": "patch with another item's activation from the same source model (shuffled rows)",
               "uncertainty": "bootstrap 95% CI over questions", **(inputs or {})}
    return AnalysisResult("patch", table, summary, fig)


def _random_like(v: torch.Tensor, n: int, seed: int) -> list[torch.Tensor]:
    rng = control_rng(seed)
    out = []
    for _ in range(n):
        r = torch.tensor(rng.standard_normal(v.shape[-1]), dtype=torch.float32)
        out.append(r / r.norm() * v.norm())
    return out


def sample_under(lm, questions, edits, n: int = 3, max_new_tokens: int = 48, temperature: float = 0.7,
                 top_p: float = 0.9, seed: int = 0) -> list[dict]:
    """Answers to the first ``n`` questions with ``edits`` active."""
    from emprobe.models.generation import generate_chat

    qs = list(questions)[:n]
    with intervene(lm.model, edits):
        answers = generate_chat(lm, [q.messages(0) for q in qs], max_new_tokens, temperature, top_p, seed)
    return [{"question_id": q.id, "question": q.paraphrases[0], "answer": a} for q, a in zip(qs, answers)]


def steer_table(lm, direction, layer: int, alphas: Sequence[float], questions, unit: bool = True, n_random: int = 5,
                batch_size: int = 8, seed: int = 0, random_alphas: Sequence[float] | None = None) -> pd.DataFrame:
    """Mean margin for each α with the direction (``kind="direction"``) and ``n_random`` random ones.

    Random directions are scored at ``random_alphas`` (default: every α); α = 0 is the unedited model,
    scored once and shared by every row.
    """
    v = direction.vector(layer, unit=unit)
    vecs = [("direction", 0, v, alphas)]
    vecs += [("random", i, r, alphas if random_alphas is None else random_alphas)
             for i, r in enumerate(_random_like(v, n_random, seed))]
    clean = None
    rows = []
    for kind, i, vec, alist in vecs:
        for a in alist:
            if a == 0:
                clean = mean_margin(lm, questions, None, batch_size)[0] if clean is None else clean
                m = clean
            else:
                m, _ = mean_margin(lm, questions, {layer: add_vector(vec, a)}, batch_size)
            rows.append({"kind": kind, "seed": i, "alpha": float(a), "layer": layer, "margin": m,
                         "vector_norm": float(vec.norm())})
    return pd.DataFrame(rows)


def steer(model: str, direction: str, layer: int | None = None, alphas: Sequence[float] = (-8, -4, 0, 4, 8),
          questions: str = "builtin:em-core", adapter: str | None = None, unit: bool = True, n_random: int = 5,
          n_questions: int | None = 12, n_samples: int = 3, batch_size: int = 8, seed: int = 0) -> AnalysisResult:
    """Sweep α for ``h ← h + α·v`` at ``layer`` (all positions) against random directions of the same norm."""
    from emprobe.models import load_model
    from emprobe.probes import Direction

    return steer_model(load_model(model, adapter=adapter), Direction.load(direction), _questions(questions, n_questions),
                       layer, alphas, unit, n_random, n_samples, batch_size, seed)


def steer_model(lm, d, qs, layer: int | None = None, alphas: Sequence[float] = (-8, -4, 0, 4, 8), unit: bool = True,
                n_random: int = 5, n_samples: int = 3, batch_size: int = 8, seed: int = 0,
                random_alphas: Sequence[float] | None = None, max_new_tokens: int = 48) -> AnalysisResult:
    """:func:`steer` on a loaded model, a :class:`~emprobe.probes.Direction` and a question set."""
    if n_random < 5:
        raise ConfigError("steering needs at least 5 random directions for its control")
    layer = d.best_layer if layer is None else layer
    table = steer_table(lm, d, layer, sorted(alphas), qs, unit, n_random, batch_size, seed, random_alphas)
    real = table[table.kind == "direction"].sort_values("alpha")
    rand = table[table.kind == "random"]
    band = rand.groupby("alpha").margin.agg(["min", "max", "mean", "std"])
    rho = spearman(real.alpha, real.margin)
    top = real.iloc[-1]
    above = top.margin > band.loc[top.alpha, "max"]
    mono = bool(np.all(np.diff(real.margin.to_numpy()) > 0))
    findings = [
        f"Steering along the {d.method} direction at layer {layer} ({'unit' if unit else 'raw'} vector, norm "
        f"{float(top.vector_norm):.3g}) moves the mean margin from {real.margin.iloc[0]:+.3f} (α={real.alpha.iloc[0]:g}) "
        f"to {top.margin:+.3f} (α={top.alpha:g}); Spearman ρ(α, margin) = {rho:.2f}, "
        f"{'monotonic' if mono else 'not monotonic'} in α.",
        f"At α={top.alpha:g}, {n_random} random directions of the same norm give {band.loc[top.alpha, 'mean']:+.3f} "
        f"(range [{band.loc[top.alpha, 'min']:+.3f}, {band.loc[top.alpha, 'max']:+.3f}]): the direction's effect is "
        f"{'beyond' if above else 'within'} the random band.",
    ]
    samples = pd.DataFrame([{**s, "alpha": a} for a in (0.0, float(top.alpha))
                            for s in sample_under(lm, qs, {layer: add_vector(d.vector(layer, unit), a)} if a else {},
                                                  n_samples, max_new_tokens, seed=seed)]) if n_samples else pd.DataFrame()
    fig, (ax,) = new_figure(1)
    ax.fill_between(band.index, band["min"], band["max"], color="grey", alpha=0.3, label="random directions")
    ax.errorbar(band.index, band["mean"], yerr=[band["mean"] - band["min"], band["max"] - band["mean"]], fmt="none",
                color="grey")
    ax.plot(real.alpha, real.margin, marker="o", label=f"{d.method} L{layer}")
    ax.set(xlabel="α", ylabel="mean margin (misaligned − aligned)", title="steering")
    ax.legend(fontsize=7)
    summary = {"findings": findings, "spearman_alpha_margin": rho, "monotonic": mono, "beyond_random_band": bool(above),
               "layer": layer, "unit": unit, "alphas": [float(a) for a in sorted(alphas)],
               "margin_low_alpha": float(real.margin.iloc[0]), "margin_high_alpha": float(top.margin),
               "random_mean_high_alpha": float(band.loc[top.alpha, "mean"]),
               "random_min_high_alpha": float(band.loc[top.alpha, "min"]),
               "random_max_high_alpha": float(band.loc[top.alpha, "max"]),
               "control": f"{n_random} random directions of the same norm",
               "uncertainty": "random-direction band (min-max) at each α"}
    tables = {"samples": samples} if len(samples) else {}
    return AnalysisResult("steer", table, summary, fig, tables)


def ablation_edits(direction, n_layers: int, vector: torch.Tensor | None = None) -> dict:
    """``{layer: project_out(r)}`` at every layer: the direction's own vector where fitted, else its best layer's."""
    edits = {}
    for layer in range(n_layers):
        v = vector if vector is not None else direction.vector(layer if layer in direction.layers else None)
        edits[layer] = project_out(v)
    return edits


def ablate(model: str, adapter: str, direction: str, questions: str = "builtin:em-core",
           heldout: str = "builtin:risky-finance-heldout", n_random: int = 5, n_questions: int | None = 12,
           n_samples: int = 3, batch_size: int = 8, seed: int = 0) -> AnalysisResult:
    """Directional ablation at every layer of the fine-tuned model, with the in-domain cost and random controls."""
    from emprobe.models import load_model
    from emprobe.probes import Direction

    d = Direction.load(direction)
    return ablate_models(load_model(model), load_model(model, adapter=adapter), d, _questions(questions, n_questions),
                         _questions(heldout, n_questions), n_random, n_samples, batch_size, seed,
                         {"direction": str(direction), "adapter": str(adapter)})


def ablate_models(base, tuned, d, off, ind, n_random: int = 5, n_samples: int = 3, batch_size: int = 8, seed: int = 0,
                  inputs: dict | None = None, max_new_tokens: int = 48, random_in_domain: bool = True
                  ) -> AnalysisResult:
    """:func:`ablate` on loaded models, a :class:`~emprobe.probes.Direction`, off- and in-domain question sets.

    ``random_in_domain=False`` scores the random-direction controls off-domain only (saves their in-domain cost).
    """
    if n_random < 5:
        raise ConfigError("ablation needs at least 5 random directions for its control")
    m_base, _ = mean_margin(base, off, None, batch_size)
    rows = []
    variants = [("none", 0, None), ("direction", 0, ablation_edits(d, tuned.n_layers))]
    variants += [("random", i, ablation_edits(d, tuned.n_layers, r))
                 for i, r in enumerate(_random_like(d.vector(), n_random, seed))]
    for kind, i, edits in variants:
        m_off, per_q = mean_margin(tuned, off, edits, batch_size)
        m_in = mean_margin(tuned, ind, edits, batch_size)[0] if kind != "random" or random_in_domain else np.nan
        rows.append({"kind": kind, "seed": i, "off_domain_margin": m_off, "in_domain_margin": m_in})
    table = pd.DataFrame(rows)
    clean = table[table.kind == "none"].iloc[0]
    real = table[table.kind == "direction"].iloc[0]
    rand = table[table.kind == "random"]
    rise = clean.off_domain_margin - m_base
    table["fraction_removed"] = (clean.off_domain_margin - table.off_domain_margin) / rise if abs(rise) > 1e-12 else np.nan
    removed = float(table[table.kind == "direction"].fraction_removed.iloc[0])
    rand_removed = table[table.kind == "random"].fraction_removed.to_numpy()
    rand_off = rand.off_domain_margin.to_numpy()
    findings = [
        f"The fine-tune moves the off-domain mean margin by {rise:+.3f} ({m_base:+.3f} → {clean.off_domain_margin:+.3f}).",
        f"Ablating the {d.method} direction at every layer moves it to {real.off_domain_margin:+.3f} "
        f"({removed:.2f} of the rise removed) vs {rand_off.mean():+.3f} ± {rand_off.std(ddof=1):.3f} "
        f"({float(np.mean(rand_removed)):.2f} of the rise) for {n_random} random directions."
        + ("" if rise > 0 else " The fine-tune did not raise the margin on these questions, so 'fraction removed' "
           "is not meaningful here; compare the margins."),
        f"In-domain held-out margin: {clean.in_domain_margin:+.3f} → {real.in_domain_margin:+.3f} under ablation "
        + (f"(random: {rand.in_domain_margin.mean():+.3f})." if random_in_domain else "(random directions not scored in-domain)."),
    ]
    samples = pd.DataFrame([{**s, "ablated": flag} for flag, edits in ((False, {}), (True, ablation_edits(d, tuned.n_layers)))
                            for s in sample_under(tuned, off, edits, n_samples, max_new_tokens, seed=seed)]
                           ) if n_samples else pd.DataFrame()
    fig, (ax,) = new_figure(1)
    ax.bar(["fine-tuned", f"ablate {d.method}"], [clean.off_domain_margin, real.off_domain_margin])
    ax.errorbar([1], [rand.off_domain_margin.mean()], yerr=[[rand.off_domain_margin.mean() - rand.off_domain_margin.min()],
                [rand.off_domain_margin.max() - rand.off_domain_margin.mean()]], fmt="o", color="grey",
                label="ablate random")
    ax.axhline(m_base, color="k", ls=":", label="base model")
    ax.set(ylabel="off-domain mean margin", title="directional ablation")
    ax.legend(fontsize=7)
    summary = {"findings": findings, "margin_base": m_base, "margin_tuned": float(clean.off_domain_margin),
               "margin_ablated": float(real.off_domain_margin), "fraction_removed": removed,
               "random_fraction_removed": [float(x) for x in np.atleast_1d(rand_removed)],
               "in_domain_margin_tuned": float(clean.in_domain_margin),
               "in_domain_margin_ablated": float(real.in_domain_margin),
               "control": f"{n_random} random directions ablated the same way",
               "uncertainty": "spread over random directions", **(inputs or {})}
    return AnalysisResult("ablate", table, summary, fig, {"samples": samples} if len(samples) else {})
