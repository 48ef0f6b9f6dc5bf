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


def _activations_option():
    return typer.Option(None, help="labelled activation store the controls are drawn from (default: the direction's "
                                   "own store)")


def _n_random_option():
    return typer.Option(10, help="control directions drawn from the activations' covariance")


def _n_shuffled_option():
    return typer.Option(10, help="control mean differences with shuffled labels (with --n-random: >= 19)")


def _overlap_option():
    return typer.Option(False, help="score questions the direction was fit on (circular: the verdict becomes "
                                    "inconclusive)")


def _check_activations(activations: Optional[Path]) -> None:
    if activations is not None:
        check_as("store", activations, "activations")


def patch_cmd(
    adapter: Path = typer.Option(..., help="fine-tuned LoRA checkpoint (or full fine-tuned model) directory"),
    model: str = model_option("base model (alias, hub id or directory)"),
    questions: str = questions_option(help="question set with reference answers"),
    layers: str = typer.Option("0:30:3", help="layers to patch: 'all', 'L1,L2', 'LO:HI' or 'LO:HI:STEP'"),
    spans: str = typer.Option("last_prompt,prompt", help="positions to patch: last_prompt and/or prompt"),
    n_questions: int = typer.Option(12, help="questions to use (0 = all)"),
    min_fraction: float = typer.Option(0.25, help="smallest share of the gap restored that counts (the SESOI)"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0, help="seed of the question halves (cells chosen on one, measured on the other) and "
                                     "of the control's choice of another question"),
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
                       n_questions=n_questions or None, min_fraction=min_fraction, batch_size=batch_size,
                       seed=seed), out, overwrite)


def steer_cmd(
    direction: Path = typer.Option(..., help="direction directory (emprobe probe fit)"),
    layer: Optional[int] = typer.Option(None, help="layer to steer at (default: the direction's best layer)"),
    alpha: str = typer.Option("-8,-4,0,4,8", help="steering coefficients, comma-separated"),
    model: str = model_option("model to steer"),
    adapter: Optional[Path] = typer.Option(None, help="optional LoRA checkpoint"),
    questions: str = questions_option(help="question set with reference answers"),
    raw: bool = typer.Option(False, help="add the raw direction instead of the unit vector"),
    activations: Optional[Path] = _activations_option(),
    n_random: int = _n_random_option(),
    n_shuffled: int = _n_shuffled_option(),
    sesoi: float = typer.Option(0.05, help="smallest margin shift at the largest alpha that counts (nats/token)"),
    allow_overlap: bool = _overlap_option(),
    n_questions: int = typer.Option(12, help="questions to use (0 = all)"),
    n_samples: int = typer.Option(3, help="answers sampled at alpha 0 and the largest alpha (0 = none)"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("analysis/steer"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Add alpha * direction at a layer (all positions), sweep alpha, compare with variance-matched control directions."""
    alphas = floats(alpha, "--alpha")
    check_threads(threads)
    check_args(direction=direction, model=model, adapter=adapter, questions=questions, n_random=n_random,
               n_questions=n_questions or None, n_samples=n_samples, batch_size=batch_size)
    _check_activations(activations)
    guard_out(out, overwrite)
    from emprobe.analysis.steer.compute import steer

    apply_threads(threads)
    print_result(steer(model, str(direction), questions, activations=str(activations) if activations else None,
                       layer=layer, alphas=alphas, unit=not raw, n_random=n_random, n_shuffled=n_shuffled,
                       sesoi=sesoi, allow_overlap=allow_overlap, n_questions=n_questions or None, n_samples=n_samples,
                       batch_size=batch_size, seed=seed, adapter=str(adapter) if adapter else None), out, overwrite)


def ablate_cmd(
    direction: Path = typer.Option(..., help="direction directory (emprobe probe fit)"),
    adapter: Path = typer.Option(..., help="fine-tuned LoRA checkpoint (or full fine-tuned model) directory"),
    model: str = model_option("base model (alias, hub id or directory)"),
    questions: str = questions_option(help="off-domain question set"),
    heldout: str = typer.Option("builtin:risky-finance-heldout", help="in-domain held-out question set"),
    reference: Optional[Path] = typer.Option(
        None, help="the aligned-data control's checkpoint to compare with (default: the base model)"),
    activations: Optional[Path] = _activations_option(),
    n_random: int = _n_random_option(),
    n_shuffled: int = _n_shuffled_option(),
    min_fraction: float = typer.Option(0.25, help="smallest share of the gap removed that counts (the SESOI)"),
    allow_overlap: bool = _overlap_option(),
    n_questions: int = typer.Option(12, help="questions to use per set (0 = all)"),
    n_samples: int = typer.Option(3, help="answers sampled with and without the ablation (0 = none)"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("analysis/ablate"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Project the direction out at every layer of the fine-tuned and the reference model: difference-in-differences
    of their margin gap against variance-matched control directions, and the in-domain cost."""
    check_threads(threads)
    check_args(direction=direction, model=model, questions=questions, n_random=n_random,
               n_questions=n_questions or None, n_samples=n_samples, batch_size=batch_size)
    check_as("checkpoint", adapter, "adapter")
    check_as("questions", heldout, "heldout")
    check_as("checkpoint", reference, "reference")
    _check_activations(activations)
    guard_out(out, overwrite)
    from emprobe.analysis.ablate.compute import ablate

    apply_threads(threads)
    print_result(ablate(model, str(adapter), str(direction), questions, heldout=heldout,
                        reference=str(reference) if reference else None,
                        activations=str(activations) if activations else None, n_random=n_random,
                        n_shuffled=n_shuffled, min_fraction=min_fraction, allow_overlap=allow_overlap,
                        n_questions=n_questions or None, n_samples=n_samples, batch_size=batch_size, seed=seed),
                 out, overwrite)


COMMANDS = {"patch": patch_cmd, "steer": steer_cmd, "ablate": ablate_cmd}


def register(root: typer.Typer) -> None:
    """Add the causal verbs to the root app."""
    for name, fn in COMMANDS.items():
        root.command(name)(fn)
