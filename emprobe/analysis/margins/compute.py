"""``margins``: off-domain margins at the checkpoints of runs, and the EM-specific rise of each misaligned run over
its aligned-data control (``ep.margins``). Layer-free: the judge-free margin (mean per-token log-prob of a
question's misaligned reference answer minus its style-matched aligned one; positive leans misaligned).

Per question and reference pair the EM-specific rise is the misaligned run's margin change (last checkpoint minus
step 0) minus its control's change: the part of the rise that belongs to the narrow misaligned data rather than
to fine-tuning as such. The scoring loop (each distinct model scored once, LoRA checkpoints in mixed-adapter
batches) is :mod:`.scoring`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd

from emprobe.analysis.margins.result import RISE_COLUMNS, MarginsResult
from emprobe.analysis.margins.scoring import score_runs
from emprobe.errors import DataError

#: one row per checkpoint (the per-question ``margin`` averaged into ``ood_score``)
CHECKPOINT_COLUMNS = ("run", "schedule", "lr", "data", "step", "train_loss", "val_loss")


def margins(runs: Any, questions: Any = "builtin:em-core", *, controls: Any = None, steps: list[int] | None = None,
            trend_pairs: int | None = None, batch_size: int = 8, mixed: bool = True, merge: bool = False,
            cache: bool = False, n_permutations: int = 1000, seed: int = 0,
            log: Callable[[str], Any] | None = None) -> MarginsResult:
    """Margins of every question (per reference pair) at the checkpoints of ``runs``, and the EM-specific rises.

    ``runs``: a sweep directory, a run (directory or :class:`~emprobe.finetuning.Run`) or a list of them.
    ``questions``: a question set with reference answers (``builtin:NAME``, YAML or loaded). ``controls``: the
    aligned-data control runs — one run (the control of every run) or a mapping misaligned run name -> control
    run; each control is scored at step 0 and its last step, and each mapped pair gives per-question rises.
    ``steps``: the checkpoints to score (default every one); ``trend_pairs``: reference pairs scored at the
    intermediate checkpoints (default all). ``mixed``: score the LoRA checkpoints of all runs (and the base model)
    in mixed-adapter batches on one loaded base (default; ``False``: one checkpoint at a time, as full fine-tunes
    always are); ``merge``: merge each LoRA checkpoint scored alone into the weights while it is scored (faster
    than peft's adapter layers; exact restore); ``cache``: keep and reuse score tables under each run's ``eval/``.
    Each distinct model is scored once (see :mod:`emprobe.analysis.margins.scoring`).
    ``seed`` and ``n_permutations`` drive the bootstrap CIs and sign-flip tests of the findings.
    """
    from emprobe.data import load_questions

    run_list = resolve_runs(runs)
    contrasts = _contrasts(run_list, controls)
    qs = load_questions(questions).with_references()
    ctl_runs = list({c.name: c for c in contrasts.values()}.values())
    pairs, long, counts = score_runs(run_list, ctl_runs, qs, steps=steps, trend_pairs=trend_pairs,
                                     batch_size=batch_size, mixed=mixed, merge=merge, cache=cache, log=log)
    frames = [rises(pairs, mis, ctl.name).assign(run=mis) for mis, ctl in contrasts.items()]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*RISE_COLUMNS, "run"])
    meta = {"questions": qs.source, "questions_sha256": qs.sha256, "runs": [str(r.path) for r in run_list],
            "controls": {m: str(c.path) for m, c in contrasts.items()}, "checkpoints_scored": counts["scored"],
            "checkpoints_reused": counts["reused"], "trend_pairs": trend_pairs, "mixed": mixed}
    return MarginsResult(pairs=pairs, margins=long, rises=table, controls={m: c.name for m, c in contrasts.items()},
                         control_runs=tuple(c.name for c in ctl_runs), n_permutations=n_permutations, seed=seed,
                         meta=meta)


def _contrasts(run_list: list, controls: Any) -> dict:
    """``{misaligned run name: control Run}`` from ``controls`` (see :func:`margins`)."""
    from emprobe.finetuning import Run

    if controls is None:
        return {}
    if not isinstance(controls, dict):
        ctl = Run.load(controls)
        return {r.name: ctl for r in run_list if r.name != ctl.name}
    names = {r.name for r in run_list}
    unknown = [m for m in controls if m not in names]
    if unknown:
        raise DataError(f"controls names run {unknown[0]!r}, which is not among the runs ({', '.join(sorted(names))})")
    return {m: Run.load(c) for m, c in controls.items()}


def rises(pairs: pd.DataFrame, run: str, control: str) -> pd.DataFrame:
    """Per question and pair: base margin, misaligned change, control change, EM-specific rise (mis − control),
    each run's change taken from step 0 to its own last scored step."""
    def at(r: str, last: bool):
        g = pairs[pairs.run == r]
        return g[g.step == (g.step.max() if last else 0)].set_index(["question_id", "pair"]).margin

    base = at(run, False)
    mis, ctl = at(run, True).reindex(base.index), at(control, True).reindex(base.index)
    df = pd.DataFrame({"base": base, "misaligned_change": mis - base, "control_change": ctl - base}).dropna()
    df["em_rise"] = df.misaligned_change - df.control_change
    cats = pairs.drop_duplicates("question_id").set_index("question_id").category
    return df.reset_index().assign(category=lambda x: cats.loc[x.question_id].to_numpy())


def resolve_runs(runs: Any) -> list:
    """Runs from a sweep directory (every ``*/run.json`` under it), one run directory, a :class:`Run`, or a
    list of runs / run directories; sorted by name for a sweep directory, in the given order otherwise."""
    from emprobe.finetuning import Run

    if isinstance(runs, Run):
        return [runs]
    if isinstance(runs, (str, Path)):
        root = Path(runs)
        if (root / "run.json").is_file():
            return [Run.load(root)]
        found = [Run.load(p.parent) for p in sorted(root.glob("*/run.json"))]
        if not found:
            raise DataError(f"{root}: no run directories (no */run.json)")
        return found
    out = [Run.load(r) for r in runs]
    if not out:
        raise DataError("no runs given")
    names = [r.name for r in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"two runs share the directory name {dup[0]!r}; runs are told apart by name")
    return out


def checkpoint_table(margins: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, checkpoint) with ``ood_score`` = the mean per-question margin."""
    keys = [c for c in CHECKPOINT_COLUMNS if c in margins.columns] + \
           [c for c in ("control",) if c in margins.columns]
    g = margins.groupby(["run", "step"], sort=False)
    first = g[[c for c in keys if c not in ("run", "step")]].first()
    return first.assign(ood_score=g.margin.mean()).reset_index()[keys + ["ood_score"]]
