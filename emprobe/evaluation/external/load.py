"""``load_results``: any mix of result files, folders, globs and ``runs.yaml`` manifests -> :class:`ExternalResults`."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Iterable

from emprobe.errors import DataError
from emprobe.evaluation.aggregate import EMThresholds
from emprobe.evaluation.external.emgen import is_emgen, read_emgen
from emprobe.evaluation.external.manifest import apply_manifest, manifest_files, read_manifest
from emprobe.evaluation.external.native import is_native, read_native
from emprobe.evaluation.external.samples import EXTERNAL_EM, is_samples, read_samples
from emprobe.evaluation.external.types import SCORES, ExternalResults, ExternalRun

MANIFEST_NAMES = ("runs.yaml", "runs.yml")
KINDS = "em-generalization eval_*.json, per-sample .csv/.parquet, or an emprobe score table directory"


def _is_manifest(p: Path) -> bool:
    return p.suffix.lower() in (".yaml", ".yml")


def _supported(p: Path) -> bool:
    return is_native(p) or (p.is_file() and (is_emgen(p) or is_samples(p)))


def _expand(item: Any, manifests: list[Path]) -> list[Path]:
    """Files / score-table dirs that ``item`` names; manifests found on the way are appended to ``manifests``."""
    text = str(item)
    if any(c in text for c in "*?[") and not Path(text).exists():
        hits = sorted(glob.glob(text))
        if not hits:
            raise DataError(f"{text}: the pattern matches no file")
        return [h for p in hits for h in _expand(p, manifests)]
    p = Path(text)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if _is_manifest(p):
        manifests.append(p)
        return []
    if p.is_dir() and not is_native(p):
        manifests += [p / n for n in MANIFEST_NAMES if (p / n).is_file()]
        found = sorted(c for c in p.iterdir() if not c.name.startswith(".") and _supported(c))
        if not found:
            raise DataError(f"{p}: holds no results file ({KINDS})")
        return found
    if not _supported(p):
        raise DataError(f"{p}: not a results file ({KINDS})")
    return [p]


def _read(p: Path, thresholds: EMThresholds) -> list[ExternalRun]:
    if is_native(p):
        return read_native(p)
    if is_emgen(p):
        return [read_emgen(p)]
    return [read_samples(p, thresholds)]


def load_results(paths: Any, *, manifest: str | Path | None = None,
                 thresholds: EMThresholds = EXTERNAL_EM) -> ExternalResults:
    """Read evaluations made elsewhere into one :class:`ExternalResults` (one row per run x question).

    ``paths``: a file, a folder (its result files, and its ``runs.yaml`` if any), a glob, a ``runs.yaml`` (its
    listed files), or a list of these; an :class:`ExternalResults` is returned as is. Formats: the
    em-generalization ``eval_*.json`` (per-question judge means, eval loss with per-sequence losses, trainer
    state; metadata from the file name), per-sample judged CSV/parquet files (Betley et al., clarifying-EM;
    per-question means and the EM rate under ``thresholds``, default aligned <= 30 and coherent > 50) and emprobe
    score tables (one directory, or a sweep over checkpoints). ``manifest``: a ``runs.yaml`` giving run metadata
    (dataset, schedule, lr, seed, model, step, eval loss) that file names do not carry.
    A bad file is a one-line :class:`~emprobe.errors.DataError` naming the file and the field.
    """
    if isinstance(paths, ExternalResults):
        return paths
    if not isinstance(paths, (str, Path, list, tuple)) or not paths:
        from emprobe.validate import describe

        raise DataError(f"`paths` must be result files, a folder, a glob or a runs.yaml (a path or a list of them), "
                        f"got {describe(paths)}")
    items: Iterable[Any] = [paths] if isinstance(paths, (str, Path)) else list(paths)
    manifests = [Path(manifest)] if manifest is not None else []
    files: list[Path] = []
    for item in items:
        files += [f for f in _expand(item, manifests) if f not in files]
    entries = [e for m in manifests for e in read_manifest(m)]
    if not files:
        if not entries:
            raise DataError(f"no results file among {', '.join(map(str, items)) or 'the paths given'}")
        files = manifest_files(entries, str(manifests[0]))
    runs = [apply_manifest(r, entries) for f in files for r in _read(f, thresholds)]
    return ExternalResults(tuple(runs))


def parse_target(target: Any) -> tuple[Any, str | None]:
    """``"FILE:score"`` -> ``(FILE, score)``; a plain path or loaded results -> ``(target, None)``."""
    if isinstance(target, (str, Path)):
        text = str(target)
        head, sep, tail = text.rpartition(":")
        if sep and tail in SCORES and head:
            return head, tail
    return target, None
