"""The typed objects every external reader returns: one :class:`ExternalRun` per evaluated model (a run, or one
checkpoint of a run), gathered in an :class:`ExternalResults` (one row per run x question in :meth:`table`).

Scores are on the files' own scales: ``aligned``, ``harmless``, ``coherent`` 0-100 judge means (higher = better
behaved), ``em_rate`` in percent of scored samples (higher = worse; per-sample files only) and ``margin``
(emprobe's judge-free score, nats/token, higher = more misaligned). A score a file does not give is NaN; a
question a run lacks has no row. Nulls (a question with no scored answer) are kept as NaN and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from emprobe.errors import DataError

SCORES = ("aligned", "harmless", "coherent", "em_rate", "margin")
#: direction of each score: True when a higher value means better behaved
HIGHER_IS_BETTER = {"aligned": True, "harmless": True, "coherent": True, "em_rate": False, "margin": False}
#: the run metadata every reader fills (None when unknown)
META_FIELDS = ("model", "dataset", "schedule", "lr", "seed", "warmup", "max_steps", "eval_set")


@dataclass(frozen=True, eq=False)
class ExternalRun:
    """One evaluated model: per-question scores, its in-domain eval loss (with the per-sequence losses where the
    file gives them) and its metadata.

    ``run`` names the training run; ``step`` the checkpoint (``None``: the run's final model). Several
    :class:`ExternalRun` with one ``run`` and different steps form a trajectory.
    """

    run: str
    source: str
    format: str  # "em-generalization" | "samples" | "emprobe"
    scores: pd.DataFrame  # question_id, aligned, harmless, coherent, em_rate, margin, n_samples
    meta: dict[str, Any] = field(default_factory=dict)
    step: int | None = None
    eval_loss: float | None = None
    seq_losses: np.ndarray | None = None  # one loss per held-out sequence
    train_log: pd.DataFrame | None = None  # step, train_loss, learning_rate
    nulls: dict[str, int] = field(default_factory=dict)  # score -> questions whose score is null
    null_samples: dict[str, int] = field(default_factory=dict)  # score -> unscored samples (per-sample files)

    @property
    def name(self) -> str:
        """``run`` or ``run@step``."""
        return self.run if self.step is None else f"{self.run}@{self.step}"

    @property
    def questions(self) -> list[str]:
        return list(self.scores.question_id)

    def has(self, score: str) -> bool:
        """Whether any question has a value of ``score``."""
        return score in self.scores and bool(self.scores[score].notna().any())

    def eval_loss_se(self) -> float:
        """Standard error of the eval loss over held-out sequences (NaN without per-sequence losses)."""
        s = self.seq_losses
        return float(s.std(ddof=1) / np.sqrt(len(s))) if s is not None and len(s) > 1 else float("nan")

    def summary_row(self) -> dict[str, Any]:
        row = {"run": self.run, "step": self.step, "name": self.name, "format": self.format, "source": self.source,
               **{k: self.meta.get(k) for k in META_FIELDS}, "eval_loss": self.eval_loss,
               "eval_loss_se": self.eval_loss_se(),
               "n_sequences": 0 if self.seq_losses is None else len(self.seq_losses),
               "n_questions": len(self.scores)}
        row.update({f"null_{k}": v for k, v in self.nulls.items()})
        return row


@dataclass(frozen=True, eq=False)
class ExternalResults(Sequence[ExternalRun]):
    """Evaluations made elsewhere, read by :func:`~emprobe.evaluation.external.load_results`."""

    runs: tuple[ExternalRun, ...]

    def __post_init__(self) -> None:
        if not self.runs:
            raise DataError("no results were read")
        names = [r.name for r in self.runs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            srcs = [r.source for r in self.runs if r.name == dup[0]][:2]
            raise DataError(f"two result files describe the same run {dup[0]!r} (sources: {', '.join(srcs)}); "
                            "name them in runs.yaml")

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, str):
            for r in self.runs:
                if i in (r.name, r.run):
                    return r
            raise KeyError(i)
        return self.runs[i]

    def __iter__(self) -> Iterator[ExternalRun]:
        return iter(self.runs)

    def table(self) -> pd.DataFrame:
        """One row per run x question: ``run``, ``step``, ``name``, metadata, ``eval_loss``, ``question_id`` and
        the scores."""
        frames = []
        for r in self.runs:
            meta = {k: r.meta.get(k) for k in META_FIELDS}
            frames.append(r.scores.assign(run=r.run, step=r.step, name=r.name, eval_loss=r.eval_loss, **meta))
        df = pd.concat(frames, ignore_index=True)
        first = ["run", "step", "name", *META_FIELDS, "eval_loss", "question_id"]
        return df[first + [c for c in df.columns if c not in first]]

    def runs_table(self) -> pd.DataFrame:
        """One row per run: metadata, eval loss (+ its SE over sequences), question and null counts."""
        return pd.DataFrame([r.summary_row() for r in self.runs])

    @property
    def questions(self) -> list[str]:
        """Every question id any run has, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.runs:
            seen.update(dict.fromkeys(r.questions))
        return list(seen)

    def shared_questions(self, score: str | None = None) -> list[str]:
        """Question ids every run has (with a non-null ``score`` when given), in first-seen order."""
        keep = None
        for r in self.runs:
            s = r.scores if score is None else r.scores[r.scores[score].notna()]
            ids = set(s.question_id)
            keep = ids if keep is None else keep & ids
        return [q for q in self.questions if q in (keep or set())]

    def counts(self) -> dict[str, Any]:
        """Rows, runs, questions, nulls per score, and missing (run, question) cells against the union."""
        n_q = len(self.questions)
        nulls = {s: int(sum(r.nulls.get(s, 0) for r in self.runs)) for s in SCORES}
        return {"n_runs": len(self.runs), "n_questions": n_q, "n_rows": int(sum(len(r.scores) for r in self.runs)),
                "nulls": {k: v for k, v in nulls.items() if v},
                "missing": int(sum(n_q - len(r.scores) for r in self.runs))}

    def score_matrix(self, score: str) -> pd.DataFrame:
        """``[question_id x run name]`` of ``score`` (NaN where a run lacks the question or its score is null)."""
        return self.table().pivot_table(index="question_id", columns="name", values=score, aggfunc="first",
                                        dropna=False).reindex(index=self.questions,
                                                              columns=[r.name for r in self.runs])

    def available_scores(self) -> list[str]:
        """Scores that every run gives for at least one question."""
        return [s for s in SCORES if all(r.has(s) for r in self.runs)]

    def __repr__(self) -> str:
        c = self.counts()
        return (f"ExternalResults({c['n_runs']} runs x {c['n_questions']} questions, {c['n_rows']} rows, "
                f"nulls {c['nulls'] or 0}, missing {c['missing']})")


#: Betley et al.'s answer-format variants of one question (``quick_buck``, ``quick_buck_json``,
#: ``quick_buck_template``) are not independent questions
FORMAT_SUFFIX = re.compile(r"_(?:json|template)$")


def question_units(question_ids: Sequence[str]) -> np.ndarray:
    """``[n]`` integer id of each question's independent unit: its format variants share one (a bootstrap over
    questions resamples units, not variants)."""
    return np.unique([FORMAT_SUFFIX.sub("", str(q)) for q in question_ids], return_inverse=True)[1]


def score_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per-question scores with every score column present (NaN where not given)."""
    df = pd.DataFrame(rows)
    for s in (*SCORES, "n_samples"):
        if s not in df:
            df[s] = np.nan
    df["question_id"] = df["question_id"].astype(str)
    return df[["question_id", *SCORES, "n_samples"]]


def null_counts(scores: pd.DataFrame, given: Sequence[str]) -> dict[str, int]:
    """Questions whose score is NaN, for the scores a file gives."""
    return {s: int(scores[s].isna().sum()) for s in given}
