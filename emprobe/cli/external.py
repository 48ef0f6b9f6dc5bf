"""Results from elsewhere on the command line: ``emprobe consistency --results A B ...`` and the helpers of
``emprobe dynamics --results GLOB`` / ``emprobe priors --target FILE[:score] --prompts P --model M``.

``--results`` takes one value; further paths after it (a shell-expanded glob: ``--results runs/*.json``) arrive as
positional arguments and are read too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from emprobe.cli.common import apply_threads, check_threads, guard_out, overwrite_option, print_result, threads_option
from emprobe.errors import ConfigError


def result_paths(results: str | None, extra: Any) -> list[str]:
    """``--results`` plus any further paths given positionally."""
    paths = ([results] if results else []) + [str(p) for p in (extra or [])]
    if not paths:
        raise ConfigError("--results: give result files, a folder, a glob or a runs.yaml")
    return paths


def read_results(results: str | None, extra: Any, score: str) -> Any:
    """``--results`` (plus further paths) read and checked without torch: a malformed file is a one-line error in
    about a second, before any analysis is imported."""
    from emprobe.evaluation.external import SCORES, load_results
    from emprobe.validate import one_of

    one_of(score, SCORES, "score")
    return load_results(result_paths(results, extra))


def one_sweep_dir(sweep_dir: Any) -> Path:
    """The single sweep directory (or run) of ``emprobe dynamics`` without ``--results``."""
    dirs = list(sweep_dir or [])
    if len(dirs) != 1:
        raise ConfigError(f"give one sweep directory or run (got {len(dirs)}), or --results GLOB for results "
                          "evaluated elsewhere")
    return dirs[0]


def external_priors_cmd(target, prompts, model, features, layers, estimator, pca_on, train_prompts, sesoi,
                        n_permutations, n_random, seed, threads, out, overwrite: bool = False) -> None:
    """``emprobe priors --prompts``: claim 2 on a target evaluated elsewhere."""
    from emprobe.cli.common import default_threads
    from emprobe.outdir import check_out
    from emprobe.validate import check_args, model_arg, one_of

    if model is None and not features:
        raise ConfigError("--prompts needs --model (prompt activations are extracted) or --features (a store)")
    if features and len(features) > 1:
        raise ConfigError("--prompts takes one --features store")
    if model is not None:
        model_arg(model)
        check_out(Path(f"{out}-activations"), overwrite=overwrite)  # where the extracted activations are kept
    one_of(estimator, ("ridge", "paper"), "estimator")
    one_of(pca_on, ("eval", "train"), "pca_on")
    check_args(prompts=prompts)
    from emprobe.evaluation.external.load import load_results, parse_target

    load_results(parse_target(str(target))[0])  # a missing or malformed result file fails here, before torch
    from emprobe.analysis.priors import priors

    apply_threads(threads)
    jobs = threads or default_threads() or 1
    print_result(priors(features[0] if features else None, str(target), prompts=prompts, model=model,
                        layers=layers, estimator=estimator, pca_on=pca_on, train_prompts=train_prompts, sesoi=sesoi,
                        n_permutations=n_permutations, n_random=n_random, seed=seed, n_jobs=jobs,
                        store_out=Path(f"{out}-activations") if model is not None else None), out, overwrite)


def consistency_cmd(
    more: Optional[list[str]] = typer.Argument(None, help="further result files (e.g. a shell-expanded glob)"),
    results: Optional[str] = typer.Option(
        None, "--results", help="results of runs on different datasets or models: files, a folder, a glob or a "
                                "runs.yaml (em-generalization eval_*.json, per-sample CSVs, emprobe score tables)"),
    score: str = typer.Option("aligned", help="aligned | harmless | coherent | em_rate | margin"),
    sesoi: float = typer.Option(0.1, help="smallest within-category correlation that counts as agreement"),
    n_boot: int = typer.Option(2000, help="bootstrap draws over questions"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("analysis/consistency"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Per-question scores across runs (Spearman/Pearson, bootstrap CIs) and how much of the agreement is topic."""
    from emprobe.analysis.args import check_consistency, check_runs

    check_threads(threads)
    check_consistency(score=score, sesoi=sesoi, n_boot=n_boot)
    guard_out(out, overwrite)
    runs = read_results(results, more, score)
    check_runs(runs, score)
    from emprobe.analysis.consistency import consistency

    apply_threads(threads)
    print_result(consistency(runs, score=score, sesoi=sesoi, n_boot=n_boot, seed=seed), out, overwrite)


def register(root: typer.Typer) -> None:
    """Add ``consistency`` to the root app."""
    root.command("consistency")(consistency_cmd)
