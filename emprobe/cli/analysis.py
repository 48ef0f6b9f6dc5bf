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
    categories: Optional[Path] = typer.Option(
        None, help="question categories (CSV/parquet: question_id, category) for the topic control (default: the "
                   "score table's own categories)"),
    sesoi: Optional[float] = typer.Option(
        None, help="smallest effect of interest, declared before looking: the true ρ beyond the controls (default "
                   "0.3); with --prompts the R² margin over category and text (default 0.05)"),
    n_sim: int = typer.Option(400, help="simulated targets per true ρ (calibration and power)"),
    alpha: float = typer.Option(1.0, help="ridge penalty (relative to the kernel's trace)"),
    n_permutations: Optional[int] = typer.Option(None, help="target shuffles for the p-values (default 1000; "
                                                            "200 with --prompts)"),
    n_random: Optional[int] = typer.Option(None, help="random-feature draws for the control (default 50; 3 with "
                                                      "--prompts)"),
    seed: int = typer.Option(0, help="seed of the shuffles and random features"),
    out: Path = typer.Option(Path("analysis/priors"), help="output directory"),
    overwrite: bool = overwrite_option(),
    prompts: Optional[str] = typer.Option(
        None, "--prompts", help="external target: one prompt per question id (chat JSONL with metadata.question_id "
                                "or a question set); --target is then a run evaluated elsewhere"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="with --prompts: model whose prompt "
                                                                    "activations are the features"),
    estimator: str = typer.Option("ridge", help="with --prompts: ridge | paper (PCA energies + Lasso, as the paper)"),
    pca_on: str = typer.Option("eval", help="with --estimator paper: fit the PCA on the eval or the train prompts"),
    train_prompts: Optional[str] = typer.Option(None, help="with --pca-on train: the fine-tuning data"),
    threads: Optional[int] = threads_option(),
) -> None:
    """Predict per-question EM after fine-tuning from prompt activations before it (LOQO), against headroom (claim 2)."""
    if prompts is None and not features:
        from emprobe.errors import ConfigError

        raise ConfigError("`features` is required (or --prompts with --model for a target evaluated elsewhere)")
    for f in features or []:
        check_as("store", f, "features")
    tables = (("baseline", baseline), ("control_target", control_target), ("base_margin", base_margin),
              ("reliability", reliability), *((("target", target),) if prompts is None else ()))
    for name, table in tables:  # with --prompts the target is FILE[:score], read before the model loads
        if table is None or not table.is_dir():  # a score table directory, or a CSV / parquet table
            check_as("table", table, name)
    check_args(direction=direction, **{k: v for k, v in (("n_permutations", n_permutations), ("n_random", n_random))
                                       if v is not None})
    guard_out(out, overwrite)
    if prompts is not None:
        from emprobe.cli.external import external_priors_cmd

        return external_priors_cmd(target, prompts, model, features, layers, estimator, pca_on, train_prompts,
                                   sesoi, n_permutations, n_random, seed, threads, out,
                                   overwrite)
    from emprobe.analysis.priors import priors
    from emprobe.analysis.priors.inputs import priors_inputs
    from emprobe.io import read_table

    inputs = priors_inputs(target, baseline, control_target, base_margin)
    if reliability is not None:
        inputs["reliability"] = reliability
    cats = read_table(categories, "categories table") if categories is not None else None
    print_result(priors(features, **inputs, categories=cats, layers=layers, direction=direction, alpha=alpha,
                        sesoi=sesoi, n_sim=n_sim, n_permutations=n_permutations,
                        n_random=n_random, seed=seed), out, overwrite)


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
