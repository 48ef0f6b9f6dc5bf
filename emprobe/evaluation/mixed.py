"""Reference log-probs of many LoRA checkpoints of one base model, scored in mixed-adapter batches.

Every adapter (e.g. each checkpoint of each run of a study; ``None`` = the base model itself) is stacked onto one
loaded base model (:class:`~emprobe.finetuning.stacked.StackedLoRA`, the same routing as peft's ``adapter_names``
but as batched matmuls); a batch holds the prompts of one or more adapters, every row goes through its own
adapter, and each prompt's references run on that prompt's KV cache as in
:func:`~emprobe.evaluation.margin.sequence_logprobs`. The scores equal scoring each checkpoint alone (to float
rounding), with the base model loaded once and no adapter switched, merged or unmerged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from emprobe.errors import ConfigError
from emprobe.evaluation.batching import Router, continuation_logprobs
from emprobe.evaluation.margin import reference_items

#: ``(adapter index, [(ids, n_prompt), ...])``: the items one adapter scores (adapter ``-1``: the base model)
Job = tuple[int, Sequence[tuple[Sequence[int], int]]]


def _entries(jobs: Sequence[Job], batch_size: int) -> list[tuple[int, tuple[int, ...], list[tuple[int, int]]]]:
    """``(adapter, prompt, [(job, item), ...])`` with at most ``batch_size`` items each: adapter by adapter, each
    adapter's prompts longest first (so a batch holds few adapters and little padding)."""
    groups: dict[tuple[int, tuple[int, ...]], list[tuple[int, int]]] = {}
    for j, (adapter, items) in enumerate(jobs):
        for i, (ids, n) in enumerate(items):
            if len(ids) <= n:
                raise ValueError(f"adapter {adapter}, item {i}: no response tokens")
            groups.setdefault((adapter, tuple(ids[:n])), []).append((j, i))
    order = sorted(groups, key=lambda key: (key[0], -len(key[1])))
    return [(a, p, groups[(a, p)][s:s + batch_size]) for a, p in order
            for s in range(0, len(groups[(a, p)]), batch_size)]


def mixed_sequence_logprobs(lm, route: Router, jobs: Sequence[Job], batch_size: int = 16
                            ) -> list[list[tuple[float, int]]]:
    """Per job, ``(sum of log p(response tokens), n response tokens)`` for each of its items.

    ``route`` applies per-row adapters (:meth:`~emprobe.finetuning.stacked.StackedLoRA.route_rows`); at most
    ``batch_size`` references run per forward, on the KV caches of their prompts.
    """
    out = [[(0.0, 0)] * len(items) for _, items in jobs]
    entries = _entries(jobs, batch_size)
    pad = lm.tokenizer.pad_token_id
    chunk: list[int] = []
    size = 0
    for e in range(len(entries) + 1):
        if e == len(entries) or (chunk and size + len(entries[e][2]) > batch_size):
            where = [ji for g in chunk for ji in entries[g][2]]
            owner = [k for k, g in enumerate(chunk) for _ in entries[g][2]]
            resp = [list(jobs[j][1][i][0][jobs[j][1][i][1]:]) for j, i in where]
            sums, counts, _ = continuation_logprobs(lm.model, [entries[g][1] for g in chunk], resp, owner, pad,
                                                    [entries[g][0] for g in chunk], route)
            for (j, i), s_, n_ in zip(where, sums.tolist(), counts.tolist()):
                out[j][i] = (float(s_), int(n_))
            chunk, size = [], 0
        if e < len(entries):
            chunk.append(e)
            size += len(entries[e][2])
    return out


def stack_key(adapter: str | Path | None) -> str | None:
    """Adapters with equal keys stack on one base (same rank, scaling and target modules; ``""`` for the base model
    itself, which stacks with any); ``None``: the adapter cannot be stacked (not plain LoRA: DoRA, per-module ranks,
    trained biases or extra modules), so it is scored on its own."""
    from emprobe.models.adapters import read_adapter_config

    if adapter is None:
        return ""
    c = read_adapter_config(adapter)
    if c.get("peft_type", "LORA") != "LORA" or c.get("use_dora") or c.get("rank_pattern") or \
            c.get("alpha_pattern") or c.get("modules_to_save") or c.get("bias", "none") != "none":
        return None
    t = c.get("target_modules")
    return json.dumps([c.get("r"), c.get("lora_alpha"), bool(c.get("use_rslora")),
                       sorted(t) if isinstance(t, (list, tuple)) else t, c.get("layers_to_transform"),
                       c.get("layers_pattern")], default=str)


def _groups(adapters: Sequence, max_adapters: int) -> list[list[int]]:
    """Indices of ``adapters`` in stacks of at most ``max_adapters`` whose adapters stack (:func:`stack_key`); the
    base model (``None``) joins the first stack."""
    keys = [stack_key(a) for a in adapters]
    bad = [a for a, k in zip(adapters, keys) if k is None]
    if bad:
        raise ConfigError(f"adapters: {bad[0]} is not a plain LoRA adapter (one rank and alpha), so it cannot be "
                          "stacked; score it alone (emprobe.evaluation.margin_scores)")
    by_key: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        by_key.setdefault(k, []).append(i)
    base = by_key.pop("", [])
    stacks = [v[s:s + max_adapters] for v in by_key.values() for s in range(0, len(v), max_adapters)] or [[]]
    stacks[0] = base + stacks[0]
    return stacks


@torch.no_grad()
def adapter_reference_logprobs(lm, adapters: Sequence[str | Path | None], questions, batch_size: int = 16,
                               max_adapters: int = 16) -> list[pd.DataFrame]:
    """:func:`~emprobe.evaluation.margin.reference_logprobs` of every adapter in ``adapters`` (``None``: the base
    model) on ``lm`` (the base model, loaded once; its modules are restored afterwards), scored in mixed-adapter
    batches, at most ``max_adapters`` adapters stacked at a time (each holds its LoRA weights in memory; adapters
    of another rank or target modules go into another stack). ``questions`` is one question set for all, or one
    per adapter (e.g. fewer reference pairs for intermediate checkpoints)."""
    qsets = list(questions) if isinstance(questions, (list, tuple)) else [questions] * len(adapters)
    if len(qsets) != len(adapters):
        raise ValueError(f"{len(adapters)} adapters but {len(qsets)} question sets")
    tokenized: dict[int, tuple[pd.DataFrame, list]] = {}
    for qs in qsets:
        if id(qs) not in tokenized:
            tokenized[id(qs)] = reference_items(lm, qs)
    scores: dict[int, list] = {}
    for stack in (g for g in _groups(adapters, max_adapters) if g):
        got = _score_group(lm, [(adapters[i], tokenized[id(qsets[i])][1]) for i in stack], batch_size)
        scores.update(zip(stack, got))
    frames = []
    for i, qs in enumerate(qsets):
        df = tokenized[id(qs)][0].copy()
        df["n_tokens"] = [n for _, n in scores[i]]
        df["logprob_sum"] = [s for s, _ in scores[i]]
        df["logprob_mean"] = df["logprob_sum"] / df["n_tokens"]
        frames.append(df)
    return frames


def adapter_margin_scores(lm, adapters: Sequence[str | Path | None], questions, batch_size: int = 16,
                          max_adapters: int = 16, fields: Sequence[dict] | None = None) -> list:
    """:func:`~emprobe.evaluation.margin_scores` of every adapter (a
    :class:`~emprobe.evaluation.tables.ScoreTable` each, its manifest naming the adapter; ``fields[i]`` adds
    manifest fields to table ``i``), scored as :func:`adapter_reference_logprobs` scores them."""
    from emprobe.evaluation.margin import margin_table

    t0 = time.perf_counter()
    refs = adapter_reference_logprobs(lm, adapters, questions, batch_size, max_adapters)
    share = (time.perf_counter() - t0) / max(len(adapters), 1)  # the call's time, split evenly
    qsets = list(questions) if isinstance(questions, (list, tuple)) else [questions] * len(adapters)
    settings = {"all_paraphrases": False, "batch_size": batch_size, "mixed_adapters": len(adapters)}
    return [margin_table(lm, qs, r, share, settings, adapter=None if a is None else str(a), **f)
            for a, qs, r, f in zip(adapters, qsets, refs, fields or [{}] * len(adapters))]


def _score_group(lm, group: list, batch_size: int) -> list[list[tuple[float, int]]]:
    """Stack the adapters of ``[(adapter or None, items), ...]`` and score their items."""
    from emprobe.finetuning.stacked import StackedLoRA

    stack = StackedLoRA(lm.model)
    try:
        index: dict[str, int] = {}
        for a, _ in group:
            if a is not None and str(a) not in index:
                index[str(a)] = stack.add_pretrained(a)
        jobs = [(index[str(a)] if a is not None else -1, items) for a, items in group]
        return mixed_sequence_logprobs(lm, stack.route_rows, jobs, batch_size)
    finally:
        stack.unstack()
