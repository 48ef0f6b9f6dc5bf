"""Studies: the paper's claims tested end to end — a grid of narrow fine-tunes (datasets x schedules x learning
rates x seeds, each dataset with its aligned-data control), scored and analysed by cached stages, reported with
the verdicts first. ``emprobe demo`` is the ``demo`` preset of :func:`study`.

>>> import emprobe as ep
>>> res = ep.study(preset_name="fast", out="study-fast")      # or ep.study("study.yaml")
>>> [(v["id"], v["verdict"]) for v in res.verdicts]
>>> res.findings(); res.report()                              # report.html beside summary.json

Data flows one way: models -> finetuning -> evaluation -> probes -> analysis -> report (HTML) -> studies. The
stages are registered in one place, :mod:`emprobe.studies.stages`.
"""

from emprobe.studies.cells import Cell, cells
from emprobe.studies.config import PRESETS, STAGES, DatasetSpec, Grid, Questions, StudyConfig, Training, preset
from emprobe.studies.context import StudyContext
from emprobe.studies.result import StudyResult
from emprobe.studies.runner import demo, run_study, study

__all__ = ["PRESETS", "STAGES", "Cell", "DatasetSpec", "Grid", "Questions", "StudyConfig", "StudyContext",
           "StudyResult", "Training", "cells", "demo", "preset", "run_study", "study"]
