"""The cross-model patching sweep behind :func:`emprobe.analysis.patch.compute.patch` (pure computation, no prose).

Pass 1 runs both models once on every (question, reference) item: the clean log-probs, and each question's
prompt activations at the patched layers (a prompt's activations do not depend on the answer after it, so one
copy per question serves all of its references). Pass 2 runs the destination model again for every
(direction, layer, span) with its residual stream at that layer replaced by the source model's activation on the
span (``last_prompt`` or every ``prompt`` column) — of the *same* question (the real patch) or of *another*
question (the control: a random cyclic derangement of the questions, so no item ever gets its own prompt back;
prompts of different lengths are aligned on their last token). Blocks ``0..l`` of the destination model are not run
again in pass 2: the clean pass records their output and pass 2 replays it (:mod:`emprobe.models.replay`), which
gives the full forward's result. Output: one margin per (cell, question).
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from emprobe.analysis.stats.subspace import control_rng
from emprobe.errors import ConfigError
from emprobe.models.replay import record, replay
from emprobe.probes.interventions import replace_where, scored_forward

SPANS = ("last_prompt", "prompt")
PATCH_DIRECTIONS = {"base→tuned": ("base", "tuned"), "tuned→base": ("tuned", "base")}


def check_directions(directions: Sequence[str]) -> tuple[str, ...]:
    unknown = set(directions) - set(PATCH_DIRECTIONS)
    if unknown or not directions:
        raise ConfigError(f"patch directions must be among {list(PATCH_DIRECTIONS)}, got {list(directions)}")
    return tuple(directions)


def margins(rows: pd.DataFrame, lp: np.ndarray) -> pd.Series:
    """Per-question margin from per-reference mean log-probs."""
    g = rows.assign(lp=lp).groupby(["question_id", "kind"]).lp.mean().unstack("kind")
    return g["misaligned"] - g["aligned"]


def derangement(qids: Sequence[str], seed: int) -> dict[str, str]:
    """A random cyclic derangement of ``qids``: every question maps to another one (never itself)."""
    order = [qids[i] for i in control_rng(seed).permutation(len(qids))]
    return {q: order[(i + 1) % len(order)] for i, q in enumerate(order)}


def _batches(base_lm, tuned_lm, questions, batch_size: int):
    from emprobe.evaluation.margin import reference_items
    from emprobe.probes.tokens import Encoded, make_batches

    rows, items = reference_items(tuned_lm, questions)
    if [list(i) for i, _ in items] != [list(i) for i, _ in reference_items(base_lm, questions)[1]]:
        raise ConfigError("base and fine-tuned models tokenize the references differently (different tokenizers?)")
    pad = tuned_lm.tokenizer.pad_token_id if tuned_lm.tokenizer.pad_token_id is not None else 0
    return rows, make_batches([Encoded(tuple(i), n) for i, n in items], batch_size, pad, "right")


def _clean_pass(models: dict, batches, qid: np.ndarray, layers: Sequence[int], replayed: Sequence[str]
                ) -> tuple[dict, dict, dict]:
    """Clean log-probs per model, ``{model: {layer: {question: [n_prompt, d]}}}`` prompt activations, and
    ``{model: [Recording per batch]}``: the block outputs at ``layers`` of the ``replayed`` models (the patch
    destinations), which pass 2 replays instead of running blocks ``0..layer`` again (each recorded around its own
    forward, so two names for one model cannot mix their recordings)."""
    clean = {name: np.zeros(len(qid)) for name in models}
    acts: dict = {name: {layer: {} for layer in layers} for name in models}
    recs: dict = {name: [] for name in replayed}
    for b in batches:
        idx = np.array(b.index)
        lo, hi = b.span("prompt")
        for name, model in models.items():
            with record(model, layers) if name in recs else contextlib.nullcontext() as rec:
                lp, cap = scored_forward(model, b, capture=layers)
            if name in recs:
                recs[name].append(rec)
            clean[name][idx] = lp.numpy()
            for r, item in enumerate(b.index):
                for layer in layers:
                    acts[name][layer].setdefault(qid[item], cap[layer][r, int(lo[r]):int(hi[r])].clone())
    return clean, acts, recs


def _patch_values(b, qid: np.ndarray, source: dict, span: str, mapping: dict | None, like: torch.Tensor):
    """``(values [B, T, D], mask [B, T])``: each row's span filled from ``source[question]`` (``mapping`` picks
    another question for the control), aligned on the prompt's last token."""
    _, hi = b.span("prompt")
    n_prompt = b.n_prompt
    values = torch.zeros((b.size, b.width, like.shape[-1]), dtype=like.dtype)
    mask = torch.zeros((b.size, b.width), dtype=torch.bool)
    for r, item in enumerate(b.index):
        q = qid[item]
        src = source[mapping[q] if mapping else q]
        width = 1 if span == "last_prompt" else min(int(n_prompt[r]), len(src))
        end = int(hi[r])
        values[r, end - width:end] = src[len(src) - width:]
        mask[r, end - width:end] = True
    return values, mask


def sweep(base_lm, tuned_lm, questions, layers: Sequence[int], spans: Sequence[str] = SPANS,
          directions: Sequence[str] = tuple(PATCH_DIRECTIONS), batch_size: int = 8, seed: int = 0
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(cells, clean)``: per-question margins of every (direction, layer, span, control) cell (``question_id,
    direction, layer, span, control, margin``), and the clean per-question margins (``question_id, margin_base,
    margin_tuned``)."""
    directions = check_directions(directions)
    rows, batches = _batches(base_lm, tuned_lm, questions, batch_size)
    qid = rows.question_id.astype(str).to_numpy()
    models = {"base": base_lm.model, "tuned": tuned_lm.model}
    clean, acts, recs = _clean_pass(models, batches, qid, layers, {PATCH_DIRECTIONS[d][1] for d in directions})
    mapping = derangement(list(dict.fromkeys(qid)), seed)
    cells = {(d, l_, s, c): np.zeros(len(qid)) for d in directions for l_ in layers for s in spans for c in (False, True)}
    for i, b in enumerate(batches):
        idx = np.array(b.index)
        for (direction, layer, span, control), out in cells.items():
            src, dst = PATCH_DIRECTIONS[direction]
            source = acts[src][layer]
            values, mask = _patch_values(b, qid, source, span, mapping if control else None, next(iter(source.values())))
            with replay(models[dst], recs[dst][i], layer):  # blocks 0..layer as in the clean pass
                out[idx] = scored_forward(models[dst], b, {layer: replace_where(values, mask)})[0].numpy()
    frames = [margins(rows, lp).rename("margin").reset_index().assign(direction=d, layer=l_, span=s, control=c)
              for (d, l_, s, c), lp in cells.items()]
    table = pd.concat(frames, ignore_index=True)[["question_id", "direction", "layer", "span", "control", "margin"]]
    m_base, m_tuned = margins(rows, clean["base"]), margins(rows, clean["tuned"])
    clean_df = pd.DataFrame({"question_id": m_base.index.astype(str), "margin_base": m_base.to_numpy(),
                             "margin_tuned": m_tuned.reindex(m_base.index).to_numpy()})
    table["question_id"] = table.question_id.astype(str)
    return table, clean_df
