"""Studies: the paper's claims tested end to end — a grid of narrow fine-tunes (datasets x schedules x learning
rates x seeds, each dataset with its aligned-data control), scored and analysed by cached stages, reported with
the verdicts first. ``emprobe demo`` is the ``demo`` preset of :func:`study`.

>>> import emprobe as ep
>>> res = ep.study(preset_name="fast", out="study-fast")      # or ep.study("study.yaml")
>>> [(v["id"], v["verdict"]) for v in res.verdicts]
>>> res.findings(); res.report()                              # report.html beside summary.json

Data flows one way: models -> finetuning -> evaluation -> probes -> analysis -> report (HTML) -> studies. The
stages are registered in one place, :mod:`emprobe.studies.stages`.
The names load on first use, so the command line (which reads the presets for its help) starts without pandas.
"""

from emprobe.lazy import lazy_names

#: public name -> submodule that defines it
_NAMES = {"Claims": "sections", "PRESETS": "config", "STAGES": "config", "DatasetSpec": "sections", "Grid": "sections",
          "Questions": "sections", "StudyConfig": "config", "Training": "sections", "preset": "config",
          "demo": "runner", "run_study": "runner", "study": "runner", "StudyContext": "context",
          "StudyResult": "result"}

# ``cells`` (a function) shares its name with its submodule: bound here, after the submodule's import, so a later
# ``import emprobe.studies.cells`` cannot rebind the package attribute to the module (config and cells are light)
from emprobe.studies.cells import Cell, cells  # noqa: E402, F401

__all__ = sorted([*_NAMES, "Cell", "cells"])


__getattr__, __dir__ = lazy_names(__name__, _NAMES, globals())
