"""``ScoreTable``: per question x paraphrase x sample (or reference) scores of one model/checkpoint.

On disk (a directory, written atomically)::

    DIR/scores.parquet    tidy rows: margin -> one per reference answer, judge -> one per sampled answer
    DIR/summary.parquet   one row per question (margin +- se, or EM rate with its Wilson interval)
    DIR/manifest.json     metric, model spec + adapter/step, question-set name + sha256, settings, timing

A sweep over a run writes one such directory per checkpoint (``step-000025/``) plus ``summary.parquet``
(all per-question summaries with a ``step`` column) and ``manifest.json`` at its root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from emprobe.errors import ConfigError, DataError
from emprobe.io import atomic_dir, atomic_path, manifest, read_json, write_json

SCORES = "scores.parquet"
SUMMARY = "summary.parquet"
MANIFEST = "manifest.json"


@dataclass
class ScoreTable:
    """Scores of one model or checkpoint: ``scores`` (tidy rows), ``summary`` (per question), ``manifest``."""

    scores: pd.DataFrame
    summary: pd.DataFrame
    manifest: dict[str, Any]

    @property
    def metric(self) -> str:
        return self.manifest.get("metric", "?")

    @property
    def step(self) -> int | None:
        return self.manifest.get("step")

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the three files into ``path`` atomically; output emprobe wrote before is replaced only with
        ``overwrite``, and nothing else ever (see :mod:`emprobe.outdir`)."""
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            self.scores.to_parquet(tmp / SCORES, index=False)
            self.summary.to_parquet(tmp / SUMMARY, index=False)
            write_json(tmp / MANIFEST, self.manifest)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ScoreTable":
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise DataError(f"{path}: not an emprobe score table (no {MANIFEST})")
        return cls(pd.read_parquet(path / SCORES), pd.read_parquet(path / SUMMARY), read_json(path / MANIFEST))

    @staticmethod
    def is_complete(path: str | Path) -> bool:
        p = Path(path)
        return all((p / f).is_file() for f in (SCORES, SUMMARY, MANIFEST))

    @classmethod
    def reusable(cls, path: str | Path, metric: str, questions) -> bool:
        """Whether ``path`` holds finished scores of ``metric`` on ``questions`` (same content hash).

        Finished scores of another metric or question set raise :class:`ConfigError` instead of being reused.
        """
        if not cls.is_complete(path):
            return False
        man = read_json(Path(path) / MANIFEST)
        have = (man.get("metric"), (man.get("questions") or {}).get("sha256"))
        if have != (metric, questions.sha256):
            raise ConfigError(f"{path} holds {have[0]} scores of another question set or metric; "
                              "pass `overwrite` or choose another `out`")
        return True


def question_set_info(questions) -> dict[str, Any]:
    return {"name": questions.name, "source": questions.source, "sha256": questions.sha256,
            "n_questions": len(questions)}


def score_manifest(metric: str, lm, questions, **fields: Any) -> dict[str, Any]:
    """The manifest of one :class:`ScoreTable` (model spec, adapter, question set, and ``fields``)."""
    spec = lm.spec.to_dict()
    return manifest("score_table", metric=metric, model=spec, adapter=spec.get("adapter"),
                    questions=question_set_info(questions), **fields)


def combine_summaries(tables: Mapping[int, ScoreTable]) -> pd.DataFrame:
    """All per-question summaries stacked, with the checkpoint ``step`` as first column."""
    frames = [t.summary.assign(step=step) for step, t in sorted(tables.items())]
    df = pd.concat(frames, ignore_index=True)
    return df[["step"] + [c for c in df.columns if c != "step"]]


def write_sweep_index(out: str | Path, tables: Mapping[int, ScoreTable], fields: dict[str, Any]) -> Path:
    """Write ``OUT/summary.parquet`` (all steps) and ``OUT/manifest.json`` (kind ``score_sweep``)."""
    out = Path(out)
    with atomic_path(out / SUMMARY) as tmp:
        combine_summaries(tables).to_parquet(tmp, index=False)
    write_json(out / MANIFEST, manifest("score_sweep", steps=sorted(tables), **fields))
    return out
