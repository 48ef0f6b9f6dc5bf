"""A tiny cached pipeline: named stages, each writing one directory, reused on rerun, redone with ``force``.

Each stage's directory holds ``stage.json`` (written last, atomically) with the stage's key — a hash of
its parameters and of the completion tokens of the stages it depends on — and the section it returned.
A rerun with the same key loads the section instead of recomputing; any upstream recomputation changes
the token and so invalidates everything downstream. Progress is printed stage by stage with an estimate
that is recalibrated from the stages actually run.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from emprobe.io import content_hash, read_json, write_json

MARKER = "stage.json"


@dataclass
class Stage:
    """One step: ``fn(directory) -> section dict``; ``estimate`` in seconds (2 idle cores, SmolLM2)."""

    name: str
    title: str
    fn: Callable[[Path], dict[str, Any]]
    estimate: float = 10.0
    params: dict[str, Any] = field(default_factory=dict)
    depends: tuple[str, ...] = ()


def fmt_seconds(s: float) -> str:
    """``"1m05s"`` / ``"42s"``."""
    s = max(0, int(round(s)))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Pipeline:
    """Run :class:`Stage` objects in order under ``out``; see the module docstring for caching."""

    def __init__(self, out: str | Path, force: bool | set[str] = False, log: Callable[[str], Any] | None = print):
        self.out = Path(out)
        self.force = force
        self.log = log or (lambda _msg: None)
        self.tokens: dict[str, str] = {}
        self.sections: dict[str, dict[str, Any]] = {}
        self.timing: dict[str, dict[str, Any]] = {}

    def _forced(self, name: str) -> bool:
        return self.force is True or (isinstance(self.force, set) and name in self.force)

    def key(self, stage: Stage) -> str:
        missing = [d for d in stage.depends if d not in self.tokens]
        if missing:
            raise RuntimeError(f"stage {stage.name} depends on {missing}, which have not run")
        return content_hash({"params": stage.params, "depends": {d: self.tokens[d] for d in stage.depends}})

    def cached(self, stage: Stage) -> dict[str, Any] | None:
        """The stored marker if ``stage`` finished before with the same key (and is not forced)."""
        marker = self.out / stage.name / MARKER
        if self._forced(stage.name) or not marker.is_file():
            return None
        rec = read_json(marker)
        return rec if rec.get("key") == self.key(stage) else None

    def _guess_todo(self, stages: list[Stage]) -> dict[str, bool]:
        """Which stages will run (for the total estimate): forced, unfinished, changed or downstream of those."""
        saved, todo = dict(self.tokens), {}
        for s in stages:
            todo[s.name] = any(todo.get(d, True) for d in s.depends) or self.cached(s) is None
            if not todo[s.name]:
                self.tokens[s.name] = read_json(self.out / s.name / MARKER)["token"]
        self.tokens = saved
        return todo

    def run(self, stages: list[Stage]) -> dict[str, dict[str, Any]]:
        """Run (or reuse) every stage; returns ``{name: section}``."""
        t_start = time.perf_counter()
        done_est = done_real = 0.0
        todo = self._guess_todo(stages)
        for i, stage in enumerate(stages, 1):
            rec = self.cached(stage)
            tag = f"[{i}/{len(stages)}] {stage.title}"
            if rec is not None:
                self.log(f"{tag}: reused ({stage.name}/ finished before in {fmt_seconds(rec['seconds'])})")
                self.tokens[stage.name], self.sections[stage.name] = rec["token"], rec["section"]
                self.timing[stage.name] = {"seconds": rec["seconds"], "cached": True}
                continue
            scale = min(max(done_real / done_est, 0.5), 3.0) if done_est >= 10 else 1.0  # calibrate on real work
            left = sum(s.estimate for s in stages[i - 1:] if todo[s.name]) * scale
            self.log(f"{tag}: running (est. {fmt_seconds(stage.estimate * scale)}; ~{fmt_seconds(left)} left in all)")
            directory = self.out / stage.name
            if directory.exists():
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            t0 = time.perf_counter()
            section = stage.fn(directory)
            seconds = time.perf_counter() - t0
            token = uuid.uuid4().hex
            write_json(directory / MARKER, {"key": self.key(stage), "token": token, "seconds": round(seconds, 2),
                                            "section": section})
            self.tokens[stage.name], self.sections[stage.name] = token, section
            self.timing[stage.name] = {"seconds": round(seconds, 2), "cached": False}
            # downstream stages must rerun now: their keys include this token
            todo.update({s.name: True for s in stages[i:] if stage.name in s.depends or todo[s.name]})
            done_est, done_real = done_est + stage.estimate, done_real + seconds
            self.log(f"{' ' * len(f'[{i}/{len(stages)}]')} done in {fmt_seconds(seconds)} "
                     f"(elapsed {fmt_seconds(time.perf_counter() - t_start)})")
        return self.sections
