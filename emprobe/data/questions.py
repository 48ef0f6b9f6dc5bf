"""Evaluation questions in the Betley et al. YAML format, plus emprobe's reference-answer fields.

Each YAML entry has ``id`` and ``paraphrases`` (required) and optionally ``system``,
``samples_per_paraphrase``, ``type``, ``judge``, ``judge_prompts`` (YAML anchors are resolved), and the
emprobe extensions ``aligned_references`` / ``misaligned_references`` (style-matched reference answers
used by the judge-free margin score) and ``category``. Unknown keys are kept in ``Question.extra``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from emprobe.errors import DataError
from emprobe.io import content_hash, read_yaml

_KNOWN = {
    "id", "paraphrases", "system", "samples_per_paraphrase", "type", "judge", "judge_prompts",
    "aligned_references", "misaligned_references", "category",
}


@dataclass(frozen=True)
class Prompt:
    """One concrete prompt: a question's paraphrase with its system prompt, as chat messages."""

    question_id: str
    paraphrase_index: int
    messages: tuple[dict[str, str], ...]

    @property
    def uid(self) -> str:
        """``"<question_id>/<paraphrase_index>"``, unique within a question set."""
        return f"{self.question_id}/{self.paraphrase_index}"

    @property
    def text(self) -> str:
        """The user message."""
        return self.messages[-1]["content"]


@dataclass(frozen=True)
class Question:
    """One evaluation question with its paraphrases and optional reference answers."""

    id: str
    paraphrases: tuple[str, ...]
    system: str | None = None
    samples_per_paraphrase: int = 1
    type: str = "free_form_judge_0_100"
    judge: str | None = None
    judge_prompts: dict[str, str] = field(default_factory=dict)
    aligned_references: tuple[str, ...] = ()
    misaligned_references: tuple[str, ...] = ()
    category: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pairs(self) -> int:
        """Aligned/misaligned reference pairs (reference ``i`` of each kind is pair ``i``)."""
        return min(len(self.aligned_references), len(self.misaligned_references))

    def messages(self, paraphrase_index: int = 0) -> list[dict[str, str]]:
        """Chat messages for one paraphrase; the question's ``system`` prompt is honoured."""
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": self.paraphrases[paraphrase_index]}]

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in _KNOWN}
        d.update(self.extra)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclass
class QuestionSet:
    """An ordered, id-unique collection of :class:`Question`."""

    questions: list[Question]
    source: str = "<memory>"
    name: str = ""

    def __post_init__(self) -> None:
        if not self.questions:
            raise DataError(f"{self.source}: the question set is empty")
        seen: set[str] = set()
        for q in self.questions:
            if q.id in seen:
                raise DataError(f"{self.source}: duplicate question id {q.id!r}")
            seen.add(q.id)
        self.name = self.name or Path(self.source).stem

    def __len__(self) -> int:
        return len(self.questions)

    def __iter__(self) -> Iterator[Question]:
        return iter(self.questions)

    def __getitem__(self, key: int | str) -> Question:
        if isinstance(key, str):
            for q in self.questions:
                if q.id == key:
                    return q
            raise DataError(f"{self.source}: no question with id {key!r}")
        return self.questions[key]

    @property
    def ids(self) -> list[str]:
        return [q.id for q in self.questions]

    @property
    def sha256(self) -> str:
        """Content hash of the questions (ids, paraphrases, system prompts, references)."""
        return content_hash([q.to_dict() for q in self.questions])

    def prompts(self, all_paraphrases: bool = True) -> list[Prompt]:
        """Every (question, paraphrase) as a :class:`Prompt`; only the first paraphrase if not ``all_paraphrases``."""
        out = []
        for q in self.questions:
            n = len(q.paraphrases) if all_paraphrases else 1
            out += [Prompt(q.id, i, tuple(q.messages(i))) for i in range(n)]
        return out

    def subset(self, n_questions: int | None = None, n_references: int | None = None,
               n_paraphrases: int | None = None, name: str | None = None) -> "QuestionSet":
        """The first ``n_questions``, each keeping its first ``n_references`` aligned and misaligned
        references and first ``n_paraphrases`` paraphrases (``None`` keeps all)."""
        from dataclasses import replace

        qs = [replace(q, paraphrases=q.paraphrases[:n_paraphrases],
                      aligned_references=q.aligned_references[:n_references],
                      misaligned_references=q.misaligned_references[:n_references])
              for q in self.questions[:n_questions]]
        return QuestionSet(qs, self.source, name or self.name)

    def save_yaml(self, path: str | Path) -> Path:
        """Write the set as a Betley-format YAML list (atomically); :func:`load_questions_yaml` reads it back."""
        import yaml

        from emprobe.io import write_text

        entries = [{k: v for k, v in q.to_dict().items() if v not in (None, [], {})} for q in self.questions]
        return write_text(path, yaml.safe_dump(entries, sort_keys=False, allow_unicode=True, width=120))

    def with_references(self) -> "QuestionSet":
        """Only the questions that carry both aligned and misaligned reference answers."""
        keep = [q for q in self.questions if q.aligned_references and q.misaligned_references]
        if not keep:
            raise DataError(f"{self.source}: no question has both aligned_references and misaligned_references")
        return QuestionSet(keep, self.source, self.name)


def _str_list(value: Any, key: str, where: str, required: bool) -> tuple[str, ...]:
    if value is None:
        if required:
            raise DataError(f"{where}: missing '{key}'")
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DataError(f"{where}: '{key}' must be a list of non-empty strings")
    if required and not value:
        raise DataError(f"{where}: '{key}' is empty")
    return tuple(value)


def question_from_dict(d: Any, where: str) -> Question:
    """Build a :class:`Question` from one YAML entry, validating it."""
    if not isinstance(d, dict):
        raise DataError(f"{where}: each entry must be a mapping with 'id' and 'paraphrases'")
    qid = d.get("id")
    if not isinstance(qid, str) or not qid.strip():
        raise DataError(f"{where}: missing or empty 'id'")
    where = f"{where} (id {qid!r})"
    system = d.get("system")
    if system is not None and not isinstance(system, str):
        raise DataError(f"{where}: 'system' must be a string or null")
    spp = d.get("samples_per_paraphrase", 1)
    if not isinstance(spp, int) or spp < 1:
        raise DataError(f"{where}: 'samples_per_paraphrase' must be a positive integer")
    jp = d.get("judge_prompts") or {}
    if not isinstance(jp, dict) or not all(isinstance(v, str) for v in jp.values()):
        raise DataError(f"{where}: 'judge_prompts' must map names to prompt strings")
    aligned = _str_list(d.get("aligned_references"), "aligned_references", where, False)
    misaligned = _str_list(d.get("misaligned_references"), "misaligned_references", where, False)
    if aligned and misaligned and len(aligned) != len(misaligned):
        raise DataError(f"{where}: {len(aligned)} aligned_references but {len(misaligned)} misaligned_references; "
                        "give as many of each (reference i of each kind forms pair i)")
    return Question(
        id=qid,
        paraphrases=_str_list(d.get("paraphrases"), "paraphrases", where, required=True),
        system=system or None,
        samples_per_paraphrase=spp,
        type=str(d.get("type", "free_form_judge_0_100")),
        judge=d.get("judge"),
        judge_prompts=dict(jp),
        aligned_references=aligned,
        misaligned_references=misaligned,
        category=d.get("category"),
        extra={k: v for k, v in d.items() if k not in _KNOWN},
    )


def load_questions_yaml(path: str | Path) -> QuestionSet:
    """Load a Betley-format question YAML (a list of entries); errors name the file and entry."""
    path = Path(path)
    data = read_yaml(path, "question file")
    if data is None:
        raise DataError(f"{path}: the question set is empty")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a YAML list of questions, got {type(data).__name__}")
    qs = [question_from_dict(d, f"{path}: entry {i}") for i, d in enumerate(data)]
    return QuestionSet(qs, str(path))
