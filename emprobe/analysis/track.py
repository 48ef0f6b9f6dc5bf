"""``emprobe track``: follow base-model misalignment directions through a fine-tuning run's checkpoints.

For every checkpoint (base model loaded once, adapters switched):

* the projection of each prompt's ``last_prompt`` activation on each direction at each of its layers
  (per question and mean), and — as the control — the same shift measured along random unit directions;
* the direction *refit* at that checkpoint on the direction's own contrast prompts, and its cosine to
  the base-model direction;
* the drift of the mean activation from step 0 (its norm, per layer);
* for LoRA runs, the adapter's own trajectory (:mod:`emprobe.analysis.adapter_trajectory`).

Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from emprobe.analysis.adapter_trajectory import adapter_trajectory
from emprobe.analysis.results import AnalysisResult, new_figure
from emprobe.analysis.stats import bootstrap_ci
from emprobe.analysis.subspace import control_rng, cosine
from emprobe.errors import ConfigError


def _refit_cosines(lm, direction, prompt_cache: dict, batch_size: int) -> list[dict]:
    """Refit ``direction``'s method on its own contrast prompts with the current model; cosine per layer."""
    from emprobe.probes import extract_activations, fit_probe, load_prompts

    src = direction.source
    key = (src.get("prompts_source"), src.get("contrast"))
    if not key[0]:
        return []
    if key not in prompt_cache:
        prompt_cache[key] = load_prompts(key[0], contrast=src.get("contrast"))
    store = extract_activations(lm, prompt_cache[key], direction.layers, positions=[direction.position],
                                batch_size=batch_size)
    refit = fit_probe(store, direction.method, direction.position, direction.layers, n_splits=2, n_random=1).direction
    return [{"layer": layer, "refit_cosine": cosine(refit.vector(layer).numpy(), direction.vector(layer).numpy())}
            for layer in direction.layers]


def track_run(run, directions: Sequence, prompts: str = "builtin:em-core", refit: bool = True,
              n_random: int = 20, batch_size: int = 8, seed: int = 0, steps: Sequence[int] | None = None,
              merge: bool = False) -> AnalysisResult:
    """Projections, refit cosines, mean-activation drift and adapter trajectory over every checkpoint
    (or only ``steps``; the first one is the reference for drift)."""
    from emprobe.finetune import Run
    from emprobe.probes import extract_activations, load_prompts

    run = run if isinstance(run, Run) else Run.load(run)
    if not directions:
        raise ConfigError("track needs at least one direction")
    ps = load_prompts(prompts)
    layers = sorted({layer for d in directions for layer in d.layers})
    d_model = directions[0].d_model
    rng = control_rng(seed)
    randoms = rng.standard_normal((n_random, d_model))
    randoms /= np.linalg.norm(randoms, axis=1, keepdims=True)
    qids = np.array([it.question_id for it in ps])
    proj_rows, drift_rows, refit_rows, base_mean = [], [], [], None
    cache: dict = {}
    for ckpt, lm in run.iter_models(list(steps) if steps is not None else None, merge=merge):
        if lm.d_model != d_model:
            raise ConfigError(f"directions have d_model {d_model}, the run's model has {lm.d_model}")
        acts = extract_activations(lm, ps, layers, positions=["last_prompt"], batch_size=batch_size)
        x = acts.get("last_prompt").numpy()  # [n, L, d]
        mean = x.mean(0)
        base_mean = mean if base_mean is None else base_mean
        for j, layer in enumerate(layers):
            rand_proj = x[:, j] @ randoms.T  # [n, n_random]
            drift_rows.append({"step": ckpt.step, "layer": layer,
                               "drift_norm": float(np.linalg.norm(mean[j] - base_mean[j])),
                               "mean_norm": float(np.linalg.norm(mean[j])),
                               **{f"random_{r}": float(rand_proj[:, r].mean()) for r in range(n_random)}})
        for d in directions:
            p = d.project(x[:, [layers.index(layer) for layer in d.layers]])  # [n, L_d]
            for j, layer in enumerate(d.layers):
                for q in np.unique(qids):
                    proj_rows.append({"step": ckpt.step, "direction": d.method, "layer": layer, "question_id": q,
                                      "projection": float(p[qids == q, j].mean())})
            if refit:
                refit_rows += [{"step": ckpt.step, "direction": d.method, **r}
                               for r in _refit_cosines(lm, d, cache, batch_size)]
    proj = pd.DataFrame(proj_rows)
    drift = pd.DataFrame(drift_rows)
    tables = {"drift": drift}
    if refit_rows:
        tables["refit"] = pd.DataFrame(refit_rows)
    ckpts = run.checkpoints() if steps is None else [run.checkpoint(s) for s in steps]
    if all(c.kind == "lora" for c in ckpts) and len(ckpts) > 1:
        tables["adapter"] = adapter_trajectory([(c.step, c.path) for c in ckpts])
    return _summarise(proj, tables, directions, n_random, {"run": str(run.path), "prompts": prompts,
                                                           "prompt_set_sha256": ps.sha256, "layers": layers})


def _summarise(proj: pd.DataFrame, tables: dict, directions, n_random: int, inputs: dict) -> AnalysisResult:
    drift = tables["drift"]
    steps = sorted(proj.step.unique())
    first, last = steps[0], steps[-1]
    findings, shifts = [], {}
    for d in directions:
        layer = d.best_layer if d.best_layer in d.layers else d.layers[0]
        g = proj[(proj.direction == d.method) & (proj.layer == layer)]
        a = g[g.step == first].set_index("question_id").projection
        b = g[g.step == last].set_index("question_id").projection.loc[a.index]
        delta = (b - a).to_numpy()
        lo, hi = bootstrap_ci(delta)
        dr = drift[drift.layer == layer].set_index("step")
        rand = np.array([dr.loc[last, f"random_{r}"] - dr.loc[first, f"random_{r}"] for r in range(n_random)])
        z = (delta.mean() - rand.mean()) / rand.std(ddof=1) if n_random > 1 and rand.std(ddof=1) > 0 else float("nan")
        shifts[d.method] = {"layer": int(layer), "delta": float(delta.mean()), "ci_low": float(lo), "ci_high": float(hi),
                            "random_mean": float(rand.mean()),
                            "random_sd": float(rand.std(ddof=1)) if n_random > 1 else float("nan"), "z": float(z)}
        findings.append(
            f"Along the base-model {d.method} direction at layer {layer}, the mean eval-prompt projection moves "
            f"{delta.mean():+.3f} from step {first} to step {last} (95% bootstrap CI over questions "
            f"[{lo:+.3f}, {hi:+.3f}]); random unit directions move {rand.mean():+.3f} ± {rand.std(ddof=1):.3f} "
            f"(z = {z:.1f}).")
        if "refit" in tables:
            rf = tables["refit"]
            r = rf[(rf.direction == d.method) & (rf.layer == layer) & (rf.step == last)]
            if len(r):
                findings.append(f"Refit at step {last}, the {d.method} direction keeps cosine "
                                f"{float(r.refit_cosine.iloc[0]):.3f} with the base-model direction at layer {layer}.")
    if "adapter" in tables:
        ad = tables["adapter"]
        allm = ad[ad.module == "<all>"].dropna(subset=["local_cos_B"])
        if len(allm):
            dip = allm.loc[allm.local_cos_B.idxmin()]
            findings.append(f"The adapter's B trajectory turns most sharply at step {int(dip.step)} (local cosine "
                            f"{dip.local_cos_B:.3f}; model-organisms phase-transition score).")
    third = "refit" in tables or "adapter" in tables
    fig, axes = new_figure(3 if third else 2)
    rcols = [c for c in drift.columns if c.startswith("random_")]
    for i, d in enumerate(directions):
        layer = d.best_layer if d.best_layer in d.layers else d.layers[0]
        m = proj[(proj.direction == d.method) & (proj.layer == layer)].groupby("step").projection.mean()
        axes[0].plot(m.index, m - m.iloc[0], marker="o", color=f"C{i}", label=f"{d.method} L{layer}")
        g = drift[drift.layer == layer].sort_values("step")  # random directions at the same layer
        rshift = g[rcols].to_numpy() - g[rcols].to_numpy()[0]
        axes[0].fill_between(g.step, rshift.min(1), rshift.max(1), color=f"C{i}", alpha=0.12)
    for layer, g in drift.groupby("layer"):
        g = g.sort_values("step")
        axes[1].plot(g.step, g.drift_norm, label=f"L{layer}", lw=0.8)
    axes[0].set(xlabel="step", ylabel="Δ mean projection", title="direction projection (band: random, same layer)")
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="step", ylabel="‖mean − mean@0‖", title="mean-activation drift")
    if "refit" in tables:
        for (meth, layer), g in tables["refit"].groupby(["direction", "layer"]):
            axes[2].plot(g.step, g.refit_cosine, lw=0.8)
        axes[2].set(xlabel="step", ylabel="cosine to base direction", title="refit direction")
    elif "adapter" in tables:
        ad = tables["adapter"]
        allm = ad[ad.module == "<all>"].sort_values("step")
        axes[2].plot(allm.step, allm.norm_B, marker="o", label="‖B‖ (all modules)")
        axes[2].set(xlabel="step", ylabel="‖B‖", title="LoRA adapter trajectory")
    summary = {"findings": findings, "steps": [int(s) for s in steps], "inputs": inputs, "shifts": shifts,
               "control": f"{n_random} random unit directions (same prompts, same checkpoints)",
               "uncertainty": "bootstrap 95% CI over questions; z against random directions"}
    return AnalysisResult("track", proj, summary, fig, tables)


def track(run_dir: str | Path, directions: Sequence[str | Path], prompts: str = "builtin:em-core",
          refit: bool = True, n_random: int = 20, batch_size: int = 8, seed: int = 0) -> AnalysisResult:
    """File-level entry point: a run directory and direction directories (``emprobe probe fit`` output)."""
    from emprobe.probes import Direction

    return track_run(run_dir, [Direction.load(d) for d in directions], prompts, refit, n_random, batch_size, seed)
