"""``emprobe mitigations``: training-time mitigations against the unmitigated runs at matched in-domain loss, and
claim 1's positive control (writes ``OUT/table.parquet``, ``curves.parquet``, ``plot.png``, ``summary.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emprobe.cli.common import (apply_threads, check_threads, guard_out, overwrite_option, print_result,
                                questions_option, threads_option)
from emprobe.validate import check_args, check_as


def mitigations_cmd(
    runs: Path = typer.Argument(..., help="directory of runs (each run's mitigation read from its run.json; "
                                          "'none' without any), one run, or a checkpoint table (parquet / CSV: run, "
                                          "mitigation, step, val_loss, question_id, margin[, unit, data, control])"),
    questions: str = questions_option(help="off-domain question set (margin score)"),
    heldout_questions: Optional[str] = typer.Option(
        None, help="in-domain held-out question set: its margin at step 0 and the last step gives the held-out cost"),
    heldout: Optional[Path] = typer.Option(None, help="in-domain held-out margins table instead (run, step, "
                                                      "question_id, margin)"),
    reference: str = typer.Option("none", help="the unmitigated runs' mitigation name"),
    control_runs: Optional[str] = typer.Option(
        None, help="aligned-data control runs, comma-separated names (default: runs trained on *-aligned data)"),
    sesoi: float = typer.Option(0.25, help="smallest fraction of the EM-specific rise removed that counts "
                                           "(declared before looking)"),
    alpha: float = typer.Option(0.05, help="error rate; CIs Bonferroni-corrected over the mitigations"),
    min_gap: Optional[float] = typer.Option(
        None, help="claim 1's positive control: an absolute SESOI for its gaps (nats/token; default: 25% of the "
                   "EM-specific rise)"),
    n_boot: int = typer.Option(2000, help="bootstrap draws (units, then questions)"),
    n_permutations: int = typer.Option(1000, help="claim 1's permutations in the positive control"),
    batch_size: int = typer.Option(8),
    merge: bool = typer.Option(False, help="score each LoRA checkpoint with its adapter merged (faster)"),
    seed: int = typer.Option(0, help="seed of the bootstrap and permutations"),
    out: Path = typer.Option(Path("analysis/mitigations"), help="output directory"),
    overwrite: bool = overwrite_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Each training-time mitigation vs the unmitigated runs at matched in-domain loss; claim 1's positive control."""
    check_threads(threads)
    check_args(batch_size=batch_size, n_permutations=n_permutations)
    table = runs.is_file() or runs.suffix.lower() in (".parquet", ".csv", ".tsv", ".gz")
    check_as("table" if table else "sweep", runs, "runs")
    if not table:
        check_args(questions=questions)
    check_as("table", heldout, "heldout")
    guard_out(out, overwrite)
    from emprobe.analysis.mitigations import mitigations
    from emprobe.io import read_table

    apply_threads(threads)
    controls = [c.strip() for c in control_runs.split(",") if c.strip()] if control_runs is not None else None
    claim1 = {"n_permutations": n_permutations, **({"min_gap": min_gap} if min_gap is not None else {})}
    print_result(mitigations(read_table(runs, "runs table") if table else runs, reference=reference,
                             heldout=read_table(heldout, "heldout table") if heldout is not None else None,
                             control_runs=controls, questions=questions, heldout_questions=heldout_questions,
                             sesoi=sesoi, alpha=alpha, n_boot=n_boot, seed=seed, claim1_kw=claim1,
                             batch_size=batch_size, merge=merge), out, overwrite)


def register(root: typer.Typer) -> None:
    root.command("mitigations")(mitigations_cmd)
