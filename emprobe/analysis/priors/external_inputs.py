"""Inputs of claim 2 on an external target: the per-question target scores of one evaluated run
(``FILE[:score]``), the prompts those questions were asked with (one per question id), and their categories."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emprobe.errors import DataError
from emprobe.evaluation.external.load import parse_target

TARGET_ORDER = ("harmless", "aligned", "em_rate", "margin", "coherent")


@dataclass(frozen=True)
class Target:
    """One run's per-question scores: ``y`` indexed by question id (nulls dropped and counted)."""

    y: pd.Series
    score: str
    source: str
    run: str
    n_null: int


def load_target(target: Any, score: str | None = None) -> Target:
    """The per-question ``score`` of the single run in ``target`` (anything ``load_results`` reads, or
    ``FILE:score``); default score: the first of harmless, aligned, em_rate, margin, coherent it gives."""
    from emprobe.evaluation.external import load_results

    src, named = parse_target(target)
    score = score or named
    res = load_results(src)
    if len(res) != 1:
        raise DataError(f"target {src}: holds {len(res)} runs; give the file of one run")
    run = res[0]
    if score is None:
        score = next((s for s in TARGET_ORDER if run.has(s)), None)
    if score is None or not run.has(score):
        have = [s for s in TARGET_ORDER if run.has(s)]
        raise DataError(f"target {run.source}: no {score or 'score'} values (has {', '.join(have) or 'none'})")
    s = run.scores.set_index("question_id")[score]
    return Target(s.dropna().astype(float), score, run.source, run.name, int(s.isna().sum()))


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {i} is not valid JSON ({e.msg})") from None
    return rows


def _row_prompt(path: Path, i: int, row: Any) -> tuple[str, list[dict], str | None]:
    if not isinstance(row, dict):
        raise DataError(f"{path}: line {i} is not a JSON object")
    meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    qid = meta.get("question_id") or row.get("question_id") or row.get("id")
    msgs = row.get("messages")
    if not qid:
        raise DataError(f"{path}: line {i} has no question id (metadata.question_id, question_id or id)")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "content" in m for m in msgs):
        raise DataError(f"{path}: line {i} ({qid}) has no messages list")
    while msgs and msgs[-1].get("role") == "assistant":  # the prompt only
        msgs = msgs[:-1]
    if not msgs:
        raise DataError(f"{path}: line {i} ({qid}) has no prompt before the answer")
    return str(qid), [{"role": m.get("role", "user"), "content": str(m["content"])} for m in msgs], \
        meta.get("category") or row.get("category")


def load_id_prompts(source: Any):
    """A :class:`~emprobe.probes.PromptSet` with one prompt per question id (``uid = question_id``): a chat
    JSONL whose lines carry ``metadata.question_id`` (the em-generalization evaluation files), or a question set
    (Betley YAML / ``builtin:``; first paraphrase). A ``category`` (in ``metadata`` or the question) is kept."""
    from emprobe.probes.sources import PromptItem, PromptSet

    text = str(source)
    if text.lower().endswith((".jsonl", ".jsonl.gz", ".json.gz")):
        path = Path(text)
        if not path.is_file():
            raise DataError(f"{path}: no such prompt file")
        items = []
        for i, row in enumerate(_jsonl(path), 1):
            qid, msgs, cat = _row_prompt(path, i, row)
            items.append(PromptItem(qid, qid, tuple(msgs), meta={"category": cat}))
        return PromptSet(items, text, "none", {"kind": "id-prompts"})
    from emprobe.data import load_questions

    qs = load_questions(text)
    items = [PromptItem(q.id, q.id, tuple(q.messages(0)), meta={"category": q.category}) for q in qs]
    return PromptSet(items, text, "none", {"kind": "questions", "questions_sha256": qs.sha256})


def prompt_text(item) -> str:
    """What the text-only baseline reads: the prompt's messages joined."""
    return "\n".join(m["content"] for m in item.messages)


def align_prompts(target: Target, prompts) -> tuple[list, np.ndarray, list[str] | None]:
    """``(prompt items, y, given categories or None)`` for the target's questions, in prompt-file order; target ids
    that match no prompt are a one-line error."""
    by_id = {it.uid: it for it in prompts}
    missing = [q for q in target.y.index if q not in by_id]
    if missing:
        raise DataError(f"{len(missing)} of the target's {len(target.y)} question ids match no prompt in "
                        f"{prompts.source} (e.g. {', '.join(repr(m) for m in missing[:3])})")
    items = [it for it in prompts if it.uid in target.y.index]
    if len(items) < 10:
        raise DataError(f"only {len(items)} questions have both a target score and a prompt (need >= 10)")
    cats = [it.meta.get("category") for it in items]
    return items, target.y.loc[[it.uid for it in items]].to_numpy(float), \
        (None if any(c is None for c in cats) else [str(c) for c in cats])
