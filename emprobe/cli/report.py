"""``emprobe study`` (the paper's claims as verdicts), ``emprobe demo`` (its demo preset) and ``emprobe report``
(re-render a study's report.html)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emprobe.cli.common import check_threads, default_threads, model_option, threads_option


def _preset_help() -> str:
    from emprobe.studies import PRESETS

    d, f = PRESETS["demo"], PRESETS["fast"]
    return (f"the demo preset: {d.training.steps} steps, {d.questions.n_questions} questions; --fast: "
            f"{f.training.steps} steps, {f.questions.n_questions} questions")


def study_cmd(
    config: Optional[Path] = typer.Argument(None, help="study YAML (model, datasets, grid, training, questions, "
                                                       "stages); omit it to run --preset"),
    preset: Optional[str] = typer.Option(None, "--preset", help="demo | fast | paper | mitigations (used without CONFIG)"),
    out: Optional[Path] = typer.Option(None, help="output directory (stages and runs are cached here)"),
    threads: Optional[int] = threads_option(),
    force: bool = typer.Option(False, "--force", help="redo every stage instead of reusing finished ones"),
    executor: str = typer.Option("local", help="where fine-tuning runs train: local | ray"),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster address (auto | HOST:PORT)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print what the study would train and score and its "
                                                          "predicted time (the fitted cost model); run nothing"),
    cost_model: Optional[Path] = typer.Option(None, "--cost-model", help="with --dry-run: the cost model file "
                                              "(benchmarks/bench_scaling.py --write-model; default the package's)"),
) -> None:
    """Test the paper's claims: a grid of narrow fine-tunes with aligned-data controls, scored and analysed;
    writes OUT/report.html (verdicts first) and OUT/summary.json."""
    from emprobe.errors import ConfigError
    from emprobe.studies import study

    if config is not None and preset is not None:
        raise ConfigError("give a study CONFIG or --preset, not both (a CONFIG may say 'preset: NAME')")
    check_threads(threads)
    if dry_run:
        from emprobe.outdir import check_out
        from emprobe.studies.cost import dry_run as dry_lines
        from emprobe.studies.runner import study_config

        cfg = study_config(config, preset_name=preset, threads=threads, out=str(out) if out else None)
        cfg.check_inputs()  # what the study itself would refuse, refused by its dry run too
        check_out(cfg.out, overwrite=None, reuse=("study", "summary"))
        typer.echo("\n".join(dry_lines(cfg, threads, cost_model)))
        return
    study(config, preset_name=preset, out=str(out) if out else None, threads=threads or default_threads(),
          force=force or None, executor=executor, ray_address=ray_address)


def demo_cmd(
    out: Path = typer.Option(Path("emprobe-demo"), help="output directory (stages are cached here)"),
    fast: bool = typer.Option(False, "--fast", help="the smaller preset (see above)"),
    model: str = model_option(),
    threads: Optional[int] = threads_option(),
    force: bool = typer.Option(False, "--force", help="redo every stage instead of reusing finished ones"),
    steps: Optional[int] = typer.Option(None, help="fine-tuning steps (default: the preset's)"),
    n_questions: Optional[int] = typer.Option(None, help="off-domain questions (default: the preset's)"),
    data: Optional[str] = typer.Option(None, help="narrow training data (chat JSONL or builtin:NAME)"),
    control_data: Optional[str] = typer.Option(None, help="its aligned-data control (same prompts, aligned answers)"),
    questions: Optional[str] = typer.Option(None, help="off-domain question set with reference answers"),
    heldout: Optional[str] = typer.Option(None, help="in-domain held-out question set with reference answers"),
) -> None:
    from emprobe.studies import demo

    check_threads(threads)
    demo(fast, data=data, control_data=control_data, questions=questions, heldout=heldout, steps=steps,
         n_questions=n_questions, model=model, out=str(out), threads=threads or default_threads(),
         force=force or None)


def report_cmd(out: Path = typer.Argument(..., help="a study / demo output directory (with summary.json)")) -> None:
    """Re-render OUT/report.html from OUT/summary.json and the plots beside it."""
    from emprobe.report import render_summary

    print(f"wrote {render_summary(out)}")


def register(root: typer.Typer) -> None:
    """Add ``study``, ``demo`` and ``report`` to the root app."""
    root.command("study")(study_cmd)
    root.command("demo", help="The whole study in one command on one model (" + _preset_help() + "): misaligned "
                 "fine-tune + aligned control, margins at every checkpoint, directions, tracking, priors, dynamics, "
                 "shift overlap, patching, steering, ablation, per-question explanation, samples; writes "
                 "OUT/report.html and OUT/summary.json.")(demo_cmd)
    root.command("report")(report_cmd)
