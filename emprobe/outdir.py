"""The one output policy of emprobe: where a verb may write, checked before any work starts.

Every verb that writes (``eval``, ``extract``, ``probe fit``, ``finetune``, sweeps, the analyses, ``study``,
``demo``) calls :func:`check_out` on its output path first, and the atomic writers of :mod:`emprobe.io` apply
the same rule when they commit. The rule:

- an existing **file** (or anything that is not a directory) is never replaced;
- an existing non-empty **directory emprobe did not write** is never touched, whatever the options;
- a **directory emprobe wrote** (its manifest or marker is present, see :func:`owner`) is replaced only with
  ``overwrite=True`` (``--overwrite`` / ``--force``), or continued by the verbs that reuse finished work
  (``reuse``: a study's stages, a sweep's runs, a run's checkpoints, finished score tables);
- a new or empty directory is always fine, if its nearest existing parent is a directory that can be written.

Messages name the parameter (```out```); the command line shows the option (``--out``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

from emprobe.errors import OutputError

#: marker written into directories that emprobe fills piece by piece (studies, sweeps, run sweeps)
MARKER = ".emprobe.json"
#: files whose presence marks a directory as emprobe's: file name -> a key its JSON object must hold
MANIFESTS = {MARKER: "emprobe_version", "manifest.json": "emprobe_version", "run.json": "emprobe_version",
             "summary.json": "emprobe_version", "direction.json": "emprobe_version", "sweep.json": "emprobe_version",
             "emprobe_model.json": "emprobe_version", "checkpoint.json": "step", "stage.json": "token"}


def owner(path: str | os.PathLike) -> str | None:
    """The kind of emprobe output in directory ``path`` (``"score_table"``, ``"run"``, ``"study"``, ...), or
    ``None`` when no emprobe manifest or marker sits at its top (a directory emprobe did not write)."""
    p = Path(path)
    for name, key in MANIFESTS.items():
        f = p / name
        if not f.is_file():
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and key in data:
            return str(data.get("kind") or Path(name).stem.lstrip("."))
    return None


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(path: str | os.PathLike, param: str = "out") -> Path:
    """Refuse ``path`` when its nearest existing parent is not a directory this process can write (probed by
    creating and removing a temporary file there; nothing is left behind)."""
    path = Path(path)
    parent = _nearest_existing(path.parent)
    if not parent.is_dir():
        raise OutputError(f"`{param}` {path}: {parent} is a file, not a directory; choose another `{param}`")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".emprobe-probe.", dir=parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OutputError(f"`{param}` {path}: cannot write in {parent} ({e.strerror or type(e).__name__}); "
                          f"choose another `{param}`") from None
    return path


def check_out(path: str | os.PathLike, *, overwrite: bool | None = False, reuse: bool | Iterable[str] = False,
              param: str = "out") -> Path:
    """Apply the output policy (module docstring) to ``path``; returns it as a :class:`Path`.

    ``reuse``: ``True`` accepts any directory emprobe wrote (the caller continues or reuses its work), or the
    kinds of output the caller can continue (e.g. ``("score_table",)``). ``overwrite=None``: the caller has no
    way to replace its output (the message does not offer one). Raises :class:`OutputError`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise OutputError(f"`{param}` must be a path, got {type(path).__name__}")
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise OutputError(f"`{param}` {path} is a broken symbolic link; choose another `{param}`")
    if path.exists() and not path.is_dir():
        raise OutputError(f"`{param}` {path} is an existing file; emprobe writes a directory there and never "
                          f"replaces a file: choose another `{param}`")
    if path.is_dir() and any(path.iterdir()):
        kind = owner(path)
        if kind is None:
            raise OutputError(f"`{param}` {path} is a non-empty directory emprobe did not write; choose a new or "
                              f"empty `{param}` (emprobe never deletes files it did not write)")
        accepted = reuse is True or (not isinstance(reuse, bool) and kind in set(reuse))
        if not overwrite and not accepted:
            what = f"holds emprobe output ({kind})"
            if reuse and reuse is not True:
                what += f", not {' or '.join(sorted(set(reuse)))}"
            fix = f"choose another `{param}`" if overwrite is None else \
                f"pass `overwrite` to replace it or choose another `{param}`"
            raise OutputError(f"`{param}` {path} {what}; {fix}")
        return path
    return check_writable(path, param)
