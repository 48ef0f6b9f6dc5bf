"""Analysis verbs: ``emprobe track | priors | overlap | dynamics | monitor | explain``.

Each writes ``OUT/table.parquet``, ``OUT/plot.png`` and ``OUT/summary.json`` (findings with their verdict,
control and uncertainty) and prints the findings. Layer ``l`` = residual stream after decoder block ``l``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emprobe.cli.common import (apply_threads, check_threads, floats, guard_out, model_option, overwrite_option,
                                print_result, questions_option, threads_option)
from emprobe.cli.priors import priors_cmd
from emprobe.validate import check_args, check_as


def track_cmd(
    run_dir: Path = typer.Argument(..., help="fine-tuning run directory"),
    directions: list[Path] = typer.Option(..., "--directions", help="direction directory (repeatable)"),
    questions: str = questions_option(help="prompts to project (question set)"),
    out: Path = typer.Option(Path("analysis/track"), help="output directory"),
    overwrite: bool = overwrite_option(),
    refit: bool = typer.Option(True, help="refit each direction at every checkpoint"),
    n_random: int = typer.Option(20, help="random directions for the control"),
    steps: Optional[str] = typer.Option(None, help="checkpoint steps to use, comma-separated (default: all)"),
    merge: bool = typer.Option(False, help="merge each LoRA checkpoint into the weights while measuring"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0, help="seed of the random control directions"),
    threads: Optional[int] = threads_option(),
) -> None:
    """Follow directions through a run's checkpoints (base loaded once, adapters swapped)."""
    from emprobe.cli.common import ints

    step_list = ints(steps, "--steps") if steps else None
    check_threads(threads)
    check_args(run=run_dir, directions=directions, questions=questions, n_random=n_random, batch_size=batch_size,
               steps=step_list)
    guard_out(out, overwrite)
    from emprobe.analysis.track.compute import track

    apply_threads(threads)
    print_result(track(run_dir, directions, questions, refit=refit, n_random=n_random, batch_size=batch_size,
                       seed=seed, steps=step_list, merge=merge), out, overwrite)


def overlap_cmd(
    adapter: Path = typer.Option(..., help="misaligned fine-tune: LoRA checkpoint (or full model) directory"),
    control_adapter: Optional[Path] = typer.Option(
        None, help="the aligned-data control's checkpoint (the comparison that decides the claim)"),
    model: str = model_option("base model (alias, hub id or directory)"),
    train: str = typer.Option("builtin:risky-finance", help="training chat data (its prompts are used)"),
    questions: str = questions_option(help="evaluation question set"),
    layers: str = typer.Option("all", help="layers to sweep"),
    k: str = typer.Option("1,2,4,8", help="subspace sizes to sweep"),
    layer_select: str = typer.Option(
        "heldout", help="'heldout' (layer and k chosen on half the eval questions, tested on the other), "
                        "a layer fixed a priori, or 'LAYER,K'"),
    n_train: int = typer.Option(64, help="training prompts to use"),
    n_random: int = typer.Option(200, help="random subspaces (secondary reference)"),
    n_boot: int = typer.Option(1000, help="bootstrap draws for the misaligned − control CI"),
    n_permutations: int = typer.Option(1000, help="question shuffles for the pair-similarity p"),
    sesoi: float = typer.Option(0.05, help="smallest misaligned − control mean-removed overlap of interest"),
    sesoi_pair_rho: float = typer.Option(0.1, help="smallest misaligned − control pair-similarity ρ of interest"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0, help="seed of the split, bootstrap and permutations"),
    out: Path = typer.Option(Path("analysis/overlap"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Train- vs eval-prompt activation-shift overlap, misaligned run vs aligned control (claim 3)."""
    from emprobe.cli.common import ints

    check_threads(threads)
    check_args(model=model, questions=questions, batch_size=batch_size, n_random=n_random,
               n_permutations=n_permutations)
    check_as("checkpoint", adapter, "adapter")
    check_as("checkpoint", control_adapter, "control_adapter")
    guard_out(out, overwrite)
    from emprobe.analysis.overlap import overlap

    sel = "heldout" if layer_select == "heldout" else ints(layer_select, "--layer-select")
    sel = sel if isinstance(sel, str) else sel[0] if len(sel) == 1 else (sel[0], sel[1])
    apply_threads(threads)
    print_result(overlap(model, str(adapter), train, questions,
                         control=str(control_adapter) if control_adapter else None, layers=layers,
                         ks=ints(k, "--k"), n_train=n_train, n_random=n_random, n_boot=n_boot,
                         n_permutations=n_permutations, batch_size=batch_size, seed=seed, layer_select=sel,
                         sesoi=sesoi, sesoi_pair_rho=sesoi_pair_rho), out,
                 overwrite)


def dynamics_cmd(
    sweep_dir: Optional[list[Path]] = typer.Argument(
        None, help="directory of runs (emprobe finetune sweep) or one run (with --results: more result files)"),
    results: Optional[str] = typer.Option(
        None, "--results", help="evaluations made elsewhere (glob, folder, files or runs.yaml: em-generalization "
                                "eval_*.json, per-sample CSVs, emprobe score tables): claim 1 on them"),
    score: str = typer.Option("aligned", help="with --results: aligned | harmless | coherent | em_rate | margin"),
    questions: str = questions_option(help="off-domain question set (margin score)"),
    control_runs: Optional[str] = typer.Option(
        None, help="aligned-data control runs, comma-separated names (default: runs trained on *-aligned data)"),
    loss_levels: Optional[str] = typer.Option(
        None, help="matched in-domain loss levels, comma-separated (default: lower end + quartiles of the "
                   "shared range)"),
    n_permutations: int = typer.Option(1000),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0, help="seed of the bootstrap and permutations"),
    merge: bool = typer.Option(False, help="score each LoRA checkpoint with its adapter merged (faster)"),
    sesoi_fraction: float = typer.Option(
        0.25, help="SESOI: this fraction of the established EM-specific rise is the smallest margin gap of interest"),
    sesoi: Optional[float] = typer.Option(
        None, "--sesoi", "--min-gap", help="absolute SESOI instead (nats/token; for when no rise is known); with "
                                           "--results the smallest score gap of interest (default 5 points on "
                                           "0-100; 0.02 for margin)"),
    n_boot: int = typer.Option(2000, help="hierarchical bootstrap draws (runs, then questions)"),
    out: Path = typer.Option(Path("analysis/dynamics"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """In-domain validation loss vs off-domain alignment; schedules compared at matched loss (claim 1)."""
    check_threads(threads)
    check_args(questions=questions, n_permutations=n_permutations, batch_size=batch_size)
    if sesoi is not None:
        check_as("min_gap", sesoi, "sesoi")
    guard_out(out, overwrite)
    from emprobe.cli.external import one_sweep_dir, read_results

    controls = [c.strip() for c in control_runs.split(",") if c.strip()] if control_runs is not None else None
    levels = floats(loss_levels, "--loss-levels") if loss_levels else None
    if results is not None:
        runs = read_results(results, sweep_dir, score)
        from emprobe.analysis.dynamics.compute import dynamics

        print_result(dynamics(results=runs, score=score, sesoi=sesoi, loss_levels=levels, seed=seed), out, overwrite)
        return
    sweep_dir = one_sweep_dir(sweep_dir)
    check_as("sweep", sweep_dir, "sweep_dir")
    from emprobe.analysis.dynamics.compute import dynamics

    apply_threads(threads)
    print_result(dynamics(sweep_dir, questions=questions, control_runs=controls, n_permutations=n_permutations,
                          loss_levels=levels, batch_size=batch_size, seed=seed, merge=merge,
                          sesoi_fraction=sesoi_fraction, sesoi=sesoi, n_boot=n_boot), out,
                 overwrite)


def monitor_cmd(
    sweep_dir: Path = typer.Argument(..., help="directory of runs or one run"),
    direction: Path = typer.Option(..., help="base-model direction directory"),
    questions: str = questions_option(help="prompts for drift and margins"),
    threshold: float = typer.Option(0.1, help="EM label: margin rise over step 0 above this (nats/token)"),
    n_permutations: int = typer.Option(1000),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0, help="seed of the label permutations"),
    merge: bool = typer.Option(False, help="measure each LoRA checkpoint with its adapter merged (faster)"),
    out: Path = typer.Option(Path("analysis/monitor"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Detect EM checkpoints from direction drift alone, scored by AUROC (and leave-one-run-out)."""
    check_threads(threads)
    check_args(direction=direction, questions=questions, threshold=threshold, n_permutations=n_permutations,
               batch_size=batch_size)
    check_as("sweep", sweep_dir, "sweep_dir")
    guard_out(out, overwrite)
    from emprobe.analysis.monitor.compute import monitor

    apply_threads(threads)
    print_result(monitor(sweep_dir, direction, questions=questions, threshold=threshold,
                         n_permutations=n_permutations, batch_size=batch_size, seed=seed, merge=merge), out, overwrite)


def explain_cmd(
    rises: Path = typer.Argument(..., help="per-(question, pair) rises table (a study's margins/rises.parquet), "
                                           "or a misaligned run directory with --control"),
    control: Optional[Path] = typer.Option(None, help="the aligned-data control run: RISES is then a run, scored "
                                                      "against it on --questions (ep.margins)"),
    questions: str = questions_option(),
    factors: Optional[Path] = typer.Option(None, help="per-question factors table (question_id + numeric columns)"),
    prior_features: Optional[Path] = typer.Option(
        None, help="per-question prior features (question_id + numeric columns, e.g. pre-fine-tuning activations): "
                   "their ridge prediction is stacked as a factor, refit inside every fold"),
    answers: Optional[Path] = typer.Option(None, help="answers table (question_id, base, misaligned)"),
    n_permutations: int = typer.Option(1000, help="shuffles per permutation null"),
    reliability_splits: int = typer.Option(200, help="random half-splits of the pairs for the reliability"),
    alpha: float = typer.Option(1.0, help="ridge penalty (scale-free)"),
    sesoi: float = typer.Option(0.10, help="smallest out-of-sample R² of interest (declared before looking)"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("analysis/explain"), help="output directory"),
    overwrite: bool = overwrite_option(),
) -> None:
    """Why EM hits some questions more: per-question factors' unique contributions vs the reliability ceiling."""
    check_args(n_permutations=n_permutations)
    check_as("run" if control is not None else "table", rises, "rises")
    check_as("run", control, "control")
    for name, table in (("factors", factors), ("answers", answers)):
        check_as("table", table, name)
    guard_out(out, overwrite)
    from emprobe.analysis.explain.compute import explain

    print_result(explain(rises, factors, control=control, questions=questions, prior_features=prior_features,
                         answers=answers, n_permutations=n_permutations, reliability_splits=reliability_splits,
                         alpha=alpha, sesoi=sesoi, seed=seed), out, overwrite)


COMMANDS = {"track": track_cmd, "priors": priors_cmd, "overlap": overlap_cmd, "dynamics": dynamics_cmd, "monitor": monitor_cmd, "explain": explain_cmd}


def register(root: typer.Typer) -> None:
    """Add the analysis verbs to the root app."""
    for name, fn in COMMANDS.items():
        root.command(name)(fn)
