"""Run a study: its stages (cached), then ``summary.json`` (verdicts first) and a self-contained ``report.html``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from emprobe.errors import ConfigError
from emprobe.studies.config import StudyConfig, preset
from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Pipeline, Stage
from emprobe.studies.result import StudyResult
from emprobe.studies.stages import REGISTRY, SPECS


def build_stages(ctx: StudyContext) -> list[Stage]:
    """The enabled stages in registry order, each moved after the stages it depends on (the directions stage comes
    after margins when it is cross-fitted, before fine-tuning when a mitigation trains with it; ``setup`` always
    runs); a stage whose inputs are disabled is an error."""
    chosen = [spec.build(ctx) for spec in REGISTRY if spec.name == "setup" or spec.name in ctx.cfg.stages]
    names = {s.name for s in chosen}
    for s in chosen:
        missing = [dep for dep in s.depends if dep not in names]
        if missing:
            raise ConfigError(f"study stage {s.name!r} needs stage {missing[0]!r}; add it to 'stages'")
    ordered: list[Stage] = []
    while len(ordered) < len(chosen):  # the first stage (registry order) whose dependencies have run
        done = {s.name for s in ordered}
        ready = [s for s in chosen if s.name not in done and set(s.depends) <= done]
        if not ready:
            raise ConfigError(f"study stages depend on each other in a cycle: {sorted({s.name for s in chosen} - done)}")
        ordered.append(ready[0])
    return ordered


def verdicts(sections: dict[str, dict]) -> list[dict[str, Any]]:
    """The claims' verdicts, in claim order (a claim whose stage did not run is left out)."""
    claims = sorted((spec.claim, spec.name) for spec in REGISTRY if spec.claim)
    return [{"id": claim, "stage": name, **sections[name]["verdict"]} for claim, name in claims
            if sections.get(name, {}).get("verdict")]


def timing(pipe: Pipeline, t0: float, threads: int) -> dict[str, Any]:
    """Stage seconds (as measured when each stage ran, reused or not), fine-tuning vs analysis and their ratio."""
    stages = pipe.timing
    seconds = {k: v["seconds"] for k, v in stages.items()}
    train = sum(s for k, s in seconds.items() if SPECS[k].training)
    analysis = sum(s for k, s in seconds.items() if not SPECS[k].training)
    return {"stages": stages, "total_seconds": round(time.perf_counter() - t0, 1),
            "computed_seconds": round(sum(s for k, s in seconds.items() if not stages[k]["cached"]), 1),
            "threads": threads, "finetune_seconds": round(train, 1), "analysis_seconds": round(analysis, 1),
            "analysis_over_finetune": round(analysis / train, 3) if train > 0 else None}


def run_study(cfg: StudyConfig, log: Callable[[str], Any] | None = print, executor: str = "local",
              **executor_options: Any) -> StudyResult:
    """Run every enabled stage of ``cfg`` (reusing finished ones); write ``summary.json`` and ``report.html``."""
    from emprobe.io import claim_dir

    cfg.check_inputs()  # every input file and model, before the first stage (and before torch loads)
    claim_dir(cfg.out, "study", overwrite=None, reuse=("study", "summary"))
    import torch

    from emprobe import __version__
    from emprobe.verbosity import is_verbose, set_verbose

    set_verbose(is_verbose())  # library progress bars off unless EMPROBE_VERBOSE=1 / --verbose: one line per stage
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = StudyContext(cfg, log, executor, executor_options)
    t0 = time.perf_counter()
    pipe = Pipeline(ctx.out, force=cfg.force, log=ctx.log)
    sections = pipe.run(build_stages(ctx))
    setup = sections.pop("setup")
    result = StudyResult(ctx.out, cfg.model, cfg.preset, cfg.to_dict(), setup, verdicts(sections), sections,
                         timing(pipe, t0, torch.get_num_threads()), __version__)
    result.save()
    ctx.log(f"wrote {ctx.out / 'report.html'} and {ctx.out / 'summary.json'} "
            f"({result.timing['total_seconds']:.0f} s)")
    return result


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
          **overrides: Any) -> StudyResult:
    """Run a study from a YAML file, a :class:`StudyConfig` or a preset (``demo`` | ``fast`` | ``paper`` |
    ``mitigations``);
    ``overrides`` replace config fields (``out=...``, ``threads=...``, ``training__steps=25``). Returns a
    :class:`~emprobe.studies.result.StudyResult` (verdicts, sections, timings; ``.report()``)."""
    cfg = study_config(config, preset_name=preset_name, **overrides)
    kw = {"address": ray_address} if executor == "ray" and ray_address else {}
    return run_study(cfg, log, executor, **kw)


def demo(fast: bool = False, *, data: str | None = None, control_data: str | None = None,
         questions: str | None = None, heldout: str | None = None, steps: int | None = None,
         n_questions: int | None = None, log: Callable[[str], Any] | None = print, **overrides: Any) -> StudyResult:
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
