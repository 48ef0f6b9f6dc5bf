"""``ep.diff``: what a fine-tune changed — per-token KL(base ‖ tuned) on off-domain answers and on neutral text,
the activation-difference lens at every layer, and whether the per-question KL tracks per-question EM.

1. **KL.** The base model answers each off-domain question (first paraphrase, greedy, ``max_new_tokens``); on
   those answers and on the first ``max_text_tokens`` tokens of each neutral text (``builtin:neutral-text``, raw
   text) the per-token KL(base ‖ tuned) is measured at every position (:mod:`~emprobe.analysis.diff.kl`), and the
   same for the aligned-data control run.
2. **Lens.** The mean activation difference (tuned − base) over tokens 1..``lens_tokens`` (after the attention
   sink at 0) of the neutral texts at every layer, read through the final norm and unembedding: the top promoted /
   suppressed tokens (:mod:`~emprobe.analysis.diff.lens`).
3. **KL vs EM.** Per question, Spearman ρ of KL(base ‖ tuned) with the EM-specific rise (the tuned run's margin
   change minus the control's, :mod:`emprobe.evaluation.margin`), and the same ρ for the control's KL — any
   fine-tune may change some questions' answers more than others. The claim "the questions whose answers the
   misaligned fine-tune changes most are those where EM rises most, beyond what any fine-tune's KL shows" is
   decided on ``ρ(tuned) − ρ(control)`` with a paired bootstrap CI over questions, under the shared rule
   (:mod:`emprobe.analysis.stats.verdict`) with a SESOI of ``sesoi`` (declared before looking; default 0.2 in ρ).

Base and fine-tunes are loaded once: LoRA adapters share the base weights and the base side runs under peft's
``disable_adapter()`` (:class:`~emprobe.analysis.diff.models.ModelSet`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from emprobe.analysis.args import check_diff
from emprobe.analysis.diff.kl import chat_items, text_items, token_kl
from emprobe.analysis.diff.lens import activation_lens
from emprobe.analysis.diff.models import BASE, ModelSet
from emprobe.analysis.diff.result import DiffResult
from emprobe.analysis.stats import paired_row_spearman, spearman
from emprobe.errors import DataError


def diff(base: Any, tuned: Any, *, control: Any = None, questions: Any = "builtin:em-core",
         text: Any = "builtin:neutral-text", rises: Any = None, n_questions: int | None = None,
         n_texts: int | None = None, max_new_tokens: int = 48, max_text_tokens: int = 64, lens_tokens: int = 5,
         top_k: int = 10, layers: Any = "all", sesoi: float = 0.2, n_boot: int = 2000, batch_size: int = 8,
         seed: int = 0) -> DiffResult:
    """Diff ``base`` and its fine-tune ``tuned`` (see the module docstring).

    ``base``: a loaded model, alias, hub id or directory. ``tuned`` / ``control``: a LoRA adapter directory, a run
    directory (its last checkpoint), a full model directory or a loaded model; ``control`` is the aligned-data
    control fine-tune (the comparison the verdict needs). ``questions``: off-domain question set (first
    ``n_questions``); ``text``: general text (``builtin:neutral-text``, a YAML / ``.txt`` file or a list of
    strings; first ``n_texts``). ``rises``: per-question EM-specific rises (a table or path with ``question_id``
    and ``em_rise``; per-pair rows are averaged) instead of scoring the margins here. ``layers``: the lens'
    layers (layer ``l`` = residual stream after decoder block ``l``); ``lens_tokens``: positions 1..k averaged
    (position 0, the attention sink, is left out); ``top_k``: tokens listed per side. ``sesoi``: smallest ρ
    difference of interest.
    """
    check_diff(base=base, tuned=tuned, control=control, questions=questions, text=text, rises=rises,
               n_questions=n_questions, n_texts=n_texts, max_new_tokens=max_new_tokens, max_text_tokens=max_text_tokens,
               lens_tokens=lens_tokens, top_k=top_k, sesoi=sesoi, n_boot=n_boot, batch_size=batch_size)
    from emprobe.data import QuestionSet, load_questions, load_texts
    from emprobe.models import resolve_layers

    qs = load_questions(questions)
    qs = QuestionSet(qs.questions[:n_questions or None], qs.source, qs.name)
    ts = load_texts(text).head(n_texts)
    variants = {"tuned": tuned, **({"control": control} if control is not None else {})}
    names = list(variants)
    with ModelSet(base, variants) as ms:
        layer_ids = resolve_layers(layers, ms.base.n_layers)
        answers = base_answers(ms, qs, max_new_tokens, batch_size)
        kl = kl_table(ms, names, qs, answers, ts, max_text_tokens, batch_size)
        lens = activation_lens(ms, names, list(ts), layer_ids, lens_tokens, top_k)
        per_q = per_question(kl, question_rises(ms, qs, names, batch_size) if rises is None else read_rises(rises))
        meta = {**ms.info, "questions": qs.name, "text": ts.name, "n_texts": len(ts), "layers": layer_ids}
    return DiffResult(kl=kl, per_question=per_q, lens=lens, answers=answers,
                      stats=rho_stats(per_q, n_boot, seed), sesoi=sesoi, lens_tokens=lens_tokens,
                      n_layers=ms.base.n_layers, meta=meta)


def base_answers(ms, qs, max_new_tokens: int, batch_size: int) -> pd.DataFrame:
    """The base model's greedy answer to each question's first paraphrase (its system prompt included)."""
    from emprobe.models.generation import generate_chat

    with ms.use(BASE) as lm:
        texts = generate_chat(lm, [q.messages(0) for q in qs], max_new_tokens, 0.0, batch_size=batch_size)
    return pd.DataFrame({"question_id": [q.id for q in qs], "answer": texts})


def kl_table(ms, names: list[str], qs, answers: pd.DataFrame, ts, max_text_tokens: int,
             batch_size: int) -> pd.DataFrame:
    """Long table ``variant, source (responses|text), item, position, kl``: position ``k`` is the ``k``-th scored
    token (the ``k``-th response token; text token ``k + 1``, the first having no prediction)."""
    chat = ms.base.require_chat()
    sources = {"responses": (list(answers.question_id),
                             chat_items(chat, [q.messages(0) for q in qs], list(answers.answer))),
               "text": (list(ts.ids), text_items(ms.base.tokenizer, list(ts), max_text_tokens))}
    rows = []
    for source, (ids, items) in sources.items():
        got = token_kl(ms, names, items, batch_size)
        for v in names:
            for item, arr in zip(ids, got[v]):
                rows += [(v, source, item, k, float(x)) for k, x in enumerate(arr)]
    df = pd.DataFrame(rows, columns=["variant", "source", "item", "position", "kl"])
    if not np.isfinite(df.kl).all():
        raise DataError("non-finite KL (NaN/inf): a model produced non-finite logits (try dtype float32)")
    return df


def question_rises(ms, qs, names: list[str], batch_size: int) -> pd.DataFrame:
    """Per question: base margin, the tuned run's change, the control's change and the EM-specific rise (tuned −
    control change), from the judge-free margin of every model (questions with references only)."""
    from emprobe.evaluation import margin_scores

    refs = qs.with_references()
    margins = {}
    for name in [BASE, *names]:
        with ms.use(name) as lm:
            margins[name] = margin_scores(lm, refs, batch_size=batch_size).summary.set_index("question_id").margin
    df = pd.DataFrame({"base": margins[BASE], "misaligned_change": margins["tuned"] - margins[BASE]})
    if "control" in margins:
        df["control_change"] = margins["control"] - margins[BASE]
        df["em_rise"] = df.misaligned_change - df.control_change
    return df.reset_index()


def read_rises(rises: Any) -> pd.DataFrame:
    """Per-question rises from a table (or its path) with ``question_id`` and ``em_rise`` (per-pair rows averaged)."""
    from emprobe.io import read_table

    df = rises if isinstance(rises, pd.DataFrame) else read_table(rises, "rises table")
    missing = {"question_id", "em_rise"} - set(df.columns)
    if missing:
        raise DataError(f"rises table lacks columns {sorted(missing)} (a study's margins/rises.parquet has them)")
    num = [c for c in ("base", "misaligned_change", "control_change", "em_rise") if c in df.columns]
    return df.groupby("question_id", sort=False)[num].mean().reset_index()


def per_question(kl: pd.DataFrame, rises: pd.DataFrame) -> pd.DataFrame:
    """``question_id, kl_<variant>..., <rise columns>``: mean per-token KL on the base model's answer to each
    question, joined with its rises (questions without a rise are dropped)."""
    r = kl[kl.source == "responses"].groupby(["item", "variant"]).kl.mean().unstack("variant")
    r = r.rename(columns=lambda v: f"kl_{v}").rename_axis(index="question_id", columns=None).reset_index()
    out = r.merge(rises, on="question_id", how="inner")
    if out.empty:
        raise DataError("no question has both a KL and a rise (do the rises' question ids match the questions?)")
    return out


def rho_stats(per_q: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
    """ρ(KL_tuned, rise), ρ(KL_control, rise) and their difference, with 95 % percentile bootstrap CIs over
    questions (paired: both ρ from the same resampled questions). The rise is the EM-specific rise when present."""
    target = "em_rise" if "em_rise" in per_q.columns else "misaligned_change"
    y = per_q[target].to_numpy(float)
    cols = [c for c in ("kl_tuned", "kl_control") if c in per_q.columns]
    out: dict[str, float] = {"n_questions": float(len(y)), "target_em_specific": float(target == "em_rise")}
    if len(y) < 3:
        return out
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    boots = {}
    for c in cols:
        x = per_q[c].to_numpy(float)
        name = c.removeprefix("kl_")
        boots[name] = paired_row_spearman(x[idx], y[idx])
        out[f"rho_{name}"] = spearman(x, y)
        out[f"rho_{name}_low"], out[f"rho_{name}_high"] = np.quantile(boots[name], [0.025, 0.975]).tolist()
    if len(boots) == 2:
        d = boots["tuned"] - boots["control"]
        out["rho_difference"] = out["rho_tuned"] - out["rho_control"]
        out["rho_difference_low"], out["rho_difference_high"] = np.quantile(d, [0.025, 0.975]).tolist()
    return out
