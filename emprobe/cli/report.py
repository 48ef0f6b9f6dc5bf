"""``emprobe demo`` (the whole study on one model, with an HTML report) and ``emprobe report`` (re-render it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(root: typer.Typer) -> None:
    """Add ``demo`` and ``report`` to the root app."""

    @root.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("emprobe-demo"), help="output directory (stages are cached here)"),
        fast: bool = typer.Option(False, "--fast", help="smaller preset: 8 steps, 16 questions (~3 min on 2 cores)"),
        model: str = typer.Option("smollm2-135m-instruct", help="model alias, hub id or directory"),
        threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice)"),
        force: bool = typer.Option(False, "--force", help="redo every stage instead of reusing finished ones"),
        steps: Optional[int] = typer.Option(None, help="fine-tuning steps (default 25; 8 with --fast)"),
        n_questions: Optional[int] = typer.Option(None, help="off-domain questions (default 37; 16 with --fast)"),
    ) -> None:
        """The whole study in one command: misaligned fine-tune + aligned control, margins at every checkpoint,
        base-model directions, tracking, priors, dynamics, shift overlap, patching, steering, ablation, samples;
        writes OUT/report.html and OUT/summary.json."""
        from emprobe.report import DemoConfig, demo

        demo(DemoConfig(model=model, out=str(out), fast=fast, threads=threads, force=force, steps=steps,
                        save_steps=None, n_questions=n_questions))

    @root.command("report")
    def report_cmd(out: Path = typer.Argument(..., help="a demo output directory (with summary.json)")) -> None:
        """Re-render OUT/report.html from OUT/summary.json and the plots beside it."""
        from emprobe.report import render_summary

        print(f"wrote {render_summary(out)}")
