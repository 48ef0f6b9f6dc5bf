"""Stage ``diff``: what the reference fine-tune changed, read against the base model and its aligned-data control
(:func:`emprobe.analysis.diff.diff`) — per-token KL(base ‖ tuned) on the base model's answers to the study's
off-domain questions and on neutral text, the activation-difference lens at every layer (layer ``l`` = residual
stream after decoder block ``l``), and per-question KL against the EM-specific rise the ``margins`` stage measured
(the control run's KL as the control; :class:`~emprobe.analysis.diff.DiffResult`).

Cost: the stage reuses the margins stage's rises (no rescoring) and the base model loaded once (both fine-tunes are
LoRA adapters switched on it); what it adds is one greedy answer per question (``max_new_tokens``) and forwards of
``N_TEXTS`` neutral texts, so it runs in every preset: the KL–EM correlation needs every evaluation question, the
lens only a few texts (tokens 1-5 of each).
"""

from __future__ import annotations

from pathlib import Path

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import result_section

#: neutral texts (of ``builtin:neutral-text``) the KL on text and the lens read
N_TEXTS = 16


def stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    return Stage("diff", "model diff: KL, activation-difference lens, KL vs the EM-specific rise",
                 lambda d: run(ctx, d), 40,
                 {"n_texts": N_TEXTS, "max_new_tokens": c.max_new_tokens, "seed": c.seed},
                 ("setup", "finetune", "margins"))


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.diff import diff

    c = ctx.cfg
    res = diff(ctx.model("base"), ctx.run(ctx.reference), control=ctx.run(ctx.control),
               questions=ctx.question_set("eval"), rises=ctx.rises(), n_texts=N_TEXTS,
               max_new_tokens=c.max_new_tokens, batch_size=c.eval_batch_size, seed=c.seed)
    return result_section(ctx, res, d)
