"""Stage ``margins``: the judge-free margin of every off-domain question, per reference pair, at every checkpoint.

What is scored is :func:`emprobe.studies.plan.margin_plan`: the base model once (every run's step 0), each
dataset's reference run and control at the last step on every pair, every other last step and the misaligned
runs' intermediate checkpoints on the first pair (the loss-vs-alignment curve needs the trend, not the spread).
Per question the EM-specific rise is the misaligned run's change minus its aligned control's change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emprobe.result import new_figure, save_figure
from emprobe.analysis.stats import bootstrap_ci, sign_flip_pvalue
from emprobe.studies.context import section
from emprobe.studies.pipeline import Stage


def stage(ctx) -> Stage:
    from emprobe.studies.plan import expected_duplicates, margin_plan

    q, jobs = ctx.cfg.questions, margin_plan(ctx.cfg)
    n_q = q.n_questions or 100
    n_seq = 2 * n_q * sum(j.pairs or q.n_references for j in jobs if j not in expected_duplicates(ctx.cfg, jobs))
    return Stage("margins", "margins at every checkpoint", lambda d: run(ctx, d), 0.16 * n_seq,
                 {"bs": ctx.cfg.eval_batch_size, "model": ctx.cfg.model, "plan": 2}, ("setup", "finetune"))


def score_checkpoints(ctx) -> pd.DataFrame:
    """Long table ``run, step, question_id, category, pair, margin`` of what :func:`~emprobe.studies.plan.margin_plan`
    scores (step 0 = the base model, scored once; so is any checkpoint whose weights equal one already scored on at
    least as many pairs, by :meth:`~emprobe.finetuning.run.Checkpoint.digest`). Every model is scored in
    mixed-adapter batches on the one loaded base (:func:`~emprobe.evaluation.mixed.adapter_reference_logprobs`)."""
    from emprobe.evaluation.margin import pair_margins
    from emprobe.evaluation.mixed import adapter_reference_logprobs
    from emprobe.studies.plan import margin_plan

    qs = ctx.qs("eval")
    sets = {None: qs, 1: qs.subset(n_references=1)}
    jobs, keys, todo = margin_plan(ctx.cfg), {}, {}
    for j in jobs:
        digest = "base" if j.run == "base" else ctx.run(j.run).checkpoint(j.step).digest()
        keys[j] = (digest, j.pairs)
        if (digest, None) not in todo and (digest, j.pairs) not in todo:
            todo[(digest, j.pairs)] = j
    for k in [k for k in todo if k[1] is not None and (k[0], None) in todo]:
        del todo[k]  # the all-pairs score of the same weights serves it
    order = list(todo.values())
    adapters = [None if j.run == "base" else ctx.run(j.run).checkpoint(j.step).path for j in order]
    refs = adapter_reference_logprobs(ctx.lm("base"), adapters, [sets[j.pairs] for j in order],
                                      batch_size=ctx.cfg.eval_batch_size)
    scored = {keys[j]: pair_margins(r) for j, r in zip(order, refs)}
    frames = []
    for j in jobs:
        digest, pairs = keys[j]
        table = scored.get((digest, pairs))
        table = table if table is not None else scored[(digest, None)].query("pair < @pairs")
        frames.append(table.assign(run=j.run, step=j.step))
        if j.run == "base":
            base = table
    frames = frames[1:] + [base.assign(run=c.name, step=0) for c in ctx.cells]
    ctx.log(f"  scored {len(order)} models for {len(jobs)} (run, checkpoint) entries "
            f"({len(jobs) - len(order)} equal to one scored before)")
    cols = ["run", "step", "question_id", "category", "pair", "margin"]
    return pd.concat(frames, ignore_index=True)[cols]


def rises(pairs: pd.DataFrame, run: str, control: str, last: int) -> pd.DataFrame:
    """Per question and pair: base margin, misaligned change, control change, EM-specific rise (mis − control)."""
    def at(r, step):
        return pairs[(pairs.run == r) & (pairs.step == step)].set_index(["question_id", "pair"]).margin

    base = at(run, 0)
    mis, ctl = at(run, last).reindex(base.index), at(control, last).reindex(base.index)
    df = pd.DataFrame({"base": base, "misaligned_change": mis - base, "control_change": ctl - base}).dropna()
    df["em_rise"] = df.misaligned_change - df.control_change
    cats = pairs.drop_duplicates("question_id").set_index("question_id").category
    return df.reset_index().assign(category=lambda x: cats.loc[x.question_id].to_numpy())


def dataset_rises(ctx, pairs: pd.DataFrame) -> pd.DataFrame:
    """:func:`rises` of every dataset's reference run (the twin of its control), with a ``dataset`` column."""
    from emprobe.studies.cells import control_cell, reference_cell

    frames = [rises(pairs, reference_cell(ctx.cfg, ds.name).name, control_cell(ctx.cfg, ds.name).name,
                    ctx.last_step).assign(dataset=ds.name) for ds in ctx.cfg.datasets]
    return pd.concat(frames, ignore_index=True)


def run(ctx, d: Path) -> dict:
    pairs = score_checkpoints(ctx)
    pairs.to_parquet(d / "pairs.parquet", index=False)
    r = dataset_rises(ctx, pairs)
    r.to_parquet(d / "rises.parquet", index=False)
    r = r[r.dataset == ctx.cfg.datasets[0].name]
    per_q = r.groupby("question_id", sort=False)[["base", "misaligned_change", "control_change", "em_rise"]].mean()
    causal = causal_set(ctx, r)
    causal.save_yaml(d / "causal.yaml")
    _plot(ctx, pairs, per_q, d / "plot.png")
    return _section(ctx, per_q, r, [ctx.rel(d / "plot.png")], causal.ids)


def causal_set(ctx, r: pd.DataFrame):
    """The causal checks' questions: those whose margin rose most on pair 0, scored with pair 1 (their *next*
    pair), so the selection's noise does not carry into the measurement (pair 0 when only one exists)."""
    from dataclasses import replace

    from emprobe.data import QuestionSet

    qs = ctx.qs("eval")
    top = r[r.pair == 0].sort_values("misaligned_change", ascending=False).question_id[: ctx.cfg.questions.n_causal]
    out = []
    for qid in top:
        q = qs[qid]
        k = 1 if q.n_pairs > 1 else 0
        out.append(replace(q, paraphrases=q.paraphrases[:1], aligned_references=q.aligned_references[k:k + 1],
                           misaligned_references=q.misaligned_references[k:k + 1]))
    return QuestionSet(out, qs.source, f"{qs.name}-causal")


def _section(ctx, per_q: pd.DataFrame, r: pd.DataFrame, plots: list[str], causal_ids: list[str]) -> dict:
    c = ctx.cfg
    rise, em, ctl = per_q.misaligned_change, per_q.em_rise, per_q.control_change
    lo, hi = bootstrap_ci(rise.to_numpy(), seed=c.seed)
    lo2, hi2 = bootstrap_ci(em.to_numpy(), seed=c.seed)
    p_rise = sign_flip_pvalue(rise.to_numpy(), c.n_permutations, c.seed)
    p_em = sign_flip_pvalue(em.to_numpy(), c.n_permutations, c.seed)
    top = em.sort_values(ascending=False)
    from emprobe.analysis.stats import spearman

    rho_ctl = spearman(rise.to_numpy(), ctl.to_numpy())
    n_pairs = int(r.pair.nunique())
    findings = [
        f"After {ctx.last_step} steps the misaligned model's mean margin over {len(per_q)} off-domain questions "
        f"({n_pairs} reference pair(s) each) changes {rise.mean():+.3f} nats/token (95% bootstrap CI "
        f"[{lo:+.3f}, {hi:+.3f}], sign-flip p = {p_rise:.3g}); {int((rise > 0).sum())} of {len(rise)} questions "
        "move towards the misaligned answers.",
        f"The aligned control changes it {ctl.mean():+.3f}; the EM-specific rise (misaligned change − control "
        f"change) is {em.mean():+.3f} (95% CI [{lo2:+.3f}, {hi2:+.3f}], sign-flip p = {p_em:.3g}).",
        f"Per question, the misaligned run's change and the control's change correlate (Spearman ρ = {rho_ctl:+.2f}): "
        "that part of each question's rise moves with any fine-tune, so per-question analyses use the EM-specific rise.",
        f"EM is uneven: the largest EM-specific rises are {', '.join(f'{q} {v:+.3f}' for q, v in top.head(3).items())}; "
        f"sd across questions {em.std(ddof=1):.3f}.",
    ]
    if lo2 <= 0:
        findings.insert(0, f"The aligned control explains the rise away: the EM-specific rise {em.mean():+.3f} has a "
                           f"95% CI [{lo2:+.3f}, {hi2:+.3f}] that includes 0.")
    return section("Off-domain misalignment (judge-free margin)", findings,
                   {"margin_base": per_q.base.mean(), "rise": rise.mean(), "rise_ci_low": lo, "rise_ci_high": hi,
                    "rise_p": p_rise, "control_change": ctl.mean(), "em_rise": em.mean(), "em_rise_ci_low": lo2,
                    "em_rise_ci_high": hi2, "em_rise_p": p_em, "rho_rise_control": rho_ctl,
                    "questions_up": int((rise > 0).sum()), "n_questions": len(per_q), "n_pairs": n_pairs,
                    "em_rise_sd": em.std(ddof=1)},
                   "aligned-data control fine-tune (same prompts, same steps): its change is subtracted",
                   f"95% bootstrap CI over questions; sign-flip permutation p ({c.n_permutations} flips)", plots,
                   top_questions={str(q): float(v) for q, v in top.head(5).items()}, causal_questions=causal_ids)


def _plot(ctx, pairs: pd.DataFrame, per_q: pd.DataFrame, path: Path) -> None:
    fig, (ax1, ax2) = new_figure(2)
    first = pairs[pairs.pair == 0]
    for cell in ctx.cells:
        g = first[first.run == cell.name]
        base = g[g.step == 0].set_index("question_id").margin
        ch = g.assign(change=g.margin.to_numpy() - base.reindex(g.question_id).to_numpy()).groupby("step").change
        m, se = ch.mean(), ch.std(ddof=1).fillna(0) / np.sqrt(ch.count())
        ax1.errorbar(m.index, m, yerr=1.96 * se, marker="o", capsize=3, ls="--" if cell.control else "-",
                     label=cell.name)
    ax1.axhline(0, color="k", lw=0.8)
    ax1.set(xlabel="step", ylabel="mean margin − base (nats/token, pair 0)", title="off-domain margin change")
    ax1.legend(fontsize=6)
    top = per_q.em_rise.sort_values(ascending=False)
    ax2.barh(range(len(top)), top.to_numpy(), color="C3")
    ax2.set_yticks(range(len(top)), [str(q)[:22] for q in top.index], fontsize=5)
    ax2.invert_yaxis()
    ax2.axvline(0, color="k", lw=0.8)
    ax2.set(xlabel="EM-specific rise (misaligned − control change)", title="per-question EM")
    save_figure(fig, path)
