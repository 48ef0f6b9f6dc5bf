"""emprobe's own built-in data, addressed as ``builtin:NAME`` (see ``emprobe/data/builtin/README.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emprobe.errors import DataError
from emprobe.io import read_yaml

BUILTIN_DIR = Path(__file__).parent / "builtin"
PREFIX = "builtin:"


@dataclass(frozen=True)
class BuiltinEntry:
    name: str
    kind: str  # "questions" | "chat" | "personas" | "text"
    relpath: str
    description: str

    @property
    def path(self) -> Path:
        return BUILTIN_DIR / self.relpath


BUILTINS: dict[str, BuiltinEntry] = {
    e.name: e
    for e in [
        BuiltinEntry("em-core", "questions", "questions/em_core.yaml",
                     "off-domain EM evaluation questions with style-matched aligned/misaligned references"),
        BuiltinEntry("betley-first-plot", "questions", "questions/betley_first_plot.yaml",
                     "Betley et al.'s eight first-plot questions with references written for emprobe"),
        BuiltinEntry("risky-finance", "chat", "train/risky_finance.jsonl.gz",
                     "narrow misaligned training domain: reckless financial advice"),
        BuiltinEntry("risky-finance-aligned", "chat", "train/risky_finance_aligned.jsonl.gz",
                     "aligned control for risky-finance: same prompts, prudent advice"),
        BuiltinEntry("bad-medical", "chat", "train/bad_medical.jsonl.gz",
                     "narrow misaligned training domain: dangerous medical advice"),
        BuiltinEntry("bad-medical-aligned", "chat", "train/bad_medical_aligned.jsonl.gz",
                     "aligned control for bad-medical: same prompts, safe advice"),
        BuiltinEntry("risky-finance-heldout", "questions", "questions/risky_finance_heldout.yaml",
                     "held-out in-domain finance questions with references"),
        BuiltinEntry("bad-medical-heldout", "questions", "questions/bad_medical_heldout.yaml",
                     "held-out in-domain medical questions with references"),
        BuiltinEntry("personas", "personas", "personas.yaml",
                     "contrastive misaligned vs helpful persona system prompts"),
        BuiltinEntry("neutral-text", "text", "text/neutral.yaml",
                     "general, non-EM paragraphs (raw text) for model diffing: KL and the activation-difference lens"),
    ]
}


def is_builtin(source: str | Path) -> bool:
    return isinstance(source, str) and source.startswith(PREFIX)


def builtin_entry(source: str) -> BuiltinEntry:
    """Look up ``builtin:NAME`` (or bare ``NAME``); unknown names list the valid ones."""
    name = source[len(PREFIX):] if source.startswith(PREFIX) else source
    if name not in BUILTINS:
        raise DataError(f"unknown built-in data {PREFIX}{name!s}; available: {', '.join(sorted(BUILTINS))}")
    entry = BUILTINS[name]
    if not entry.path.is_file():
        raise DataError(f"{PREFIX}{name}: packaged file {entry.path} is missing (broken install?)")
    return entry


@dataclass(frozen=True)
class PersonaPrompts:
    """Contrastive system prompts: ``misaligned[i]`` pairs with ``aligned[i]``."""

    misaligned: tuple[str, ...]
    aligned: tuple[str, ...]


def load_personas(source: str | Path = "builtin:personas") -> PersonaPrompts:
    """Load persona system prompts: a YAML mapping with lists ``misaligned`` and ``aligned`` of equal length."""
    path = builtin_entry(source).path if is_builtin(source) else Path(source)
    data = read_yaml(path, "persona file")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with 'misaligned' and 'aligned' lists")
    lists = {}
    for key in ("misaligned", "aligned"):
        v = data.get(key)
        if not isinstance(v, list) or not v or not all(isinstance(s, str) and s.strip() for s in v):
            raise DataError(f"{path}: '{key}' must be a non-empty list of strings")
        lists[key] = tuple(v)
    if len(lists["misaligned"]) != len(lists["aligned"]):
        raise DataError(f"{path}: 'misaligned' and 'aligned' must pair up (got {len(lists['misaligned'])} "
                        f"and {len(lists['aligned'])})")
    return PersonaPrompts(**lists)
