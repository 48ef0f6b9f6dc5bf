"""Causal verbs: ``emprobe patch | steer | ablate`` (write ``OUT/table.parquet``, ``plot.png``, ``summary.json``
and sampled answers; the findings say first when the control beats the effect). Layer ``l`` = residual stream after
decoder block ``l``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emprobe.cli.common import (apply_threads, check_threads, floats, guard_out, model_option, overwrite_option,
                                print_result, questions_option, threads_option)
from emprobe.validate import check_args, check_as


def patch_cmd(
    adapter: Path = typer.Option(..., help="fine-tuned LoRA checkpoint (or full fine-tuned model) directory"),
    model: str = model_option("base model (alias, hub id or directory)"),
    questions: str = questions_option(help="question set with reference answers"),
    layers: str = typer.Option("0:30:3", help="layers to patch: 'all', 'L1,L2', 'LO:HI' or 'LO:HI:STEP'"),
    spans: str = typer.Option("last_prompt,prompt", help="positions to patch: last_prompt and/or prompt"),
    n_questions: int = typer.Option(12, help="questions to use (0 = all)"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0, help="seed of the control's shuffles and the bootstrap"),
    out: Path = typer.Option(Path("analysis/patch"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Cross-model activation patching (base <-> fine-tuned): fraction of the margin gap restored per layer."""
    check_threads(threads)
    check_args(model=model, questions=questions, batch_size=batch_size, n_questions=n_questions or None)
    check_as("checkpoint", adapter, "adapter")
    guard_out(out, overwrite)
    from emprobe.analysis.patch.compute import patch

    apply_threads(threads)
    print_result(patch(model, str(adapter), questions, layers=layers, spans=[s for s in spans.split(",") if s],
                       n_questions=n_questions or None, batch_size=batch_size, seed=seed), out, overwrite)


def steer_cmd(
    direction: Path = typer.Option(..., help="direction directory (emprobe probe fit)"),
    layer: Optional[int] = typer.Option(None, help="layer to steer at (default: the direction's best layer)"),
    alpha: str = typer.Option("-8,-4,0,4,8", help="steering coefficients, comma-separated"),
    model: str = model_option("model to steer"),
    adapter: Optional[Path] = typer.Option(None, help="optional LoRA checkpoint"),
    questions: str = questions_option(help="question set with reference answers"),
    raw: bool = typer.Option(False, help="add the raw direction instead of the unit vector"),
    n_random: int = typer.Option(5, help="random directions of the same norm (>= 5)"),
    n_questions: int = typer.Option(12, help="questions to use (0 = all)"),
    n_samples: int = typer.Option(3, help="answers sampled at alpha 0 and the largest alpha (0 = none)"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("analysis/steer"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Add alpha * direction at a layer (all positions), sweep alpha, compare with random directions."""
    alphas = floats(alpha, "--alpha")
    check_threads(threads)
    check_args(direction=direction, model=model, adapter=adapter, questions=questions, n_random=n_random,
               n_questions=n_questions or None, n_samples=n_samples, batch_size=batch_size)
    guard_out(out, overwrite)
    from emprobe.analysis.steer.compute import steer

    apply_threads(threads)
    print_result(steer(model, str(direction), questions, layer=layer, alphas=alphas, unit=not raw,
                       n_random=n_random, n_questions=n_questions or None, n_samples=n_samples,
                       batch_size=batch_size, seed=seed, adapter=str(adapter) if adapter else None), out, overwrite)


def ablate_cmd(
    direction: Path = typer.Option(..., help="direction directory (emprobe probe fit)"),
    adapter: Path = typer.Option(..., help="fine-tuned LoRA checkpoint (or full fine-tuned model) directory"),
    model: str = model_option("base model (alias, hub id or directory)"),
    questions: str = questions_option(help="off-domain question set"),
    heldout: str = typer.Option("builtin:risky-finance-heldout", help="in-domain held-out question set"),
    n_random: int = typer.Option(5, help="random directions (>= 5)"),
    n_questions: int = typer.Option(12, help="questions to use per set (0 = all)"),
    n_samples: int = typer.Option(3, help="answers sampled with and without the ablation (0 = none)"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("analysis/ablate"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Project the direction out at every layer of the fine-tuned model; off-domain gain vs in-domain cost."""
    check_threads(threads)
    check_args(direction=direction, model=model, questions=questions, n_random=n_random,
               n_questions=n_questions or None, n_samples=n_samples, batch_size=batch_size)
    check_as("checkpoint", adapter, "adapter")
    check_as("questions", heldout, "heldout")
    guard_out(out, overwrite)
    from emprobe.analysis.ablate.compute import ablate

    apply_threads(threads)
    print_result(ablate(model, str(adapter), str(direction), questions, heldout=heldout, n_random=n_random,
                        n_questions=n_questions or None, n_samples=n_samples, batch_size=batch_size, seed=seed),
                 out, overwrite)


COMMANDS = {"patch": patch_cmd, "steer": steer_cmd, "ablate": ablate_cmd}


def register(root: typer.Typer) -> None:
    """Add the causal verbs to the root app."""
    for name, fn in COMMANDS.items():
        root.command(name)(fn)
