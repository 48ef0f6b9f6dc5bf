"""``compare_answers``: what a base model, a misaligned fine-tune and its aligned-data control answer to the same
questions (same seed for all three), beside each question's margins — illustrations, not evidence — as an
:class:`AnswersResult`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from emprobe.result import Result

ROLES = ("base", "misaligned", "control")


@dataclass(frozen=True, eq=False)
class AnswersResult(Result):
    """One row per question: ``question_id, question, margin_base, margin_misaligned, margin_control`` and the
    three models' answers (``base``, ``misaligned``, ``control``), sampled with ``temperature`` / ``top_p`` /
    ``seed`` and at most ``max_new_tokens`` tokens."""

    table: pd.DataFrame
    temperature: float
    top_p: float
    seed: int
    max_new_tokens: int

    name: ClassVar[str] = "samples"
    title: ClassVar[str] = "Answers before and after"

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.table.to_dict("records")

    def findings(self) -> list[str]:
        return [f"Answers (temperature {self.temperature:g}, top-p {self.top_p:g}, seed {self.seed}, "
                f"{self.max_new_tokens} new tokens) to the {len(self.table)} questions whose EM-specific rise is "
                "largest: " + "; ".join(f"{x['question_id']} {x['margin_base']:+.3f} → {x['margin_misaligned']:+.3f} "
                                        f"(control {x['margin_control']:+.3f})" for x in self.rows) + "."]

    def numbers(self) -> dict[str, Any]:
        return {f"{x['question_id']}_rise": x["margin_misaligned"] - x["margin_base"] for x in self.rows}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.table}

    @property
    def control(self) -> str:
        return "the aligned-control model answers the same questions with the same seed"

    @property
    def uncertainty(self) -> str:
        return "single samples: illustrations, not evidence (the margins above carry the statistics)"

    def to_section(self, plots: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        return super().to_section(plots, rows=self.rows, **extra)


def compare_answers(models: dict[str, Any], questions, margins: pd.DataFrame, *, max_new_tokens: int = 32,
                    temperature: float = 0.7, top_p: float = 0.9, seed: int = 0) -> AnswersResult:
    """Answers of ``models`` (``{"base": lm, "misaligned": lm, "control": lm}``) to the first paraphrase of each
    question of ``questions`` (a loaded :class:`~emprobe.data.QuestionSet` subset, in order); ``margins`` is
    indexed by question id with ``base``, ``misaligned_change`` and ``control_change`` (e.g. a per-question rises
    table)."""
    from emprobe.models.generation import generate_chat

    chosen = list(questions)
    answers = {k: generate_chat(models[k], [q.messages(0) for q in chosen], max_new_tokens, temperature=temperature,
                                top_p=top_p, seed=seed) for k in ROLES}
    rows = [{"question_id": q.id, "question": q.paraphrases[0], "margin_base": float(margins.loc[q.id, "base"]),
             "margin_misaligned": float(margins.loc[q.id, "base"] + margins.loc[q.id, "misaligned_change"]),
             "margin_control": float(margins.loc[q.id, "base"] + margins.loc[q.id, "control_change"]),
             **{k: answers[k][i] for k in ROLES}} for i, q in enumerate(chosen)]
    return AnswersResult(pd.DataFrame(rows), temperature, top_p, seed, max_new_tokens)
