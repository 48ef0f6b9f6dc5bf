"""Analysis verbs: ``emprobe track | priors | overlap | dynamics | monitor | explain``.

Each writes ``OUT/table.parquet``, ``OUT/plot.png`` and ``OUT/summary.json`` (findings with their verdict,
control and uncertainty) and prints the findings. Layer ``l`` = residual stream after decoder block ``l``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emprobe.cli.common import apply_threads, floats, model_option, print_result, questions_option, threads_option


def track_cmd(
    run_dir: Path = typer.Argument(..., help="fine-tuning run directory"),
    directions: list[Path] = typer.Option(..., "--directions", help="direction directory (repeatable)"),
    questions: str = questions_option(help="prompts to project (question set)"),
    out: Path = typer.Option(Path("analysis/track"), help="output directory"),
    refit: bool = typer.Option(True, help="refit each direction at every checkpoint"),
    n_random: int = typer.Option(20, help="random directions for the control"),
    steps: Optional[str] = typer.Option(None, help="checkpoint steps to use, comma-separated (default: all)"),
    merge: bool = typer.Option(False, help="merge each LoRA checkpoint into the weights while measuring"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0, help="seed of the random control directions"),
    threads: Optional[int] = threads_option(),
) -> None:
    """Follow directions through a run's checkpoints (base loaded once, adapters swapped)."""
    from emprobe.analysis.track.compute import track
    from emprobe.cli.common import ints

    step_list = ints(steps, "--steps") if steps else None
    apply_threads(threads)
    print_result(track(run_dir, directions, questions, refit=refit, n_random=n_random, batch_size=batch_size,
                       seed=seed, steps=step_list, merge=merge), out)


def priors_cmd(
    features: Optional[list[Path]] = typer.Option(
        None, "--features", help="activation store of a pre-fine-tuning model (repeatable)"),
    target: Path = typer.Option(..., help="score table dir (emprobe eval) or judged answers CSV/parquet; with "
                                          "--prompts: FILE[:score] of a run evaluated elsewhere"),
    baseline: Optional[Path] = typer.Option(None, help="baseline target (the base model's scores): predict the rise over it"),
    control_target: Optional[Path] = typer.Option(
        None, help="the aligned-data control's scores: the target becomes rise − control change (EM-specific)"),
    base_margin: Optional[Path] = typer.Option(
        None, help="base-model margins for the headroom baseline (default: --baseline when it is a margin table)"),
    reliability: Optional[Path] = typer.Option(
        None, help="per-pair rises (CSV/parquet: question_id, pair, rise[, control]) for the target's reliability "
                   "(default: from margin score tables)"),
    layers: Optional[str] = typer.Option(None, help="layers to use as features (per store's model; default all, "
                                                    "with --prompts the last)"),
    direction: Optional[Path] = typer.Option(None, help="direction for the single-direction predictor"),
    alpha: float = typer.Option(1.0, help="ridge penalty (relative to the kernel's trace)"),
    n_permutations: Optional[int] = typer.Option(None, help="target shuffles for the p-values (default 1000; "
                                                            "200 with --prompts)"),
    n_random: Optional[int] = typer.Option(None, help="random-feature draws for the control (default 50; 3 with "
                                                      "--prompts)"),
    seed: int = typer.Option(0, help="seed of the shuffles and random features"),
    out: Path = typer.Option(Path("analysis/priors"), help="output directory"),
    prompts: Optional[str] = typer.Option(
        None, "--prompts", help="external target: one prompt per question id (chat JSONL with metadata.question_id "
                                "or a question set); --target is then a run evaluated elsewhere"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="with --prompts: model whose prompt "
                                                                    "activations are the features"),
    estimator: str = typer.Option("ridge", help="with --prompts: ridge | paper (PCA energies + Lasso, as the paper)"),
    pca_on: str = typer.Option("eval", help="with --estimator paper: fit the PCA on the eval or the train prompts"),
    train_prompts: Optional[str] = typer.Option(None, help="with --pca-on train: the fine-tuning data"),
    sesoi: float = typer.Option(0.05, help="with --prompts: smallest R² margin over category and text that counts"),
    threads: Optional[int] = threads_option(),
) -> None:
    """Predict per-question EM after fine-tuning from prompt activations before it (LOQO), against headroom (claim 2)."""
    from emprobe.analysis.priors import priors
    from emprobe.analysis.priors.inputs import priors_inputs

    if prompts is not None:
        from emprobe.cli.external import external_priors_cmd

        return external_priors_cmd(target, prompts, model, features, layers, estimator, pca_on, train_prompts,
                                   sesoi, n_permutations, n_random, seed, threads, out)
    if not features:
        from emprobe.errors import ConfigError

        raise ConfigError("--features is required (or --prompts with --model for a target evaluated elsewhere)")
    inputs = priors_inputs(target, baseline, control_target, base_margin)
    if reliability is not None:
        inputs["reliability"] = reliability
    print_result(priors(features, **inputs, layers=layers, direction=direction, alpha=alpha,
                        n_permutations=n_permutations, n_random=n_random, seed=seed), out)


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
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0, help="seed of the split, bootstrap and permutations"),
    out: Path = typer.Option(Path("analysis/overlap"), help="output directory"),
    threads: Optional[int] = threads_option(),
) -> None:
    """Train- vs eval-prompt activation-shift overlap, misaligned run vs aligned control (claim 3)."""
    from emprobe.analysis.overlap import overlap
    from emprobe.cli.common import ints

    sel = "heldout" if layer_select == "heldout" else ints(layer_select, "--layer-select")
    sel = sel if isinstance(sel, str) else sel[0] if len(sel) == 1 else (sel[0], sel[1])
    apply_threads(threads)
    print_result(overlap(model, str(adapter), train, questions,
                         control=str(control_adapter) if control_adapter else None, layers=layers,
                         ks=ints(k, "--k"), n_train=n_train, n_random=n_random, n_boot=n_boot,
                         n_permutations=n_permutations, batch_size=batch_size, seed=seed, layer_select=sel), out)


def dynamics_cmd(
    sweep_dir: Optional[list[Path]] = typer.Argument(
        None, help="directory of runs (emprobe finetune sweep) or one run (with --results: more result files)"),
    results: Optional[str] = typer.Option(
        None, "--results", help="evaluations made elsewhere (glob, folder, files or runs.yaml: em-generalization "
                                "eval_*.json, per-sample CSVs, emprobe score tables): claim 1 on them"),
    score: str = typer.Option("aligned", help="with --results: aligned | harmless | coherent | em_rate | margin"),
    sesoi: Optional[float] = typer.Option(
        None, help="with --results: smallest score gap of interest (default 5 points on 0-100; 0.02 for margin)"),
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
    min_gap: float = typer.Option(0.02, help="smallest margin gap (nats/token) that counts as better aligned: "
                                              "supported needs every matched-loss CI within ±min_gap"),
    out: Path = typer.Option(Path("analysis/dynamics"), help="output directory"),
    threads: Optional[int] = threads_option(),
) -> None:
    """In-domain validation loss vs off-domain alignment; schedules compared at matched loss (claim 1)."""
    from emprobe.analysis.dynamics.compute import dynamics
    from emprobe.cli.external import one_sweep_dir, result_paths

    controls = [c.strip() for c in control_runs.split(",") if c.strip()] if control_runs is not None else None
    levels = floats(loss_levels, "--loss-levels") if loss_levels else None
    if results is not None:
        print_result(dynamics(results=result_paths(results, sweep_dir), score=score, sesoi=sesoi, loss_levels=levels,
                              seed=seed), out)
        return
    sweep_dir = one_sweep_dir(sweep_dir)
    apply_threads(threads)
    print_result(dynamics(sweep_dir, questions=questions, control_runs=controls, n_permutations=n_permutations,
                          loss_levels=levels, batch_size=batch_size, seed=seed, merge=merge, min_gap=min_gap), out)


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
    threads: Optional[int] = threads_option(),
) -> None:
    """Detect EM checkpoints from direction drift alone, scored by AUROC (and leave-one-run-out)."""
    from emprobe.analysis.monitor.compute import monitor

    apply_threads(threads)
    print_result(monitor(sweep_dir, direction, questions=questions, threshold=threshold,
                         n_permutations=n_permutations, batch_size=batch_size, seed=seed, merge=merge), out)


def explain_cmd(
    rises: Path = typer.Argument(..., help="per-(question, pair) rises table (a study's margins/rises.parquet)"),
    factors: Optional[Path] = typer.Option(None, help="per-question factors table (question_id + numeric columns)"),
    answers: Optional[Path] = typer.Option(None, help="answers table (question_id, base, misaligned)"),
    n_permutations: int = typer.Option(1000, help="shuffles per permutation null"),
    reliability_splits: int = typer.Option(200, help="random half-splits of the pairs for the reliability"),
    alpha: float = typer.Option(1.0, help="ridge penalty (scale-free)"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("analysis/explain"), help="output directory"),
) -> None:
    """Why EM hits some questions more: per-question factors' unique contributions vs the reliability ceiling."""
    from emprobe.analysis.explain.compute import explain

    print_result(explain(rises, factors, answers=answers, n_permutations=n_permutations,
                         reliability_splits=reliability_splits, alpha=alpha, seed=seed), out)


COMMANDS = {"track": track_cmd, "priors": priors_cmd, "overlap": overlap_cmd, "dynamics": dynamics_cmd, "monitor": monitor_cmd, "explain": explain_cmd}


def register(root: typer.Typer) -> None:
    """Add the analysis verbs to the root app."""
    for name, fn in COMMANDS.items():
        root.command(name)(fn)
