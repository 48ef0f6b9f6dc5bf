"""``emprobe priors`` (claim 2): predict per-question EM after fine-tuning from prompt activations before it.

Only parses options and calls :func:`emprobe.analysis.priors.priors` (``--prompts``: a target evaluated elsewhere,
:func:`emprobe.cli.external.external_priors_cmd`). Writes ``OUT/table.parquet``, ``OUT/plot.png`` and
``OUT/summary.json`` and prints the findings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from emprobe.cli.common import guard_out, overwrite_option, print_result, threads_option
from emprobe.validate import check_args, check_as

_O = typer.Option

# the options, each declared once here (the command's signature below only names them)
_Features = Annotated[Optional[list[Path]], _O(
    "--features", help="activation store of a pre-fine-tuning model (repeatable)")]
_Target = Annotated[Path, _O(help="score table dir (emprobe eval) or judged answers CSV/parquet; with "
                                  "--prompts: FILE[:score] of a run evaluated elsewhere")]
_Baseline = Annotated[Optional[Path], _O(help="baseline target (the base model's scores): predict the rise over it")]
_ControlTarget = Annotated[Optional[Path], _O(
    help="the aligned-data control's scores: the target becomes rise − control change (EM-specific)")]
_BaseMargin = Annotated[Optional[Path], _O(
    help="base-model margins for the headroom baseline (default: --baseline when it is a margin table)")]
_Reliability = Annotated[Optional[Path], _O(
    help="per-pair rises (CSV/parquet: question_id, pair, rise[, control]) for the target's reliability "
         "(default: from margin score tables)")]
_Layers = Annotated[Optional[str], _O(help="layers to use as features (per store's model; default all, "
                                           "with --prompts the last)")]
_Direction = Annotated[Optional[Path], _O(help="direction for the single-direction predictor")]
_Categories = Annotated[Optional[Path], _O(
    help="question categories (CSV/parquet: question_id, category) for the topic control (default: the "
         "score table's own categories)")]
_Sesoi = Annotated[Optional[float], _O(
    help="smallest effect of interest, declared before looking: the true ρ beyond the controls (default "
         "0.3); with --prompts the R² margin over category and text (default 0.05)")]
_NSim = Annotated[int, _O(help="simulated targets per true ρ (calibration and power)")]
_Alpha = Annotated[float, _O(help="ridge penalty (relative to the kernel's trace)")]
_NPermutations = Annotated[Optional[int], _O(help="target shuffles for the p-values (default 1000; "
                                                   "200 with --prompts)")]
_NRandom = Annotated[Optional[int], _O(help="random-feature draws for the control (default 50; 3 with "
                                             "--prompts)")]
_Seed = Annotated[int, _O(help="seed of the shuffles and random features")]
_Out = Annotated[Path, _O(help="output directory")]
_Prompts = Annotated[Optional[str], _O(
    "--prompts", help="external target: one prompt per question id (chat JSONL with metadata.question_id "
                      "or a question set); --target is then a run evaluated elsewhere")]
_Model = Annotated[Optional[str], _O("--model", "-m", help="with --prompts: model whose prompt "
                                                          "activations are the features")]
_Estimator = Annotated[str, _O(help="with --prompts: ridge | paper (PCA energies + Lasso, as the paper)")]
_PcaOn = Annotated[str, _O(help="with --estimator paper: fit the PCA on the eval or the train prompts")]
_TrainPrompts = Annotated[Optional[str], _O(help="with --pca-on train: the fine-tuning data")]


def priors_cmd(
    features: _Features = None, target: _Target = ..., baseline: _Baseline = None,
    control_target: _ControlTarget = None, base_margin: _BaseMargin = None, reliability: _Reliability = None,
    layers: _Layers = None, direction: _Direction = None, categories: _Categories = None, sesoi: _Sesoi = None,
    n_sim: _NSim = 400, alpha: _Alpha = 1.0, n_permutations: _NPermutations = None, n_random: _NRandom = None,
    seed: _Seed = 0, out: _Out = Path("analysis/priors"), overwrite: bool = overwrite_option(),
    prompts: _Prompts = None, model: _Model = None, estimator: _Estimator = "ridge", pca_on: _PcaOn = "eval",
    train_prompts: _TrainPrompts = None, threads: Optional[int] = threads_option(),
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
