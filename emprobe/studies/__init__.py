"""Studies: the paper's claims tested end to end — a grid of narrow fine-tunes (datasets x schedules x learning
rates x seeds, each dataset with its aligned-data control), scored and analysed by cached stages, reported with
the verdicts first. ``emprobe demo`` is the ``demo`` preset of :func:`study`.

>>> import emprobe as ep
>>> summary = ep.study(preset_name="fast", out="study-fast")      # or ep.study("study.yaml")
>>> [(v["id"], v["verdict"]) for v in summary["verdicts"]]

Data flows one way: models -> finetune -> evaluate -> probes -> analysis -> report (HTML) -> study.
"""

from emprobe.studies.cells import Cell, cells
from emprobe.studies.config import PRESETS, STAGES, DatasetSpec, Grid, Questions, StudyConfig, Training, preset
from emprobe.studies.runner import demo, run_study, study

__all__ = ["PRESETS", "STAGES", "Cell", "DatasetSpec", "Grid", "Questions", "StudyConfig", "Training", "cells", "demo",
           "preset", "run_study", "study"]
