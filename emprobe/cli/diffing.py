"""Model diffing and data screening: ``emprobe diff`` and ``emprobe screen`` (each writes ``OUT/table.parquet``,
extra tables, ``plot.png`` and ``summary.json``). Layer ``l`` = residual stream after decoder block ``l``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emprobe.cli.common import (apply_threads, check_threads, guard_out, model_option, overwrite_option, print_result,
                                questions_option, threads_option)
from emprobe.errors import ConfigError


def diff_cmd(
    tuned: str = typer.Option(..., "--tuned", help="fine-tune: LoRA adapter dir, run dir (its last checkpoint) or "
                                                   "full model dir"),
    control: Optional[str] = typer.Option(None, help="the aligned-data control fine-tune (same forms; the verdict "
                                                      "needs it)"),
    model: str = model_option("base model (alias, hub id or directory)"),
    questions: str = questions_option(help="off-domain question set"),
    n_questions: int = typer.Option(0, help="first N questions (0 = all)"),
    text: str = typer.Option("builtin:neutral-text", help="general text: builtin:NAME, a YAML list or a .txt file"),
    n_texts: int = typer.Option(0, help="first N texts (0 = all)"),
    rises: Optional[Path] = typer.Option(None, help="per-question EM-specific rises (question_id, em_rise), e.g. a "
                                                    "study's margins/rises.parquet (default: scored here)"),
    max_new_tokens: int = typer.Option(48, help="length of the base model's answers the KL is measured on"),
    max_text_tokens: int = typer.Option(64, help="tokens of each text the KL is measured on"),
    lens_tokens: int = typer.Option(5, help="tokens 1..K of each text (after the sink at 0) averaged by the lens"),
    top_k: int = typer.Option(10, help="tokens listed per layer and side"),
    layers: str = typer.Option("all", help="layers of the lens: 'all', 'L1,L2', 'LO:HI' or 'LO:HI:STEP'"),
    sesoi: float = typer.Option(0.2, help="smallest ρ difference (tuned − control) of interest"),
    n_boot: int = typer.Option(2000, help="bootstrap draws over questions"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("analysis/diff"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """What a fine-tune changed: per-token KL(base ‖ tuned), the activation-difference lens, KL vs per-question EM."""
    from emprobe.analysis.args import check_diff

    check_threads(threads)
    check_diff(base=model, tuned=tuned, control=control, questions=questions, text=text, rises=rises,
               n_questions=n_questions or None, n_texts=n_texts or None, max_new_tokens=max_new_tokens,
               max_text_tokens=max_text_tokens, lens_tokens=lens_tokens, top_k=top_k, sesoi=sesoi, n_boot=n_boot,
               batch_size=batch_size)
    guard_out(out, overwrite)
    from emprobe.data import load_questions

    questions = load_questions(questions)  # a bad question file fails here, before torch loads
    from emprobe.analysis.diff import diff

    apply_threads(threads)
    print_result(diff(model, tuned, control=control, questions=questions, text=text, rises=rises,
                      n_questions=n_questions or None, n_texts=n_texts or None, max_new_tokens=max_new_tokens,
                      max_text_tokens=max_text_tokens, lens_tokens=lens_tokens, top_k=top_k, layers=layers,
                      sesoi=sesoi, n_boot=n_boot, batch_size=batch_size, seed=seed), out, overwrite)


def parse_retrain(value: str | None) -> int | float | None:
    """``"10%"`` -> 0.1, ``"0.1"`` -> 0.1, ``"45"`` -> 45; a bad value is a one-line error."""
    if value is None:
        return None
    v = value.strip()
    try:
        if v.endswith("%"):
            return float(v[:-1]) / 100
        return float(v) if "." in v else int(v)
    except ValueError:
        raise ConfigError(f"--retrain: {value!r} is neither a count (45) nor a fraction (0.1 or 10%)") from None


def screen_cmd(
    direction: Path = typer.Option(..., help="misalignment direction directory (fitted on the base model)"),
    data: Optional[str] = typer.Option(None, help="training chat data (default: the --run's data)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="base model (default: the --run's base)"),
    layer: Optional[int] = typer.Option(None, help="layer to project at (default: the direction's best layer)"),
    baseline: str = typer.Option("generate", help="'generate' (the base model's own answers, the persona-vectors "
                                                  "recipe) or a chat dataset answering the same prompts"),
    max_new_tokens: int = typer.Option(96, help="length of the base model's answers"),
    run: Optional[Path] = typer.Option(None, help="the fine-tuning run on the full data (the retrain recipe)"),
    control: Optional[Path] = typer.Option(None, help="its aligned-data control run"),
    retrain: Optional[str] = typer.Option(None, help="retrain without the top K examples and K random ones: a count "
                                                     "(45) or a fraction (0.1, 10%)"),
    n_random: int = typer.Option(3, help="random draws of K examples (>= 3)"),
    questions: str = questions_option(help="off-domain questions for the EM-specific rise"),
    n_questions: int = typer.Option(0, help="first N questions (0 = all)"),
    work: Optional[Path] = typer.Option(None, help="where the filtered data and retrain runs go (default: "
                                                   "OUT-retrain beside --out; finished runs are reused)"),
    executor: str = typer.Option("local", help="local (subprocesses side by side) or ray"),
    max_parallel: Optional[int] = typer.Option(None, help="retrains at a time (default: one per thread)"),
    sesoi: float = typer.Option(0.1, help="smallest difference in the fraction of the rise removed of interest"),
    n_boot: int = typer.Option(2000),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0, help="seed of the random draws and the bootstrap"),
    out: Path = typer.Option(Path("analysis/screen"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Rank training examples by projection difference on a direction; --retrain K tests the ranking causally."""
    from emprobe.analysis.args import check_screen

    k = parse_retrain(retrain)
    check_threads(threads)
    work = work or out.parent / f"{out.name}-retrain"
    check_screen(direction=direction, data=data, model=model, layer=layer, baseline=baseline, run=run,
                 control=control, retrain=k, n_random=n_random, questions=questions, n_questions=n_questions or None,
                 out=work, executor=executor, max_parallel=max_parallel, sesoi=sesoi, n_boot=n_boot,
                 batch_size=batch_size, max_new_tokens=max_new_tokens, out_param="work")
    guard_out(out, overwrite)
    from emprobe.analysis.screen import screen

    apply_threads(threads)
    print_result(screen(direction, data, model=model, layer=layer, baseline=baseline, max_new_tokens=max_new_tokens,
                        run=run, control=control, retrain=k, n_random=n_random, questions=questions,
                        n_questions=n_questions or None, out=work, executor=executor, threads=threads,
                        max_parallel=max_parallel, sesoi=sesoi, n_boot=n_boot, batch_size=batch_size, seed=seed),
                 out, overwrite)


COMMANDS = {"diff": diff_cmd, "screen": screen_cmd}


def register(root: typer.Typer) -> None:
    """Add ``emprobe diff`` and ``emprobe screen`` to the root app."""
    for name, fn in COMMANDS.items():
        root.command(name)(fn)
