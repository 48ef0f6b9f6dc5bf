"""``ScoreTable``: per question x paraphrase x sample (or reference) scores of one model/checkpoint.

On disk (a directory, written atomically)::

    DIR/scores.parquet    tidy rows: margin -> one per reference answer, judge -> one per sampled answer
    DIR/summary.parquet   one row per question (margin +- se, or EM rate with its Wilson interval)
    DIR/manifest.json     metric, model spec + adapter/step, question-set name + sha256, settings, timing

A sweep over a run writes one such directory per checkpoint (``step-000025/``) plus ``summary.parquet``
(all per-question summaries with a ``step`` column) and ``manifest.json`` at its root.

A :class:`ScoreTable` is a :class:`~emprobe.result.Result` (findings, numbers, tables, plot, report section); its
``summary`` is the per-question table (a field older than the Result API), and :meth:`ScoreTable.save` writes the
layout above rather than the generic result directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import pandas as pd

from emprobe.errors import ConfigError, DataError
from emprobe.io import atomic_dir, atomic_path, manifest, read_json, write_json
from emprobe.result import Result, figure_for

SCORES = "scores.parquet"
SUMMARY = "summary.parquet"
MANIFEST = "manifest.json"


@dataclass(frozen=True, eq=False)
class ScoreTable(Result):
    """Scores of one model or checkpoint: ``scores`` (tidy rows), ``summary`` (per question), ``manifest``."""

    scores: pd.DataFrame
    summary: pd.DataFrame = field()  # type: ignore[assignment]  (the per-question table; see the module docstring)
    manifest: dict[str, Any]

    name: ClassVar[str] = "scores"
    title: ClassVar[str] = "Per-question alignment scores"

    @property
    def metric(self) -> str:
        return self.manifest.get("metric", "?")

    @property
    def step(self) -> int | None:
        return self.manifest.get("step")

    # ---- the Result view ------------------------------------------------------------------------
    def _mean(self) -> tuple[str, float, float, int]:
        """(column, mean over questions, its standard error, questions) of the table's headline score."""
        col = "margin" if self.metric == "margin" else "em_rate" if "em_rate" in self.summary else \
            next(c for c in self.summary.columns if c != "question_id")
        v = pd.to_numeric(self.summary[col], errors="coerce").dropna()
        se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
        return col, float(v.mean()), se, len(v)

    def findings(self) -> list[str]:
        col, m, se, n = self._mean()
        who = f"{(self.manifest.get('model') or {}).get('name', '?')}" + (f" step {self.step}" if self.step is not None
                                                                         else "")
        if col == "margin":
            up = int((self.summary.margin > 0).sum())
            return [f"{who}: mean margin {m:+.3f} nats/token over {n} questions (± {1.96 * se:.3f}, 95% normal "
                    f"interval over questions); {up} of {n} questions lean towards the misaligned answers."]
        over = self.manifest.get("overall") or {}
        if "em_rate" in over:
            return [f"{who}: EM rate {over['em_rate']:.3f} (95% Wilson [{over['em_ci_low']:.3f}, "
                    f"{over['em_ci_high']:.3f}]) over {over.get('n_scored')} scored answers to {n} questions."]
        return [f"{who}: mean {col} {m:.3f} over {n} questions."]

    def numbers(self) -> dict[str, Any]:
        col, m, se, n = self._mean()
        over = {k: v for k, v in (self.manifest.get("overall") or {}).items() if isinstance(v, (int, float))}
        return {f"mean_{col}": m, f"se_mean_{col}": se, "n_questions": n, **over}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.summary, "scores": self.scores}

    @property
    def control(self) -> str:
        return ("none within one table: compare with the base model's scores (a run's step 0) or an aligned-data "
                "control run scored the same way")

    @property
    def uncertainty(self) -> str:
        if self.metric == "margin":
            return "standard error over questions (per question: margin_se over its reference answers)"
        return "Wilson 95% intervals of the EM rates (per question and overall)"

    def inputs(self) -> dict[str, Any]:
        return {k: self.manifest.get(k) for k in ("model", "adapter", "step", "questions")}

    def plot(self, ax=None):
        col = self._mean()[0]
        fig, (ax,) = figure_for(ax, 1, height=max(3.0, 0.12 * len(self.summary)))
        s = self.summary.sort_values(col)
        err = s["margin_se"].to_numpy() if col == "margin" and "margin_se" in s else None
        ax.barh(range(len(s)), s[col].to_numpy(), xerr=err, color="C3")
        ax.set_yticks(range(len(s)), [str(q)[:22] for q in s.question_id], fontsize=5)
        ax.axvline(0, color="k", lw=0.8)
        ax.set(xlabel=col + (" (nats/token; > 0 leans misaligned)" if col == "margin" else ""), title=self.title)
        return fig

    # ---- disk -----------------------------------------------------------------------------------
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
    """The manifest of one :class:`ScoreTable` (model spec, adapter, question set, and ``fields``; an ``adapter``
    field names the adapter scored when ``lm`` does not)."""
    spec = lm.spec.to_dict()
    if "adapter" in fields:  # scored on an adapter the loaded model does not name (mixed-adapter batches)
        spec["adapter"] = fields["adapter"]
    return manifest("score_table", metric=metric, model=spec, questions=question_set_info(questions),
                    **{"adapter": spec.get("adapter"), **fields})


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
