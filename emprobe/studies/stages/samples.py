"""Stage ``samples``: answers of the base, misaligned and control models to the questions whose EM-specific
rise is largest (same seed for all three; illustrations, not evidence)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emprobe.studies.context import section
from emprobe.studies.pipeline import Stage


def stage(ctx) -> Stage:
    c = ctx.cfg
    return Stage("samples", "answers before / after", lambda d: run(ctx, d), 25,
                 {"n": c.questions.n_samples, "tok": c.max_new_tokens, "seed": c.seed}, ("margins",))


def run(ctx, d: Path) -> dict:
    from emprobe.models.generation import generate_chat

    c = ctx.cfg
    r = ctx.rises()
    per_q = r.groupby("question_id", sort=False)[["base", "misaligned_change", "control_change", "em_rise"]].mean()
    top = per_q.sort_values("em_rise", ascending=False).head(c.questions.n_samples)
    qs = ctx.qs("eval")
    chosen = [qs[q] for q in top.index]
    who = {"base": "base", "misaligned": ctx.reference.name, "control": ctx.control.name}
    answers = {k: generate_chat(ctx.lm(v), [q.messages(0) for q in chosen], c.max_new_tokens, temperature=0.7,
                                top_p=0.9, seed=c.seed) for k, v in who.items()}
    rows = [{"question_id": q.id, "question": q.paraphrases[0], "margin_base": float(top.loc[q.id, "base"]),
             "margin_misaligned": float(top.loc[q.id, "base"] + top.loc[q.id, "misaligned_change"]),
             "margin_control": float(top.loc[q.id, "base"] + top.loc[q.id, "control_change"]),
             **{k: answers[k][i] for k in who}} for i, q in enumerate(chosen)]
    pd.DataFrame(rows).to_parquet(d / "samples.parquet", index=False)
    findings = [f"Answers (temperature 0.7, top-p 0.9, seed {c.seed}, {c.max_new_tokens} new tokens) to the "
                f"{len(rows)} questions whose EM-specific rise is largest: " +
                "; ".join(f"{x['question_id']} {x['margin_base']:+.3f} → {x['margin_misaligned']:+.3f} "
                          f"(control {x['margin_control']:+.3f})" for x in rows) + "."]
    return section("Answers before and after", findings,
                   {f"{x['question_id']}_rise": x["margin_misaligned"] - x["margin_base"] for x in rows},
                   "the aligned-control model answers the same questions with the same seed",
                   "single samples: illustrations, not evidence (the margins above carry the statistics)", rows=rows)
