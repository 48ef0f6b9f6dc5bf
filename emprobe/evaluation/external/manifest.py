"""``runs.yaml``: run metadata for result files whose names do not carry it (or to correct what they say).

::

    defaults:                 # optional, applied to every entry
      model: Qwen2.5-14B-Instruct
      dataset: bad_medical
    runs:
      - file: responses_cosine_s1.csv   # relative to runs.yaml; a glob matches several files
        run: cosine-s1                  # the run's name (default: from the file name)
        schedule: cosine
        lr: 1.0e-5
        seed: 1
        step: 332                       # a checkpoint of the run (several steps of one run = a trajectory)
        eval_loss: 1.318                # for files that carry no loss of their own

Any other key is kept in the run's metadata. A file the manifest does not list keeps what its reader found.
"""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from pathlib import Path
from typing import Any

from emprobe.errors import DataError
from emprobe.evaluation.external.types import ExternalRun
from emprobe.io import read_yaml

NUMERIC = {"lr": float, "eval_loss": float, "seed": int, "step": int, "warmup": int, "max_steps": int}


def _entry(path: Path, i: int, raw: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, dict) or "file" not in raw:
        raise DataError(f"{path}: runs[{i}] must be a mapping with a 'file' key")
    out = {**defaults, **raw}
    for key, cast in NUMERIC.items():
        if out.get(key) is not None:
            try:
                out[key] = cast(out[key])
            except (TypeError, ValueError):
                raise DataError(f"{path}: runs[{i}].{key} is {out[key]!r}, not {cast.__name__}") from None
    out["file"] = str(out["file"])
    return out


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The entries of a ``runs.yaml`` (defaults applied; ``file`` relative to the manifest's folder)."""
    path = Path(path)
    data = read_yaml(path, "runs manifest")
    if not isinstance(data, dict) or not isinstance(data.get("runs"), (list, dict)):
        raise DataError(f"{path}: a runs manifest needs a 'runs' list (entries with 'file' and metadata)")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise DataError(f"{path}: 'defaults' must be a mapping")
    runs = data["runs"]
    if isinstance(runs, dict):  # {file: {metadata}}
        runs = [{"file": k, **(v or {})} for k, v in runs.items()]
    entries = [_entry(path, i, r, defaults) for i, r in enumerate(runs)]
    for e in entries:
        e["pattern"] = str((path.parent / e["file"]).resolve())
    return entries


def manifest_files(entries: list[dict[str, Any]], where: str) -> list[Path]:
    """Every file the entries name (globs expanded); an entry that matches nothing is an error."""
    import glob

    out: list[Path] = []
    for e in entries:
        hits = sorted(glob.glob(e["pattern"]))
        if not hits:
            raise DataError(f"{where}: entry file {e['file']!r} matches no file")
        out += [Path(h) for h in hits if Path(h) not in out]
    return out


def apply_manifest(run: ExternalRun, entries: list[dict[str, Any]]) -> ExternalRun:
    """``run`` with the metadata of the last entry whose ``file`` matches its source."""
    src = str(Path(run.source).resolve())
    match = [e for e in entries if fnmatch.fnmatch(src, e["pattern"]) or src == e["pattern"]]
    if not match:
        return run
    e = match[-1]
    meta = {**run.meta, **{k: v for k, v in e.items() if k not in ("file", "pattern", "run", "step", "eval_loss")}}
    return replace(run, run=str(e.get("run") or run.run), step=e.get("step", run.step), meta=meta,
                   eval_loss=e.get("eval_loss", run.eval_loss))
