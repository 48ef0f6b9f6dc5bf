"""``ep.track``: follow base-model misalignment directions through a fine-tuning run's checkpoints.

For every checkpoint (base model loaded once, adapters switched):

* the projection of each prompt's ``last_prompt`` activation on each direction at each of its layers
  (per question), and, as the control, the same shift measured along random unit directions;
* the direction *refit* at that checkpoint on the direction's own contrast prompts, and its cosine to
  the base-model direction;
* the drift of the mean activation from the first checkpoint (its norm, per layer);
* for LoRA runs, the adapter's own trajectory (:mod:`emprobe.analysis.track.adapter`).

The numbers and tables come back as a :class:`~emprobe.analysis.track.result.TrackResult`.
Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emprobe.analysis.stats.subspace import control_rng, cosine
from emprobe.analysis.track.adapter import adapter_trajectory
from emprobe.analysis.track.result import TrackResult
from emprobe.errors import ConfigError


def _refit_cosines(lm, direction, prompt_cache: dict, batch_size: int) -> list[dict]:
    """Refit ``direction``'s method on its own contrast prompts with the current model; cosine per layer."""
    from emprobe.probes import extract, fit_direction, load_prompts

    src = direction.source
    key = (src.get("prompts_source"), src.get("contrast"))
    if not key[0]:
        return []
    if key not in prompt_cache:
        prompt_cache[key] = load_prompts(key[0], contrast=src.get("contrast"))
    store = extract(lm, prompt_cache[key], layers=direction.layers, positions=[direction.position],
                    batch_size=batch_size)
    refit = fit_direction(store, method=direction.method, position=direction.position, layers=direction.layers,
                          n_splits=2, n_random=1)
    return [{"layer": layer, "refit_cosine": cosine(refit.vector(layer).numpy(), direction.vector(layer).numpy())}
            for layer in direction.layers]


def random_units(n: int, d: int, seed: int) -> np.ndarray:
    """``[n, d]`` random unit directions from the control stream of ``seed``."""
    r = control_rng(seed).standard_normal((n, d))
    return r / np.linalg.norm(r, axis=1, keepdims=True)


@dataclass
class Projections:
    """What one pass over a run's checkpoints measures (tidy tables)."""

    projections: pd.DataFrame  # step, direction, layer, question_id, projection
    drift: pd.DataFrame  # step, layer, drift_norm, mean_norm, random_0..random_{n-1}
    refit: pd.DataFrame | None  # step, direction, layer, refit_cosine


def checkpoint_projections(run, directions: Sequence, labels: Sequence[str], prompts, *, n_random: int = 0,
                           seed: int = 0, batch_size: int = 8, steps: Sequence[int] | None = None,
                           merge: bool = False, refit: bool = False) -> Projections:
    """Per checkpoint of ``run`` (or only ``steps``): per-question projections on each direction (named by
    ``labels``), mean-activation drift from the first checkpoint with ``n_random`` random-direction
    projections, and (``refit``) the refit cosines."""
    from emprobe.probes import extract

    layers = sorted({layer for d in directions for layer in d.layers})
    d_model = directions[0].d_model
    randoms = random_units(n_random, d_model, seed)
    qids = np.array([it.question_id for it in prompts])
    uniq = np.unique(qids)
    proj_rows, drift_rows, refit_rows, base_mean, cache = [], [], [], None, {}
    for ckpt, lm in run.iter_models(list(steps) if steps is not None else None, merge=merge):
        if lm.d_model != d_model:
            raise ConfigError(f"directions have d_model {d_model}, the run's model has {lm.d_model}")
        x = extract(lm, prompts, layers=layers, positions=["last_prompt"], batch_size=batch_size
                    ).get("last_prompt").numpy()  # [n, L, d]
        mean = x.mean(0)
        base_mean = mean if base_mean is None else base_mean
        for j, layer in enumerate(layers):
            rand = mean[j] @ randoms.T  # the mean projection on each random direction
            drift_rows.append({"step": ckpt.step, "layer": layer,
                               "drift_norm": float(np.linalg.norm(mean[j] - base_mean[j])),
                               "mean_norm": float(np.linalg.norm(mean[j])),
                               **{f"random_{r}": float(rand[r]) for r in range(n_random)}})
        for d, label in zip(directions, labels):
            p = d.project(x[:, [layers.index(layer) for layer in d.layers]])  # [n, L_d]
            for j, layer in enumerate(d.layers):
                proj_rows += [{"step": ckpt.step, "direction": label, "layer": layer, "question_id": q,
                               "projection": float(p[qids == q, j].mean())} for q in uniq]
            if refit:
                refit_rows += [{"step": ckpt.step, "direction": label, **r}
                               for r in _refit_cosines(lm, d, cache, batch_size)]
    return Projections(pd.DataFrame(proj_rows), pd.DataFrame(drift_rows),
                       pd.DataFrame(refit_rows) if refit_rows else None)


def direction_labels(directions: Sequence) -> list[str]:
    """One name per direction: its method, numbered when two directions share a method."""
    seen: dict[str, int] = {}
    out = []
    for d in directions:
        seen[d.method] = seen.get(d.method, 0) + 1
        out.append(d.method if seen[d.method] == 1 else f"{d.method}_{seen[d.method]}")
    return out


def headline_layer(direction) -> int:
    """The layer a direction's headline numbers use: its best layer, else its first fitted layer."""
    return int(direction.best_layer if direction.best_layer in direction.layers else direction.layers[0])


def _as_directions(directions: Any) -> list:
    from emprobe.probes import Direction

    if isinstance(directions, (str, Path, Direction)):
        directions = [directions]
    dirs = [Direction.load(d) for d in directions or []]
    if not dirs:
        raise ConfigError("track needs at least one direction")
    widths = {d.d_model for d in dirs}
    if len(widths) > 1:
        raise ConfigError(f"the directions have different widths {sorted(widths)}")
    return dirs


def track(run, directions, questions="builtin:em-core", *, refit: bool = True, n_random: int = 20,
          batch_size: int = 8, seed: int = 0, steps: Sequence[int] | None = None,
          merge: bool = False) -> TrackResult:
    """Follow ``directions`` (Direction objects or directories) through the checkpoints of ``run`` (a
    :class:`~emprobe.finetuning.Run` or its directory), or only through ``steps`` (the first is the reference).

    ``questions``: the prompts projected (a question set, ``builtin:NAME`` or any prompt source);
    ``n_random`` random unit directions are the control; ``refit`` refits each direction at every
    checkpoint; ``merge`` merges each LoRA checkpoint into the weights while it is measured (faster).
    """
    from emprobe.finetuning import Run
    from emprobe.probes import load_prompts
    from emprobe.validate import check_args

    check_args(run=run, directions=directions, questions=questions, n_random=n_random, batch_size=batch_size,
               steps=steps)
    run = Run.load(run)
    dirs = _as_directions(directions)
    if n_random < 0:
        raise ConfigError(f"n_random must be >= 0, got {n_random}")
    ps = load_prompts(questions)
    labels = direction_labels(dirs)
    m = checkpoint_projections(run, dirs, labels, ps, n_random=n_random, seed=seed, batch_size=batch_size,
                               steps=steps, merge=merge, refit=refit)
    ckpts = run.checkpoints() if steps is None else [run.checkpoint(s) for s in steps]
    adapter = None
    if all(c.kind == "lora" for c in ckpts) and len(ckpts) > 1:
        adapter = adapter_trajectory([(c.step, c.path) for c in ckpts])
    meta = {"run": str(run.path), "prompts": getattr(questions, "source", str(questions)),
            "prompt_set_sha256": ps.sha256, "layers": sorted({layer for d in dirs for layer in d.layers}),
            "directions": {label: str(d.path) if d.path else d.method for d, label in zip(dirs, labels)}}
    return TrackResult(projections=m.projections, drift=m.drift, refit=m.refit, adapter=adapter,
                       layers={label: headline_layer(d) for d, label in zip(dirs, labels)},
                       n_random=n_random, meta=meta)
