"""Plain-text sets: general paragraphs read as raw text (no chat template), e.g. ``builtin:neutral-text``.

A text set is a YAML list of ``{id, text}`` entries (or of plain strings, numbered ``text-000``, ...) or a
``.txt`` file whose paragraphs are separated by blank lines. ``emprobe diff`` uses one as *general text*: the
KL between a base model and its fine-tune away from any training domain, and the activation-difference lens
on the first tokens of each paragraph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from emprobe.errors import DataError
from emprobe.io import content_hash, read_yaml


@dataclass(frozen=True)
class TextSet(Sequence[str]):
    """Ids and texts (same order), plus where they came from."""

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    source: str = "<memory>"
    name: str = "texts"

    def __post_init__(self) -> None:
        if not self.texts:
            raise DataError(f"{self.source}: the text set is empty")
        if len(self.ids) != len(self.texts):
            raise DataError(f"{self.source}: {len(self.ids)} ids for {len(self.texts)} texts")
        dup = next((i for k, i in enumerate(self.ids) if i in self.ids[:k]), None)
        if dup is not None:
            raise DataError(f"{self.source}: duplicate text id {dup!r}")

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i):  # type: ignore[override]
        return self.texts[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self.texts)

    @property
    def sha256(self) -> str:
        return content_hash([list(self.ids), list(self.texts)])

    def head(self, n: int | None) -> "TextSet":
        """The first ``n`` texts (all when ``n`` is ``None`` or 0)."""
        return self if not n else TextSet(self.ids[:n], self.texts[:n], self.source, self.name)


def _entries(data, path: Path) -> list[tuple[str, str]]:
    if not isinstance(data, list):
        raise DataError(f"{path}: a text set is a YAML list of {{id, text}} entries or of strings")
    out = []
    for k, e in enumerate(data):
        if isinstance(e, str):
            e = {"id": f"text-{k:03d}", "text": e}
        if not isinstance(e, dict) or not isinstance(e.get("text"), str) or not e["text"].strip():
            raise DataError(f"{path}: entry {k} has no non-empty 'text'")
        out.append((str(e.get("id", f"text-{k:03d}")), e["text"].strip()))
    return out


def load_texts(source: str | Path | TextSet | Sequence[str]) -> TextSet:
    """A :class:`TextSet` from ``builtin:NAME``, a YAML list, a ``.txt`` file (blank-line separated paragraphs)
    or a list of strings (a loaded set is returned as it is)."""
    from emprobe.data.builtin import builtin_entry, is_builtin

    if isinstance(source, TextSet):
        return source
    if isinstance(source, (list, tuple)):
        texts = [str(t).strip() for t in source]
        if any(not t for t in texts):
            raise DataError("texts: an empty text was given")
        return TextSet(tuple(f"text-{k:03d}" for k in range(len(texts))), tuple(texts))
    name = None
    if is_builtin(source):
        entry = builtin_entry(str(source))
        if entry.kind != "text":
            raise DataError(f"{source} is a {entry.kind} set, not a text set")
        path, name = entry.path, entry.name
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: no such text file")
    if path.suffix == ".txt":
        paras = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        pairs = [(f"text-{k:03d}", p) for k, p in enumerate(paras)]
    else:
        pairs = _entries(read_yaml(path, "text set"), path)
    if not pairs:
        raise DataError(f"{path}: the text set is empty")
    ids, texts = zip(*pairs)
    return TextSet(tuple(ids), tuple(texts), str(path), name or path.name.split(".")[0])
