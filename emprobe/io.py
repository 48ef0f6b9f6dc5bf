"""Atomic file writes, content hashes and manifests shared by every stage.

Every artifact emprobe writes goes through a temporary file (or directory) in the destination's own
folder followed by :func:`os.replace`, so a reader never sees half a file and a crash leaves nothing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

PathLike = str | os.PathLike


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parents(directory: Path) -> Path | None:
    """Create ``directory`` (and its parents); the top-most directory created, or ``None`` if it existed."""
    top = None
    for p in (directory, *directory.parents):
        if p.exists():
            break
        top = p
    directory.mkdir(parents=True, exist_ok=True)
    return top


def _remove_created(directory: Path, top: Path | None) -> None:
    """Undo :func:`_make_parents`: remove the directories it created, as long as they are empty."""
    if top is None:
        return
    for p in (directory, *directory.parents):
        try:
            p.rmdir()
        except OSError:
            return
        if p == top:
            return


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    If the body raises, the temporary file (and any parent directory created for it) is removed and ``path``
    is untouched.
    """
    path = Path(path)
    created = _make_parents(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    except BaseException:
        _remove_created(path.parent, created)
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        _remove_created(path.parent, created)
        raise


@contextlib.contextmanager
def atomic_dir(path: PathLike, overwrite: bool = False, param: str = "out") -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on success it becomes ``path``.

    The output policy of :mod:`emprobe.outdir` applies, before the body runs and again when committing: a new
    or empty ``path`` is fine; an existing directory emprobe wrote is replaced (moved aside, then deleted)
    only with ``overwrite``; a file or a directory emprobe did not write is never replaced.
    """
    from emprobe.errors import OutputError
    from emprobe.outdir import check_out, owner

    path = check_out(path, overwrite=overwrite, param=param)
    created = _make_parents(path.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except BaseException:
        _remove_created(path.parent, created)
        raise
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.is_dir() and any(path.iterdir()):
            if not (overwrite and owner(path) is not None):
                raise OutputError(f"{path} appeared while it was being written; nothing replaced")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)  # onto a missing or empty directory
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_created(path.parent, created)
        raise


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def json_safe(obj: Any, digits: int | None = None) -> Any:
    """``obj`` with numpy scalars/arrays as Python values, tuples as lists and non-finite floats as ``None``
    (JSON has no NaN); floats rounded to ``digits`` when given. The one JSON-float sanitiser of emprobe."""
    import math

    if isinstance(obj, dict):
        return {str(k): json_safe(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, digits) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar / array, torch tensor
        return json_safe(obj.tolist(), digits)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return round(obj, digits) if digits is not None else obj
    return obj


def read_json(path: PathLike) -> Any:
    """Read a JSON file; invalid JSON (a truncated or edited file) is a one-line :class:`DataError`."""
    from emprobe.errors import DataError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a JSON file (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                        "the file is truncated or was edited") from None


def read_yaml(path: PathLike, what: str = "YAML file") -> Any:
    """Parse a YAML file (safe loader); a missing file or a syntax error is a one-line :class:`DataError`."""
    import yaml

    from emprobe.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise DataError(f"{path}: invalid YAML{at} ({getattr(e, 'problem', None) or e})") from None


def read_table(path: PathLike, what: str = "table"):
    """A pandas DataFrame from ``.parquet``, ``.tsv`` or ``.csv`` (``.gz`` too); a missing file, another
    suffix or a parse error is a one-line :class:`DataError` naming the file. The one table reader of emprobe."""
    import pandas as pd

    from emprobe.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what}")
    name = path.name.lower().removesuffix(".gz")
    if not name.endswith((".parquet", ".csv", ".tsv")):
        raise DataError(f"{path}: expected a .csv, .tsv or .parquet {what}")
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",")
    except Exception as e:  # pyarrow / csv parser errors
        raise DataError(f"{path}: cannot read {what} ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})") from None


def safetensors_header(path: PathLike, what: str = "safetensors file") -> dict[str, Any]:
    """The JSON header of a safetensors file, checked without loading it: a missing, truncated or corrupt
    file (header length, JSON, tensor byte ranges that must tile the data exactly) is a one-line
    :class:`DataError` naming the file. Tensor entries map name -> ``{"dtype", "shape", "data_offsets"}``."""
    import struct

    from emprobe.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what}")
    size = path.stat().st_size
    bad = f"{path}: corrupt or truncated {what}"
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if n < 2 or 8 + n > size:
            raise DataError(f"{bad} (header of {n} bytes in a {size}-byte file)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DataError(f"{bad} (the header is not valid JSON)") from None
    if not isinstance(header, dict):
        raise DataError(f"{bad} (the header is not a JSON object)")
    try:
        spans = sorted((int(v["data_offsets"][0]), int(v["data_offsets"][1])) for k, v in header.items()
                       if k != "__metadata__")
    except (KeyError, IndexError, TypeError, ValueError):
        raise DataError(f"{bad} (a tensor entry has no valid data_offsets)") from None
    end = 0
    for lo, hi in spans:
        if lo != end or hi < lo:
            raise DataError(f"{bad} (tensor byte ranges do not tile the data)")
        end = hi
    if 8 + n + end != size:
        raise DataError(f"{bad} ({size} bytes, the header describes {8 + n + end})")
    return header


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_hash(obj: Any) -> str:
    """Stable sha256 of a JSON-serialisable object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return sha256_bytes(blob.encode("utf-8"))


def manifest(kind: str, **fields: Any) -> dict[str, Any]:
    """A provenance manifest: what produced an artifact, with emprobe's version and a timestamp."""
    from emprobe import __version__

    return {
        "kind": kind,
        "emprobe_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **fields,
    }


def emprobe_home() -> Path:
    """Root of emprobe's cache: ``$EMPROBE_HOME`` or ``~/.cache/emprobe``."""
    return Path(os.environ.get("EMPROBE_HOME") or Path.home() / ".cache" / "emprobe").expanduser()


def claim_dir(path: str | os.PathLike, kind: str, *, overwrite: bool | None = False,
              reuse: bool | Iterable[str] = True, param: str = "out") -> Path:
    """:func:`~emprobe.outdir.check_out`, then create ``path`` with the emprobe marker (for directories filled piece by piece,
    so an interrupted run is still recognised as emprobe's on the rerun that continues it)."""
    from emprobe.outdir import MARKER, check_out, owner

    path = check_out(path, overwrite=overwrite, reuse=reuse, param=param)
    if owner(path) is None:
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / MARKER, manifest(kind))
    return path
