"""Stage ``directions``: base-model misalignment directions — mean-diff (misaligned vs aligned reference answers,
``response_mean``) and persona (misaligned vs aligned persona system prompts, ``last_prompt``) — at every layer,
each scored by grouped cross-validated AUROC against random directions."""

from __future__ import annotations

from pathlib import Path

from emprobe.result import new_figure, save_figure
from emprobe.studies.context import section
from emprobe.studies.pipeline import Stage

SPECS = {"mean_diff": ("eval", "references", "response_mean"), "persona": ("persona", "personas", "last_prompt")}


def stage(ctx) -> Stage:
    return Stage("directions", "base-model directions (mean-diff, persona)", lambda d: run(ctx, d), 30,
                 {"model": ctx.cfg.model, "seed": ctx.cfg.seed}, ("setup",))


def run(ctx, d: Path) -> dict:
    from emprobe.analysis.stats.subspace import cosine
    from emprobe.api import extract
    from emprobe.probes import fit_probe

    c = ctx.cfg
    fitted, numbers, findings = {}, {}, []
    fig, (ax,) = new_figure(1)
    for method, (which, contrast, pos) in SPECS.items():
        store = extract(ctx.lm("base"), ctx.qs(which), contrast=contrast, positions=[pos], first_paraphrase=True,
                        batch_size=c.eval_batch_size)
        res = fit_probe(store, method, pos, n_splits=5, n_random=20, seed=c.seed)
        res.direction.save(d / method, overwrite=True)
        res.table.to_parquet(d / f"{method}_cv.parquet", index=False)
        fitted[method], b = res.direction, res.best()
        numbers.update({f"{method}_layer": int(b["layer"]), f"{method}_auroc": b["auroc"],
                        f"{method}_auroc_sd": b["auroc_std"], f"{method}_random_auroc": b["random_auroc"],
                        f"{method}_random_p95": b["random_auroc_p95"]})
        findings.append(f"{method} direction ({contrast}, {pos}, {len(store.groups)} prompts): best layer "
                        f"{int(b['layer'])}, held-out AUROC {b['auroc']:.3f} ± {b['auroc_std']:.3f} (grouped 5-fold) vs "
                        f"{b['random_auroc']:.3f} for random directions (95th percentile {b['random_auroc_p95']:.3f}).")
        if b["auroc"] <= b["random_auroc_p95"]:
            findings.insert(0, f"Random directions match the {method} direction: its best AUROC {b['auroc']:.3f} is "
                               f"within the random 95th percentile {b['random_auroc_p95']:.3f}.")
        ax.plot(res.table.layer, res.table.auroc, marker="o", ms=3, label=method)
        ax.plot(res.table.layer, res.table.random_auroc_p95, ls=":", lw=0.8, label=f"{method}: random p95")
    layer = numbers["mean_diff_layer"]
    cos = cosine(fitted["mean_diff"].vector(layer).numpy(), fitted["persona"].vector(layer).numpy())
    numbers["cosine_mean_diff_persona"] = cos
    findings.append(f"At layer {layer} the two directions have cosine {cos:.3f}.")
    ax.set(xlabel="layer (output of block l)", ylabel="held-out AUROC", title="base-model directions")
    ax.legend(fontsize=7)
    save_figure(fig, d / "plot.png")
    return section("Misalignment directions in the base model", findings, numbers,
                   "20 random unit directions scored the same way (per fold)",
                   "sd of AUROC over grouped folds (questions held out)", [ctx.rel(d / "plot.png")])
