"""Data: chat datasets (JSONL), evaluation question sets (Betley YAML) and emprobe's built-in data.

Any function taking a ``source`` accepts a path or ``builtin:NAME`` (``emprobe data list`` shows names).
"""

from __future__ import annotations

from pathlib import Path

from emprobe.data.builtin import BUILTINS, PersonaPrompts, builtin_entry, is_builtin, load_personas
from emprobe.data.chat import ChatDataset, ChatExample, load_chat_jsonl, validate_messages
from emprobe.data.questions import Prompt, Question, QuestionSet, load_questions_yaml
from emprobe.data.texts import TextSet, load_texts
from emprobe.errors import DataError
from emprobe.validate import source_arg


def load_questions(source: str | Path | QuestionSet) -> QuestionSet:
    """Load an evaluation question set from ``builtin:NAME`` or a Betley-format YAML file (a loaded
    :class:`QuestionSet` is returned as it is, so every verb accepts either)."""
    if isinstance(source, QuestionSet):
        return source
    source_arg(source, "source", "question set", ("QuestionSet",))
    if is_builtin(source):
        entry = builtin_entry(str(source))
        if entry.kind != "questions":
            raise DataError(f"{source} is a {entry.kind} dataset, not a question set")
        qs = load_questions_yaml(entry.path)
        qs.name = entry.name
        return qs
    return load_questions_yaml(source)


def load_chat_dataset(source: str | Path | ChatDataset, require_assistant: bool = True) -> ChatDataset:
    """Load a chat dataset from ``builtin:NAME`` or a JSONL(.gz) file (a loaded one is returned as it is)."""
    if isinstance(source, ChatDataset):
        return source
    source_arg(source, "source", "chat dataset", ("ChatDataset",))
    if is_builtin(source):
        entry = builtin_entry(str(source))
        if entry.kind != "chat":
            raise DataError(f"{source} is a {entry.kind} set, not a chat dataset")
        ds = load_chat_jsonl(entry.path, require_assistant)
        ds.name = entry.name
        return ds
    return load_chat_jsonl(source, require_assistant)


__all__ = [
    "BUILTINS", "ChatDataset", "ChatExample", "DataError", "PersonaPrompts", "Prompt", "Question",
    "QuestionSet", "TextSet", "builtin_entry", "is_builtin", "load_chat_dataset", "load_chat_jsonl", "load_personas",
    "load_questions", "load_questions_yaml", "load_texts", "validate_messages",
]
