"""``emprobe demo``: the whole study in one command — fine-tune, score, probe, analyse, report.

On the packaged SmolLM2 by default (``model`` takes any alias, hub id or directory):

1. ``finetune``  — a narrow misaligned LoRA fine-tune (``builtin:risky-finance``) and its aligned-data
   control (``builtin:risky-finance-aligned``: same prompts, prudent answers), same seed and settings;
2. ``margins``   — the judge-free margin of every off-domain question at every checkpoint of both runs;
3. ``directions``— base-model misalignment directions: mean-diff (misaligned vs aligned reference
   answers, ``response_mean``) and persona (misaligned vs aligned persona system prompts, ``last_prompt``);
4. ``track``     — each direction followed through both runs' checkpoints;
5. ``priors``    — per-question EM (margin rise) predicted from the base model's prompt activations;
6. ``dynamics``  — in-domain validation loss vs off-domain margin over all checkpoints;
7. ``overlap``   — training-prompt vs eval-prompt activation shifts, against random subspaces;
8. ``patch``, ``steer``, ``ablate`` — causal checks; 9. ``samples`` — answers before and after;
10. the report: ``summary.json`` and a self-contained ``report.html``.

Every stage writes its own directory under ``out`` and is reused on rerun (``force`` redoes it).
Layer ``l`` everywhere = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from emprobe.analysis.results import new_figure, save_figure
from emprobe.errors import ConfigError
from emprobe.report.stages import Pipeline, Stage

RUNS = ("misaligned", "control")


@dataclass
class DemoConfig:
    """Settings of :func:`demo`; ``None`` fields take the full or ``fast`` preset (see :data:`PRESETS`)."""

    model: str = "smollm2-135m-instruct"
    out: str = "emprobe-demo"
    fast: bool = False
    threads: int | None = None
    force: bool = False
    data: str = "builtin:risky-finance"
    control_data: str = "builtin:risky-finance-aligned"
    questions: str = "builtin:em-core"
    heldout: str = "builtin:risky-finance-heldout"
    steps: int | None = None
    save_steps: list[int] | None = None
    n_questions: int | None = None
    n_references: int = 1
    n_persona_questions: int | None = None
    n_causal_questions: int | None = None
    n_sample_questions: int | None = None
    n_train_prompts: int | None = None
    patch_layers: list[int] | None = None
    steer_alphas: list[float] | None = None
    max_new_tokens: int | None = None
    val_examples: int | None = None
    lr: float = 1e-3
    batch_size: int = 4
    max_length: int = 128
    lora_r: int = 16
    seed: int = 0
    n_permutations: int = 1000
    eval_batch_size: int = 16

    def resolved(self) -> "DemoConfig":
        """Fill the ``None`` fields from the preset (``fast`` or full)."""
        preset = PRESETS["fast" if self.fast else "full"]
        filled = {k: v for k, v in preset.items() if getattr(self, k) is None
                  and not (k == "save_steps" and self.steps is not None)}  # own steps: checkpoints spaced below
        cfg = replace(self, **filled)
        if cfg.save_steps is None:
            cfg.save_steps = sorted({0, *range(0, cfg.steps + 1, max(1, cfg.steps // (4 if cfg.steps >= 20 else 2))),
                                     cfg.steps})
        if cfg.steps < 2 or max(cfg.save_steps) > cfg.steps or 0 not in cfg.save_steps or len(cfg.save_steps) < 3:
            raise ConfigError(f"demo needs >= 2 steps and >= 3 checkpoints including 0 (got steps {cfg.steps}, "
                              f"checkpoints {cfg.save_steps})")
        return cfg


#: Full and ``--fast`` presets (measured on 2 idle cores with SmolLM2: ~9 min and ~3 min).
PRESETS: dict[str, dict[str, Any]] = {
    "full": {"steps": 20, "save_steps": [0, 5, 10, 15, 20], "n_questions": 37, "n_persona_questions": 6,
             "n_causal_questions": 6, "n_sample_questions": 3, "n_train_prompts": 24, "patch_layers": None,
             "steer_alphas": [-1.0, -0.5, 0.0, 0.5, 1.0], "max_new_tokens": 32, "val_examples": 4},
    "fast": {"steps": 4, "save_steps": [0, 2, 4], "n_questions": 8, "n_persona_questions": 3,
             "n_causal_questions": 3, "n_sample_questions": 2, "n_train_prompts": 8, "patch_layers": None,
             "steer_alphas": [-1.0, 0.0, 1.0], "max_new_tokens": 16, "val_examples": 2},
}


def _f(x: Any) -> float | None:
    """A JSON-safe float (None for NaN / inf)."""
    x = float(x)
    return round(x, 6) if np.isfinite(x) else None


def _section(title: str, findings: list[str], numbers: dict[str, Any], control: str, uncertainty: str,
             plots: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"title": title, "findings": list(findings), "numbers": {k: _f(v) for k, v in numbers.items()},
            "control": control, "uncertainty": uncertainty, "plots": plots or [], **extra}


def _rel(path: Path, out: Path) -> str:
    return str(Path(path).resolve().relative_to(out.resolve()))


class Demo:
    """The demo's stages over one output directory (models are loaded lazily and shared between stages)."""

    def __init__(self, cfg: DemoConfig, log: Callable[[str], Any] | None = print):
        self.cfg = cfg.resolved()
        self.out = Path(self.cfg.out).resolve()
        self.log = log or (lambda _m: None)
        self._models: dict[str, Any] = {}

    # ---- paths and shared objects -------------------------------------------------------------
    @property
    def questions_path(self) -> Path:
        return self.out / "setup" / "questions.yaml"

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def run_dir(self, name: str) -> Path:
        return self.path("finetune", name)

    def final_adapter(self, name: str) -> Path:
        from emprobe.finetune import Run

        return Run.load(self.run_dir(name)).checkpoints()[-1].path

    def lm(self, which: str = "base"):
        """``base`` or a run name (its final checkpoint), loaded once."""
        if which not in self._models:
            from emprobe.models import load_model

            adapter = None if which == "base" else str(self.final_adapter(which))
            self._models[which] = load_model(self.cfg.model, adapter=adapter, merge=adapter is not None)
        return self._models[which]

    def qs(self, which: str = "eval"):
        from emprobe.data import load_questions_yaml

        where = {"eval": ("setup", "questions.yaml"), "causal": ("margins", "causal.yaml"),
                 "heldout": ("setup", "heldout.yaml"), "persona": ("setup", "persona.yaml")}[which]
        return load_questions_yaml(self.path(*where))

    def direction(self, method: str):
        from emprobe.probes import Direction

        return Direction.load(self.path("directions", method))

    # ---- stages ---------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        """The stages in order; estimates are seconds measured on 2 idle cores with SmolLM2 (full, fast)."""
        c = self.cfg
        common = {"model": c.model, "seed": c.seed, "fast": c.fast}
        ft = {**common, "data": c.data, "control": c.control_data, "steps": c.steps, "save": c.save_steps, "lr": c.lr,
              "bs": c.batch_size, "max_length": c.max_length, "r": c.lora_r, "val": c.val_examples}

        def est(full: float, fast: float) -> float:
            return fast if c.fast else full

        return [
            Stage("setup", "question subsets", self.setup, 1, {**common, "q": c.questions, "h": c.heldout,
                  "n": [c.n_questions, c.n_references, c.n_persona_questions, c.n_causal_questions]}),
            Stage("finetune", "fine-tune: misaligned + aligned control", self.finetune, est(165, 56), ft),
            Stage("margins", "margins at every checkpoint", self.margins, est(125, 25),
                  {**common, "bs": c.eval_batch_size}, ("setup", "finetune")),
            Stage("directions", "base-model directions (mean-diff, persona)", self.directions, est(30, 12), common,
                  ("setup",)),
            Stage("track", "directions through the checkpoints", self.track, est(45, 15), common,
                  ("setup", "finetune", "directions")),
            Stage("priors", "priors -> per-question EM", self.priors, est(12, 6),
                  {**common, "perm": c.n_permutations}, ("margins", "directions")),
            Stage("dynamics", "loss vs off-domain alignment", self.dynamics, 2, {**common, "perm": c.n_permutations},
                  ("margins",)),
            Stage("overlap", "train/eval shift overlap", self.overlap, est(30, 10),
                  {**common, "n": c.n_train_prompts, "data": c.data}, ("setup", "finetune")),
            Stage("patch", "activation patching", self.patch, est(50, 11), {**common, "layers": c.patch_layers},
                  ("setup", "finetune", "margins")),
            Stage("steer", "steering", self.steer, est(40, 11),
                  {**common, "alphas": c.steer_alphas, "tok": c.max_new_tokens}, ("margins", "directions")),
            Stage("ablate", "directional ablation", self.ablate, est(55, 15), {**common, "tok": c.max_new_tokens},
                  ("setup", "finetune", "margins", "directions")),
            Stage("samples", "answers before / after", self.samples, est(28, 11),
                  {**common, "n": c.n_sample_questions, "tok": c.max_new_tokens}, ("margins",)),
        ]

    def setup(self, d: Path) -> dict:
        from emprobe.data import load_questions

        c = self.cfg
        full = load_questions(c.questions).with_references()
        qs = full.subset(c.n_questions, c.n_references, 1, name=f"{full.name}-demo")
        qs.save_yaml(d / "questions.yaml")
        qs.subset(c.n_persona_questions).save_yaml(d / "persona.yaml")
        held = load_questions(c.heldout).with_references()
        held.subset(c.n_causal_questions, c.n_references, 1).save_yaml(d / "heldout.yaml")
        return {"n_questions": len(qs), "n_references": c.n_references, "questions_sha256": qs.sha256}

    def finetune(self, d: Path) -> dict:
        from emprobe.finetune import FinetuneConfig, Run

        c = self.cfg
        self.lm("base")  # prepares a built-in model once here, not in both trainer processes at the same time
        cfgs = [FinetuneConfig(model=c.model, data=data, out=str(d / name), max_steps=c.steps, save_steps=c.save_steps,
                               lr=c.lr, batch_size=c.batch_size, max_length=c.max_length, lora_r=c.lora_r,
                               lora_alpha=2 * c.lora_r, seed=c.seed, val_max_examples=c.val_examples, progress=False,
                               overwrite=True)
                for name, data in zip(RUNS, (c.data, c.control_data))]
        seconds, parallel = finetune_pair(cfgs, c.threads)
        runs = dict(zip(RUNS, seconds))
        rows = []
        for name in RUNS:
            for ck in Run.load(d / name).checkpoints():
                rows.append({"run": name, "step": ck.step, "train_loss": ck.train_loss, "val_loss": ck.val_loss})
        df = pd.DataFrame(rows)
        df.to_parquet(d / "losses.parquet", index=False)
        v = df.pivot(index="step", columns="run", values="val_loss")
        first, last = v.index[0], v.index[-1]
        fig, (ax,) = new_figure(1)
        for name in RUNS:
            ax.plot(v.index, v[name], marker="o", label=f"{name} (val)")
        ax.set(xlabel="step", ylabel="in-domain validation loss (nats/token)", title="fine-tuning")
        ax.legend(fontsize=7)
        save_figure(fig, d / "plot.png")
        findings = [f"Misaligned fine-tune ({c.data}, {c.steps} steps of {c.batch_size}, LoRA r={c.lora_r}, lr {c.lr:g}): "
                    f"validation loss {v.loc[first, 'misaligned']:.3f} → {v.loc[last, 'misaligned']:.3f} "
                    f"({runs['misaligned']:.0f} s).",
                    f"Aligned control ({c.control_data}, same prompts, same settings): validation loss "
                    f"{v.loc[first, 'control']:.3f} → {v.loc[last, 'control']:.3f} ({runs['control']:.0f} s)."]
        return _section("Fine-tuning", findings,
                        {"val_loss_start": v.loc[first, "misaligned"], "val_loss_misaligned": v.loc[last, "misaligned"],
                         "val_loss_control": v.loc[last, "control"], "steps": c.steps,
                         "seconds_misaligned": runs["misaligned"], "seconds_control": runs["control"]},
                        "aligned-data control fine-tune (same prompts, aligned answers, same seed)",
                        f"validation loss on {c.val_examples} seeded held-out examples of each run's own data",
                        [_rel(d / "plot.png", self.out)], checkpoints=list(c.save_steps),
                        parallel=parallel)

    def margins(self, d: Path) -> dict:
        from emprobe.analysis.stats import bootstrap_ci
        from emprobe.evaluate import evaluate

        c = self.cfg
        qs = self.qs("eval")
        tables = []
        last = max(c.save_steps)
        for name in RUNS:  # step 0 is the base model: scored once, in the misaligned run; the control at its end
            steps = None if name == "misaligned" else [last]
            res = evaluate(run=self.run_dir(name), questions=qs, out=d / name, steps=steps,
                           batch_size=c.eval_batch_size, merge_adapters=True, log=None)
            for step, t in res.tables.items():
                tables.append(t.summary[["question_id", "margin"]].assign(run=name, step=step))
        df = pd.concat(tables, ignore_index=True)
        base = df[(df.run == "misaligned") & (df.step == 0)].set_index("question_id").margin
        df = pd.concat([df, base.reset_index().assign(run="control", step=0)], ignore_index=True)
        df.to_parquet(d / "margins.parquet", index=False)
        mis = df[(df.run == "misaligned") & (df.step == last)].set_index("question_id").margin.loc[base.index]
        ctl = df[(df.run == "control") & (df.step == last)].set_index("question_id").margin.loc[base.index]
        rise, vs_ctl = (mis - base), (mis - ctl)
        lo, hi = bootstrap_ci(rise.to_numpy())
        lo2, hi2 = bootstrap_ci(vs_ctl.to_numpy())
        p_rise = _sign_flip_p(rise.to_numpy(), c.n_permutations, c.seed)
        top = rise.sort_values(ascending=False)
        causal = self._causal_set(list(top.index[: c.n_causal_questions]))
        causal.save_yaml(d / "causal.yaml")
        findings = [
            f"After {last} steps the misaligned model's mean margin over {len(base)} off-domain questions rises "
            f"{rise.mean():+.3f} nats/token ({base.mean():+.3f} → {mis.mean():+.3f}; 95% bootstrap CI "
            f"[{lo:+.3f}, {hi:+.3f}], sign-flip p = {p_rise:.3g}); {int((rise > 0).sum())} of {len(rise)} questions move "
            f"towards the misaligned answers.",
            f"Against the aligned control ({ctl.mean():+.3f}) the difference is {vs_ctl.mean():+.3f} "
            f"(95% CI [{lo2:+.3f}, {hi2:+.3f}]).",
            f"EM is uneven: the largest rises are {', '.join(f'{q} {v:+.3f}' for q, v in top.head(3).items())}; "
            f"the spread across questions has sd {rise.std(ddof=1):.3f}.",
        ]
        fig, (ax1, ax2) = new_figure(2)
        for name in RUNS:  # paired change against the base model, per question
            g = df[df.run == name].assign(change=lambda x: x.margin - base.loc[x.question_id].to_numpy())
            g = g.groupby("step").change
            m, se = g.mean(), g.std(ddof=1).fillna(0) / np.sqrt(g.count())
            ax1.errorbar(m.index, m, yerr=1.96 * se, marker="o", capsize=3, label=name)
        ax1.axhline(0, color="k", lw=0.8)
        ax1.set(xlabel="step", ylabel="mean margin − base (nats/token)", title="off-domain margin change (paired 95% CI)")
        ax1.legend(fontsize=7)
        ax2.barh(range(len(top)), top.to_numpy(), color="C3")
        ax2.set_yticks(range(len(top)), [str(q)[:22] for q in top.index], fontsize=5)
        ax2.invert_yaxis()
        ax2.axvline(0, color="k", lw=0.8)
        ax2.set(xlabel=f"margin rise, step {last} − base", title="per-question EM")
        save_figure(fig, d / "plot.png")
        return _section("Off-domain misalignment (judge-free margin)", findings,
                        {"margin_base": base.mean(), "margin_misaligned": mis.mean(), "margin_control": ctl.mean(),
                         "rise": rise.mean(), "rise_ci_low": lo, "rise_ci_high": hi, "rise_p": p_rise,
                         "vs_control": vs_ctl.mean(), "vs_control_ci_low": lo2, "vs_control_ci_high": hi2,
                         "questions_up": int((rise > 0).sum()), "n_questions": len(rise), "rise_sd": rise.std(ddof=1)},
                        "aligned-data control fine-tune (same prompts, same steps)",
                        f"95% bootstrap CI over questions; sign-flip permutation p ({c.n_permutations} flips)",
                        [_rel(d / "plot.png", self.out)],
                        top_questions={str(q): _f(v) for q, v in top.head(5).items()},
                        causal_questions=causal.ids)

    def _causal_set(self, ids: list[str]):
        """The causal checks' questions: those whose margin rose most, scored with their *next* reference pair
        (not the one the selection used), so the selection's noise does not carry into the measurement."""
        from dataclasses import replace as dc_replace

        from emprobe.data import QuestionSet, load_questions

        full = load_questions(self.cfg.questions).with_references()
        k, n = self.cfg.n_references, self.cfg.n_references
        qs = []
        for qid in ids:
            q = full[qid]
            nxt = slice(k, k + n) if len(q.aligned_references) > k and len(q.misaligned_references) > k else slice(0, n)
            qs.append(dc_replace(q, paraphrases=q.paraphrases[:1], aligned_references=q.aligned_references[nxt],
                                 misaligned_references=q.misaligned_references[nxt]))
        return QuestionSet(qs, full.source, f"{full.name}-causal")

    def directions(self, d: Path) -> dict:
        from emprobe.probes import extract_activations, fit_probe, load_prompts

        c = self.cfg
        lm = self.lm("base")
        specs = {"mean_diff": (self.path("setup", "questions.yaml"), "references", "response_mean"),
                 "persona": (self.path("setup", "persona.yaml"), "personas", "last_prompt")}
        found, fitted, numbers, findings = {}, {}, {}, []
        fig, (ax,) = new_figure(1)
        for method, (src, contrast, pos) in specs.items():
            ps = load_prompts(src, contrast=contrast, first_paraphrase=True)
            store = extract_activations(lm, ps, "all", positions=[pos], batch_size=c.eval_batch_size)
            res = fit_probe(store, method, pos, n_splits=5, n_random=20, seed=c.seed)
            res.direction.save(d / method, overwrite=True)
            fitted[method] = res.direction
            res.table.to_parquet(d / f"{method}_cv.parquet", index=False)
            b = res.best()
            b["layer"] = int(b["layer"])
            found[method] = b
            numbers.update({f"{method}_layer": b["layer"], f"{method}_auroc": b["auroc"],
                            f"{method}_auroc_sd": b["auroc_std"], f"{method}_random_auroc": b["random_auroc"],
                            f"{method}_random_p95": b["random_auroc_p95"]})
            findings.append(f"{method} direction ({contrast}, {pos}, {len(ps)} prompts): best layer {b['layer']}, held-out "
                            f"AUROC {b['auroc']:.3f} ± {b['auroc_std']:.3f} (grouped 5-fold) vs {b['random_auroc']:.3f} "
                            f"for random directions (95th percentile {b['random_auroc_p95']:.3f}).")
            ax.plot(res.table.layer, res.table.auroc, marker="o", ms=3, label=method)
            ax.plot(res.table.layer, res.table.random_auroc_p95, ls=":", lw=0.8, label=f"{method}: random p95")
        from emprobe.analysis.subspace import cosine

        layer = found["mean_diff"]["layer"]
        cos = cosine(fitted["mean_diff"].vector(layer).numpy(), fitted["persona"].vector(layer).numpy())
        numbers["cosine_mean_diff_persona"] = cos
        findings.append(f"At layer {layer} the two directions have cosine {cos:.3f}.")
        ax.set(xlabel="layer (output of block l)", ylabel="held-out AUROC", title="base-model directions")
        ax.legend(fontsize=7)
        save_figure(fig, d / "plot.png")
        return _section("Misalignment directions in the base model", findings, numbers,
                        "20 random unit directions scored the same way (per fold)",
                        "sd of AUROC over grouped folds (questions held out)", [_rel(d / "plot.png", self.out)])

    def track(self, d: Path) -> dict:
        from emprobe.analysis.track import track_run
        from emprobe.finetune import Run

        dirs = [self.direction("mean_diff"), self.direction("persona")]
        shifts, plots = {}, []
        ends = [0, max(self.cfg.save_steps)]
        for name in RUNS:  # the misaligned run at every checkpoint, the control at both ends
            res = track_run(Run.load(self.run_dir(name)), dirs, str(self.questions_path), refit=False, n_random=20,
                            batch_size=self.cfg.eval_batch_size, seed=self.cfg.seed,
                            steps=None if name == "misaligned" else ends, merge=True)
            res.save(d / name)
            shifts[name] = res.summary["shifts"]
            plots.append(_rel(d / name / "plot.png", self.out))
        findings, numbers = [], {}
        for method in ("mean_diff", "persona"):
            m, k = shifts["misaligned"][method], shifts["control"][method]
            findings.append(
                f"Along the base-model {method} direction (layer {m['layer']}), eval-prompt activations move "
                f"{m['delta']:+.3f} in the misaligned run (95% CI [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}]; "
                f"random directions {m['random_mean']:+.3f} ± {m['random_sd']:.3f}, z = {m['z']:.1f}) and "
                f"{k['delta']:+.3f} in the aligned control (z = {k['z']:.1f}).")
            numbers.update({f"{method}_shift_misaligned": m["delta"], f"{method}_shift_control": k["delta"],
                            f"{method}_ci_low": m["ci_low"], f"{method}_ci_high": m["ci_high"],
                            f"{method}_z_misaligned": m["z"], f"{method}_z_control": k["z"]})
        return _section("Directions through training", findings, numbers,
                        "20 random unit directions at the same layer; the aligned-control run",
                        "bootstrap 95% CI over questions; z against random directions", plots)

    def priors(self, d: Path) -> dict:
        from emprobe.analysis.priors_study import predict_priors
        from emprobe.probes import extract_activations, load_prompts

        c = self.cfg
        lm = self.lm("base")
        m = pd.read_parquet(self.path("margins", "margins.parquet"))
        last = max(c.save_steps)
        base = m[(m.run == "misaligned") & (m.step == 0)].set_index("question_id").margin
        mis = m[(m.run == "misaligned") & (m.step == last)].set_index("question_id").margin.loc[base.index]
        target = pd.DataFrame({"question_id": base.index, "target": (mis - base).to_numpy(),
                               "target_kind": "margin_rise"})
        store = extract_activations(lm, load_prompts(self.questions_path), "all", positions=["last_prompt"],
                                    batch_size=c.eval_batch_size)
        n = lm.n_layers
        layers = sorted({round(f * (n - 1)) for f in (0.25, 0.5, 0.75)})
        res = predict_priors({"instruct (before fine-tuning)": store}, target, layers, self.direction("mean_diff"),
                             n_permutations=c.n_permutations, pls_permutations=100, n_random=20, seed=c.seed)
        res.save(d / "result")
        best = res.summary["best"]
        proj = res.table[res.table.method == "projection"].iloc[0]
        numbers = {"ridge_rho": best["spearman_rho"], "ridge_r2": best["r2"], "ridge_p": best["p_permutation"],
                   "random_rho_mean": best["random_rho_mean"], "random_rho_95": best["random_rho_95"],
                   "direction_rho": proj.spearman_rho, "direction_p": proj.p_permutation,
                   "n_questions": res.summary["n_questions"]}
        findings = res.findings + [f"Features: last-prompt activations at layers {layers}; target: each question's "
                                   f"margin rise after {last} steps. (SmolLM2 has no packaged pre-trained "
                                   "checkpoint, so only the instruct model's priors are used.)"]
        return _section("Priors → per-question EM", findings, numbers, res.summary["control"],
                        res.summary["uncertainty"], [_rel(d / "result" / "plot.png", self.out)], layers=layers)

    def dynamics(self, d: Path) -> dict:
        from emprobe.analysis.dynamics_study import dynamics_from_table

        losses = pd.read_parquet(self.path("finetune", "losses.parquet"))
        m = pd.read_parquet(self.path("margins", "margins.parquet"))
        ood = m.groupby(["run", "step"]).margin.mean().rename("ood_score").reset_index()
        df = losses.merge(ood, on=["run", "step"]).assign(schedule="linear", lr=self.cfg.lr,
                                                          data=lambda x: x.run.map(dict(zip(RUNS, (self.cfg.data, self.cfg.control_data)))))
        res = dynamics_from_table(df.dropna(subset=["val_loss"]), self.cfg.n_permutations)
        res.save(d / "result")
        corr = res.tables["correlations"].set_index("scope")
        numbers = {"rho_all": res.summary["spearman_rho"], "p_all": res.summary["p_two_sided"],
                   "n_checkpoints": res.summary["n_checkpoints"]}
        for name in RUNS:
            if name in corr.index:
                numbers[f"rho_{name}"] = corr.loc[name, "spearman_rho"]
                numbers[f"p_{name}"] = corr.loc[name, "p_two_sided"]
        return _section("In-domain loss vs off-domain alignment", res.findings, numbers, res.summary["control"],
                        res.summary["uncertainty"], [_rel(d / "result" / "plot.png", self.out)])

    def overlap(self, d: Path) -> dict:
        from emprobe.analysis.shift_overlap import overlap_models
        from emprobe.probes import load_prompts

        c = self.cfg
        n = self.lm("base").n_layers
        layers = list(range(1, n, max(1, n // 8)))
        res = overlap_models(self.lm("base"), self.lm("misaligned"), load_prompts(c.data, limit=c.n_train_prompts),
                             load_prompts(self.questions_path), layers, (1, 2, 4), n_random=200,
                             n_permutations=c.n_permutations, batch_size=c.eval_batch_size, seed=c.seed,
                             inputs={"model": c.model, "train": c.data})
        res.save(d / "result")
        b = res.summary["best"]
        sh = res.tables["shifts"].set_index("layer").loc[int(b["layer"])]
        numbers = {"layer": b["layer"], "k": b["k"], "overlap": b["overlap"], "random_mean": b["random_mean"],
                   "random_sd": b["random_sd"], "z": b["z"], "mean_shift_cosine": sh.mean_shift_cosine,
                   "pair_rho": sh.pair_rho, "pair_p": sh.pair_p}
        return _section("Training vs evaluation activation shifts", res.findings, numbers, res.summary["control"],
                        res.summary["uncertainty"], [_rel(d / "result" / "plot.png", self.out)])

    def patch(self, d: Path) -> dict:
        from emprobe.analysis.causal import patch_models

        c = self.cfg
        n = self.lm("base").n_layers
        layers = c.patch_layers or ([n // 3, 2 * n // 3] if c.fast else [n // 4, n // 2, 3 * n // 4])
        spans = ("last_prompt",) if c.fast else ("last_prompt", "prompt")
        res = patch_models(self.lm("base"), self.lm("misaligned"), self.qs("causal"), layers, spans,
                           c.eval_batch_size, c.seed, {"model": c.model}, directions=("base→tuned",))
        res.save(d / "result")
        t = res.table
        real = t[~t.control & (t.direction == "base→tuned")].sort_values("fraction_restored").iloc[-1]
        ctrl = t[t.control & (t.direction == real.direction) & (t.layer == real.layer) & (t.span == real.span)].iloc[0]
        numbers = {"margin_base": res.summary["margin_base"], "margin_tuned": res.summary["margin_tuned"],
                   "best_layer": real.layer, "fraction_restored": real.fraction_restored, "ci_low": real.ci_low,
                   "ci_high": real.ci_high, "control_fraction": ctrl.fraction_restored}
        return _section("Activation patching (base ↔ fine-tuned)", res.findings, numbers, res.summary["control"],
                        res.summary["uncertainty"], [_rel(d / "result" / "plot.png", self.out)], layers=layers)

    def steer(self, d: Path) -> dict:
        from emprobe.analysis.causal import steer_model

        c = self.cfg
        alphas = c.steer_alphas
        # the raw mean-diff vector: alpha = 1 adds the whole misaligned-minus-aligned mean difference, a scale that
        # carries over between models (a unit vector at a fixed alpha is large for SmolLM2, tiny for Gemma)
        res = steer_model(self.lm("base"), self.direction("mean_diff"), self.qs("causal"), None, alphas, False, 5,
                          0 if c.fast else 1, c.eval_batch_size, c.seed, random_alphas=[max(alphas)],
                          max_new_tokens=c.max_new_tokens)
        res.save(d / "result")
        s = res.summary
        numbers = {"layer": s["layer"], "spearman": s["spearman_alpha_margin"], "margin_low": s["margin_low_alpha"],
                   "margin_high": s["margin_high_alpha"], "random_mean_high": s["random_mean_high_alpha"],
                   "random_min_high": s["random_min_high_alpha"], "random_max_high": s["random_max_high_alpha"]}
        return _section("Steering the base model", res.findings, numbers, s["control"], s["uncertainty"],
                        [_rel(d / "result" / "plot.png", self.out)],
                        samples=_records(res.tables.get("samples")))

    def ablate(self, d: Path) -> dict:
        from emprobe.analysis.causal import ablate_models

        c = self.cfg
        res = ablate_models(self.lm("base"), self.lm("misaligned"), self.direction("mean_diff"), self.qs("causal"),
                            self.qs("heldout"), 5, 0 if c.fast else 1, c.eval_batch_size, c.seed,
                            max_new_tokens=c.max_new_tokens, random_in_domain=False)
        res.save(d / "result")
        s = res.summary
        rand = np.array(s["random_fraction_removed"], dtype=float)
        numbers = {"margin_base": s["margin_base"], "margin_tuned": s["margin_tuned"],
                   "margin_ablated": s["margin_ablated"], "fraction_removed": s["fraction_removed"],
                   "random_fraction_mean": rand.mean(), "random_fraction_sd": rand.std(ddof=1),
                   "in_domain_tuned": s["in_domain_margin_tuned"], "in_domain_ablated": s["in_domain_margin_ablated"]}
        return _section("Ablating the direction in the fine-tuned model", res.findings, numbers, s["control"],
                        s["uncertainty"], [_rel(d / "result" / "plot.png", self.out)],
                        samples=_records(res.tables.get("samples")))

    def samples(self, d: Path) -> dict:
        from emprobe.models.generation import generate_chat

        c = self.cfg
        m = pd.read_parquet(self.path("margins", "margins.parquet"))
        last = max(c.save_steps)
        piv = m[m.step.isin([0, last])].pivot_table(index="question_id", columns=["run", "step"], values="margin")
        rise = (piv[("misaligned", last)] - piv[("misaligned", 0)]).sort_values(ascending=False)
        qs = self.qs("eval")
        chosen = [qs[q] for q in rise.index[: c.n_sample_questions]]
        answers = {}
        for which in ("base", *RUNS):
            answers[which] = generate_chat(self.lm(which), [q.messages(0) for q in chosen], c.max_new_tokens,
                                           temperature=0.7, top_p=0.9, seed=c.seed)
        rows = []
        for i, q in enumerate(chosen):
            rows.append({"question_id": q.id, "question": q.paraphrases[0],
                         "margin_base": _f(piv.loc[q.id, ("misaligned", 0)]),
                         "margin_misaligned": _f(piv.loc[q.id, ("misaligned", last)]),
                         "margin_control": _f(piv.loc[q.id, ("control", last)]),
                         "base": answers["base"][i], "misaligned": answers["misaligned"][i],
                         "control": answers["control"][i]})
        pd.DataFrame(rows).to_parquet(d / "samples.parquet", index=False)
        findings = [f"Answers (temperature 0.7, top-p 0.9, seed {c.seed}, {c.max_new_tokens} new tokens) to the "
                    f"{len(rows)} questions whose margin rose most: " +
                    "; ".join(f"{r['question_id']} {r['margin_base']:+.3f} → {r['margin_misaligned']:+.3f} "
                              f"(control {r['margin_control']:+.3f})" for r in rows) + "."]
        numbers = {f"{r['question_id']}_rise": r["margin_misaligned"] - r["margin_base"] for r in rows}
        return _section("Answers before and after", findings, numbers,
                        "the aligned-control model answers the same questions with the same seed",
                        "single samples: illustrations, not evidence (the margins above carry the statistics)",
                        rows=rows)

    # ---- driver -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every stage (reusing finished ones), then write ``summary.json`` and ``report.html``."""
        import torch

        from emprobe import __version__
        from emprobe.io import write_json
        from emprobe.report.html import render_report

        c = self.cfg
        if c.threads:
            torch.set_num_threads(c.threads)
        t0 = time.perf_counter()
        pipe = Pipeline(self.out, force=c.force, log=self.log)
        sections = pipe.run(self.stages())
        setup = sections.pop("setup")
        summary = {"emprobe_version": __version__, "model": c.model, "settings": asdict(c), "setup": setup,
                   "timing": {"stages": pipe.timing, "total_seconds": round(time.perf_counter() - t0, 1),
                              "computed_seconds": round(sum(v["seconds"] for v in pipe.timing.values()
                                                            if not v["cached"]), 1),
                              "threads": torch.get_num_threads()},
                   "section_order": list(sections), "sections": sections}
        write_json(self.out / "summary.json", summary)
        render_report(summary, self.out)
        self.log(f"wrote {self.out / 'report.html'} and {self.out / 'summary.json'} "
                 f"({summary['timing']['total_seconds']:.0f} s)")
        return summary


def _finetune_job(cfg: dict) -> float:
    """Subprocess body of :func:`finetune_pair`: one run; returns its wall time."""
    from emprobe.finetune import FinetuneConfig, finetune

    t0 = time.perf_counter()
    finetune(FinetuneConfig.from_dict(cfg))
    return time.perf_counter() - t0


def finetune_pair(cfgs: list, threads: int | None) -> tuple[list[float], bool]:
    """Train the runs side by side in spawned processes, splitting ``threads`` (default: torch's count)
    between them — on 2 CPU cores two 1-thread runs finish ~20 % sooner than one 2-thread run after the
    other — or one after the other when only one thread is available. Returns (seconds per run, parallel?)."""
    import torch

    total = threads or torch.get_num_threads()
    if total < len(cfgs):
        return [_finetune_job(cfg.replace(threads=total).to_dict()) for cfg in cfgs], False
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(len(cfgs), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_finetune_job, cfg.replace(threads=total // len(cfgs)).to_dict()) for cfg in cfgs]
        return [f.result() for f in futures], True


def _records(df: pd.DataFrame | None) -> list[dict]:
    return [] if df is None or df.empty else df.to_dict("records")


def _sign_flip_p(x: np.ndarray, n: int, seed: int) -> float:
    """Two-sided sign-flip permutation p-value of ``mean(x) != 0``."""
    rng = np.random.default_rng(seed)
    obs = abs(x.mean())
    null = np.abs((rng.choice([-1.0, 1.0], size=(n, len(x))) * x).mean(1))
    return float((1 + (null >= obs - 1e-15).sum()) / (n + 1))


def demo(cfg: DemoConfig | None = None, log: Callable[[str], Any] | None = print, **overrides: Any) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the summary written to ``OUT/summary.json``."""
    cfg = replace(cfg or DemoConfig(), **overrides)
    return Demo(cfg, log).run()
