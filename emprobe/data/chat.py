"""Chat datasets: JSONL with one ``{"messages": [{"role": ..., "content": ...}, ...]}`` per line.

This is the OpenAI / TRL conversational format. Files may be plain or gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from emprobe.errors import DataError
from emprobe.io import content_hash

ROLES = ("system", "user", "assistant")
Message = dict[str, str]


@dataclass(frozen=True)
class ChatExample:
    """One conversation; ``line`` is its 1-based line number in the source file (0 if built in memory)."""

    messages: tuple[Message, ...]
    line: int = 0

    @property
    def prompt_messages(self) -> list[Message]:
        """Every message before the last assistant turn (what the model is conditioned on)."""
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        return [dict(m) for m in self.messages[:last]]

    @property
    def response(self) -> str:
        """Content of the last assistant turn."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "assistant")


@dataclass
class ChatDataset(Sequence[ChatExample]):
    """A list of validated conversations plus where they came from."""

    examples: list[ChatExample]
    source: str = "<memory>"
    name: str = field(default="")

    def __post_init__(self) -> None:
        if not self.examples:
            raise DataError(f"{self.source}: the chat dataset is empty (no conversations)")
        self.name = self.name or Path(self.source).name.split(".")[0]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return ChatDataset(self.examples[i], self.source, self.name)
        return self.examples[i]

    def __iter__(self) -> Iterator[ChatExample]:
        return iter(self.examples)

    @property
    def sha256(self) -> str:
        """Content hash of the conversations (independent of file compression or path)."""
        return content_hash([list(e.messages) for e in self.examples])

    def to_records(self) -> list[dict]:
        """``[{"messages": [...]}, ...]``, ready for ``datasets.Dataset.from_list``."""
        return [{"messages": [dict(m) for m in e.messages]} for e in self.examples]

    def split(self, val_fraction: float, seed: int = 0) -> tuple["ChatDataset", "ChatDataset"]:
        """Seeded train/validation split; the validation part has at least one example."""
        if not 0.0 < val_fraction < 1.0:
            raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if len(self) < 2:
            raise DataError(f"{self.source}: need at least 2 conversations to split, got {len(self)}")
        order = list(range(len(self)))
        random.Random(seed).shuffle(order)
        n_val = min(len(self) - 1, max(1, round(val_fraction * len(self))))
        val = sorted(order[:n_val])
        train = sorted(order[n_val:])
        pick = lambda idx: ChatDataset([self.examples[i] for i in idx], self.source, self.name)  # noqa: E731
        return pick(train), pick(val)


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def validate_messages(messages: object, where: str, require_assistant: bool = True) -> tuple[Message, ...]:
    """Check one ``messages`` list; raise :class:`DataError` naming ``where`` on the first problem."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list")
    out = []
    for j, m in enumerate(messages):
        if not isinstance(m, dict):
            raise DataError(f"{where}: message {j} is not an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise DataError(f"{where}: message {j} has unknown role {role!r} (expected one of {', '.join(ROLES)})")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"{where}: message {j} ({role}) has empty or non-text content")
        out.append({"role": role, "content": content})
    if require_assistant and not any(m["role"] == "assistant" for m in out):
        raise DataError(f"{where}: conversation has no assistant turn")
    if out[0]["role"] == "assistant":
        raise DataError(f"{where}: conversation starts with an assistant turn (no prompt)")
    return tuple(out)


def load_chat_jsonl(path: str | Path, require_assistant: bool = True) -> ChatDataset:
    """Load and validate a chat JSONL file (plain or ``.gz``).

    Raises :class:`DataError` naming the file and line for bad JSON, a missing ``messages`` list, an
    unknown role, empty content, or (with ``require_assistant``) a conversation with no assistant turn.
    Blank lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such chat JSONL file")
    examples = []
    try:
        with _open_text(path) as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(row, dict) or "messages" not in row:
                    raise DataError(f"{where}: expected an object with a 'messages' list")
                msgs = validate_messages(row["messages"], where, require_assistant)
                examples.append(ChatExample(msgs, lineno))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read file ({e})") from None
    if not examples:
        raise DataError(f"{path}: the chat dataset is empty (no conversations)")
    return ChatDataset(examples, str(path))
