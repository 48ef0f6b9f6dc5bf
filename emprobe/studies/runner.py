"""Run a study: its stages (cached), then ``summary.json`` (verdicts first) and a self-contained ``report.html``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from emprobe.errors import ConfigError
from emprobe.studies.config import StudyConfig, preset
from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Pipeline, Stage

#: the claims a study tests, and the stage whose result carries each verdict
CLAIMS = {"dynamics": "Claim 1", "priors": "Claim 2", "overlap": "Claim 3"}
TRAINING_STAGES = ("setup", "finetune")


#: stage name -> module under emprobe.studies.stages (``causal`` holds patch, steer and ablate)
STAGE_MODULES = {"setup": "setup", "finetune": "finetune", "margins": "margins", "directions": "directions",
                 "track": "track", "priors": "priors", "dynamics": "dynamics", "overlap": "overlap",
                 "patch": "causal", "steer": "causal", "ablate": "causal", "samples": "samples", "explain": "explain"}


def build_stages(ctx: StudyContext, executor: str = "local", **executor_kw: Any) -> list[Stage]:
    """The enabled stages in order (``setup`` always runs); a stage whose inputs are disabled is an error."""
    import importlib

    wanted = ["setup", *(n for n in STAGE_MODULES if n in ctx.cfg.stages)]
    chosen = []
    for name in wanted:
        mod = importlib.import_module(f"emprobe.studies.stages.{STAGE_MODULES[name]}")
        if name == "finetune":
            chosen.append(mod.stage(ctx, executor, **executor_kw))
        elif STAGE_MODULES[name] == "causal":
            chosen.append(next(s for s in mod.stages(ctx) if s.name == name))
        else:
            chosen.append(mod.stage(ctx))
    names = {s.name for s in chosen}
    for s in chosen:
        missing = [dep for dep in s.depends if dep not in names]
        if missing:
            raise ConfigError(f"study stage {s.name!r} needs stage {missing[0]!r}; add it to 'stages'")
    return chosen


def verdicts(sections: dict[str, dict]) -> list[dict[str, Any]]:
    """The claims' verdicts, in claim order (a claim whose stage did not run is left out)."""
    out = []
    for name, claim in CLAIMS.items():
        v = sections.get(name, {}).get("verdict")
        if v:
            out.append({"id": claim, "stage": name, **v})
    return out


def timing(pipe: Pipeline, t0: float, threads: int) -> dict[str, Any]:
    """Stage seconds (as measured when each stage ran, reused or not), fine-tuning vs analysis and their ratio."""
    stages = pipe.timing
    seconds = {k: v["seconds"] for k, v in stages.items()}
    train = sum(s for k, s in seconds.items() if k in TRAINING_STAGES)
    analysis = sum(s for k, s in seconds.items() if k not in TRAINING_STAGES)
    return {"stages": stages, "total_seconds": round(time.perf_counter() - t0, 1),
            "computed_seconds": round(sum(s for k, s in seconds.items() if not stages[k]["cached"]), 1),
            "threads": threads, "finetune_seconds": round(train, 1), "analysis_seconds": round(analysis, 1),
            "analysis_over_finetune": round(analysis / train, 3) if train > 0 else None}


def run_study(cfg: StudyConfig, log: Callable[[str], Any] | None = print, executor: str = "local",
              **executor_kw: Any) -> dict[str, Any]:
    """Run every enabled stage of ``cfg`` (reusing finished ones); write and return ``summary.json``."""
    import torch

    from emprobe import __version__
    from emprobe.io import write_json
    from emprobe.report.html import render_report
    from emprobe.verbosity import is_verbose, set_verbose

    set_verbose(is_verbose())  # library progress bars off unless EMPROBE_VERBOSE=1 / --verbose: one line per stage
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = StudyContext(cfg, log)
    t0 = time.perf_counter()
    pipe = Pipeline(ctx.out, force=cfg.force, log=ctx.log)
    sections = pipe.run(build_stages(ctx, executor, **executor_kw))
    setup = sections.pop("setup")
    summary = {"emprobe_version": __version__, "model": cfg.model, "preset": cfg.preset, "settings": cfg.to_dict(),
               "setup": setup, "verdicts": verdicts(sections),
               "timing": timing(pipe, t0, torch.get_num_threads()),
               "section_order": list(sections), "sections": sections}
    write_json(ctx.out / "summary.json", summary)
    render_report(summary, ctx.out)
    ctx.log(f"wrote {ctx.out / 'report.html'} and {ctx.out / 'summary.json'} "
            f"({summary['timing']['total_seconds']:.0f} s)")
    return summary


def study_config(config: str | Path | StudyConfig | None = None, *, preset_name: str | None = None,
                 **overrides: Any) -> StudyConfig:
    """The :class:`StudyConfig` that :func:`study` runs (same arguments)."""
    if isinstance(config, StudyConfig):
        cfg = config
    elif config is not None:
        cfg = StudyConfig.from_yaml(config)
    else:
        cfg = preset(preset_name or "demo")
    return cfg.with_(**{k: v for k, v in overrides.items() if v is not None})


def study(config: str | Path | StudyConfig | None = None, *, preset_name: str | None = None,
          log: Callable[[str], Any] | None = print, executor: str = "local", ray_address: str | None = None,
          **overrides: Any) -> dict[str, Any]:
    """Run a study from a YAML file, a :class:`StudyConfig` or a preset (``demo`` | ``fast`` | ``paper``);
    ``overrides`` replace config fields (``out=...``, ``threads=...``, ``training__steps=25``)."""
    cfg = study_config(config, preset_name=preset_name, **overrides)
    kw = {"address": ray_address} if executor == "ray" and ray_address else {}
    return run_study(cfg, log, executor, **kw)


def demo(fast: bool = False, *, data: str | None = None, control_data: str | None = None,
         questions: str | None = None, heldout: str | None = None, steps: int | None = None,
         n_questions: int | None = None, log: Callable[[str], Any] | None = print, **overrides: Any) -> dict[str, Any]:
    """The demo study (preset ``demo``, or ``fast``) on the packaged SmolLM2 unless ``model=`` says otherwise;
    ``data`` / ``control_data`` / ``questions`` / ``heldout`` run it on your own files."""
    from dataclasses import replace

    cfg = preset("fast" if fast else "demo")
    if data or control_data or heldout:
        ds = cfg.datasets[0]
        name = Path(data).name.split(".")[0] if data else ds.name
        cfg = cfg.with_(datasets=(replace(ds, name=name, data=data or ds.data, control=control_data or ds.control,
                                          heldout=heldout or ds.heldout),))
    if steps is not None:
        cfg = cfg.with_(training=replace(cfg.training, steps=steps, save_steps=None))
    qchanges = {k: v for k, v in (("off_domain", questions), ("n_questions", n_questions)) if v is not None}
    if qchanges:
        cfg = cfg.with_(questions=replace(cfg.questions, **qchanges))
    return study(cfg, log=log, **overrides)
