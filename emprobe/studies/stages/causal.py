"""Stages ``patch``, ``steer``, ``ablate``: causal checks on the questions whose margin rose most, scored with their
*next* reference pair (so selection noise does not carry into the measurement). Each section says first when its
control beats its effect or the effect has the wrong sign."""

from __future__ import annotations

from pathlib import Path

from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import result_section


def stages(ctx) -> list[Stage]:
    c = ctx.cfg
    common = {"seed": c.seed, "tok": c.max_new_tokens, "n": c.questions.n_samples}
    return [
        Stage("patch", "activation patching", lambda d: patch(ctx, d), 45, common, ("setup", "finetune", "margins")),
        Stage("steer", "steering", lambda d: steer(ctx, d), 40, {**common, "alphas": list(c.steer_alphas)},
              ("margins", "directions")),
        Stage("ablate", "directional ablation", lambda d: ablate(ctx, d), 40, common,
              ("setup", "finetune", "margins", "directions")),
    ]


def _n_samples(ctx) -> int:
    return 0 if ctx.cfg.preset == "fast" else 1


def patch(ctx, d: Path) -> dict:
    from emprobe.analysis.patch import patch as patch_verb

    c = ctx.cfg
    n = ctx.lm("base").n_layers
    fast = c.preset == "fast"
    layers = sorted({n // 3, 2 * n // 3} if fast else {n // 4, n // 2, 3 * n // 4})
    spans = ("last_prompt",) if fast else ("last_prompt", "prompt")
    res = patch_verb(ctx.lm("base"), ctx.lm(ctx.reference.name), ctx.qs("causal"), layers=layers, spans=spans,
                     directions=("base→tuned",), batch_size=c.eval_batch_size, seed=c.seed)
    return result_section(ctx, res, d)


def steer(ctx, d: Path) -> dict:
    from emprobe.analysis.steer import steer as steer_verb

    c = ctx.cfg
    # the raw mean-diff vector: alpha = 1 adds the whole misaligned-minus-aligned mean difference, a scale that
    # carries over between models (a unit vector at a fixed alpha is large for SmolLM2, tiny for Gemma)
    res = steer_verb(ctx.lm("base"), ctx.direction("mean_diff"), ctx.qs("causal"), alphas=list(c.steer_alphas),
                     unit=False, n_random=5, random_alphas=[max(c.steer_alphas)], n_samples=_n_samples(ctx),
                     max_new_tokens=c.max_new_tokens, batch_size=c.eval_batch_size, seed=c.seed)
    return result_section(ctx, res, d)


def ablate(ctx, d: Path) -> dict:
    from emprobe.analysis.ablate import ablate as ablate_verb

    c = ctx.cfg
    heldout = ctx.qs("heldout") if ctx.path("setup", "heldout.yaml").is_file() else None
    res = ablate_verb(ctx.lm("base"), ctx.lm(ctx.reference.name), ctx.direction("mean_diff"), ctx.qs("causal"),
                      heldout=heldout, n_random=5, random_in_domain=False, n_samples=_n_samples(ctx),
                      max_new_tokens=c.max_new_tokens, batch_size=c.eval_batch_size, seed=c.seed)
    return result_section(ctx, res, d)
