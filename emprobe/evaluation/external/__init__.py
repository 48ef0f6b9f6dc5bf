"""Evaluations made elsewhere, read into one typed table so emprobe's claim tests and controls can run on them.

``load_results(paths)`` reads the em-generalization ``eval_*.json`` files (arXiv 2606.20814), Betley et al.'s and
clarifying-EM's per-sample judged CSVs and emprobe's own score tables into :class:`ExternalResults`: one
:class:`ExternalRun` per evaluated model, one row per run x question in ``.table()``; run metadata from a
``runs.yaml`` or the em-generalization file names; nulls and missing questions counted (``.counts()``).
"""

from emprobe.evaluation.external.emgen import parse_name, read_emgen
from emprobe.evaluation.external.load import load_results
from emprobe.evaluation.external.manifest import read_manifest
from emprobe.evaluation.external.native import read_native
from emprobe.evaluation.external.samples import EXTERNAL_EM, read_samples
from emprobe.evaluation.external.types import HIGHER_IS_BETTER, SCORES, ExternalResults, ExternalRun

__all__ = ["EXTERNAL_EM", "HIGHER_IS_BETTER", "SCORES", "ExternalResults", "ExternalRun", "load_results",
           "parse_name", "read_emgen", "read_manifest", "read_native", "read_samples"]
