"""Sweeps: a grid of fine-tunes (datasets x schedules x learning rates x seeds ...) in one directory.

A sweep file (YAML)::

    out: runs/finance-sweep          # the sweep directory (relative to the current directory)
    base:                            # FinetuneConfig fields shared by every run
      model: smollm2-135m-instruct
      max_steps: 25
      save_steps: [0, 5, 10, 25]
    grid:                            # every combination is one run
      data: [builtin:risky-finance, builtin:risky-finance-aligned]
      schedule: [constant, cosine]
      lr: [1.0e-4, 3.0e-4]
      seed: [0, 1]

Each run goes to ``OUT/<name>`` where the name lists its grid values (``data-risky-finance__schedule-
cosine__lr-0.0003__seed-0``). Complete runs are skipped, interrupted ones resumed; ``OUT/sweep.json``
records the grid and every run's status, seconds and attempts. The runs are trained by an executor
(:mod:`emprobe.finetuning.executors`): local subprocesses side by side, or Ray tasks on a cluster.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from emprobe.errors import ConfigError, EmprobeError
from emprobe.finetuning.config import OPERATIONAL, FinetuneConfig
from emprobe.io import content_hash, manifest, write_json

SWEEP_MANIFEST = "sweep.json"

if TYPE_CHECKING:
    from emprobe.finetuning.processes import Executor


def _slug(key: str, value: Any) -> str:
    if key == "data":
        v = str(value)
        v = v.split(":", 1)[1] if v.startswith("builtin:") else Path(v).name.split(".")[0]
    elif isinstance(value, float):
        v = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        v = "-".join(map(str, value))
    else:
        v = str(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{key.replace('_', '-')}-{v}").strip("-")


@dataclass
class Sweep:
    """A grid of :class:`FinetuneConfig` variations written under ``out``."""

    out: Path
    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        valid = {f.name for f in fields(FinetuneConfig)} - set(OPERATIONAL)
        for where, keys in (("base", self.base), ("grid", self.grid)):
            bad = sorted(set(keys) - valid)
            if bad:
                raise ConfigError(f"{self.source}: unknown setting {bad[0]!r} in {where}; "
                                  f"valid: {', '.join(sorted(valid))}")
        for k, v in self.grid.items():
            if not isinstance(v, list) or not v:
                raise ConfigError(f"{self.source}: grid.{k} must be a non-empty list")
        both = sorted(set(self.base) & set(self.grid))
        if both:
            raise ConfigError(f"{self.source}: {both[0]!r} is both in base and in grid")
        if "data" not in self.base and "data" not in self.grid:
            raise ConfigError(f"{self.source}: no training data (set base.data or grid.data)")

    @classmethod
    def load(cls, path: str | Path, out: str | Path | None = None) -> "Sweep":
        """Read a sweep YAML file (``out`` overrides the file's ``out``)."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such sweep file")
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping with out, base and grid")
        unknown = sorted(set(d) - {"out", "base", "grid"})
        if unknown:
            raise ConfigError(f"{path}: unknown key {unknown[0]!r} (expected out, base, grid)")
        out = out or d.get("out")
        if not out:
            raise ConfigError(f"{path}: no 'out' directory (or pass `out`)")
        return cls(Path(out), dict(d.get("base") or {}), dict(d.get("grid") or {}), str(path))

    def runs(self) -> list[tuple[str, FinetuneConfig]]:
        """``(name, config)`` for every grid point, in grid order."""
        keys = list(self.grid)
        out, seen = [], {}
        for values in itertools.product(*(self.grid[k] for k in keys)):
            point = dict(zip(keys, values))
            name = "__".join(_slug(k, v) for k, v in point.items()) or "run"
            if name in seen:
                raise ConfigError(f"{self.source}: grid points {seen[name]} and {point} get the same run name {name!r}")
            seen[name] = point
            try:
                cfg = FinetuneConfig.from_dict({**self.base, **point, "out": str(self.out / name)})
            except TypeError as e:
                raise ConfigError(f"{self.source}: bad settings for run {name}: {e}") from None
            try:
                out.append((name, cfg.validate()))
            except ConfigError as e:
                raise ConfigError(f"{self.source}: run {name}: {e}") from None
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "base": self.base, "grid": self.grid}


@dataclass
class SweepRun:
    """How one run of a sweep ended (what :func:`run_sweep` returns per grid point)."""

    name: str
    status: str  # "complete" (trained now), "skipped" (already complete), "failed: ...", "planned"
    out: Path
    seconds: float = 0.0
    attempts: int = 0


_STATUS = {"ok": "complete", "skipped": "skipped"}


def run_sweep(sweep: Sweep | str | Path, *, threads: int | None = None, progress: bool = True,
              dry_run: bool = False, log: Callable[[str], None] = print,
              executor: "Executor | None" = None) -> list[SweepRun]:
    """Run every grid point of ``sweep`` (skipping complete runs, resuming interrupted ones).

    ``executor`` (default: a :class:`~emprobe.finetuning.executors.LocalExecutor` splitting ``threads``
    between the runs it trains side by side) runs the cells; see :mod:`emprobe.finetuning.executors`.
    ``progress`` is kept for compatibility: cells run without progress bars, one line per start and end.
    A run that fails is recorded and the sweep goes on; at the end an :class:`EmprobeError` lists the
    failed runs. ``OUT/sweep.json`` is rewritten as each run ends.
    """
    from emprobe.finetuning.executors import LocalExecutor
    from emprobe.finetuning.run import Run

    from emprobe.io import claim_dir
    from emprobe.validate import check_args

    if not isinstance(sweep, Sweep):
        sweep = Sweep.load(sweep)
    plan = sweep.runs()  # every run's settings validated before the first one trains
    for _, cfg in plan:
        check_args(model=cfg.model, data=cfg.data)
    if dry_run:
        results = []
        for i, (name, cfg) in enumerate(plan, 1):
            path = Path(cfg.out)
            done = (path / "run.json").is_file() and Run.load(path).complete
            results.append(SweepRun(name, "skipped" if done else "planned", path))
            log(f"[{i}/{len(plan)}] {name}: {'complete, skip' if done else 'to run'}")
        return results

    claim_dir(sweep.out, "finetune-sweep", reuse=("finetune-sweep",))
    rows = [{"name": n, "status": "pending", "path": n} for n, _ in plan]
    by_index: dict[int, SweepRun] = {}

    def record(i: int | None = None, outcome=None) -> None:
        if outcome is not None:
            status = _STATUS.get(outcome.status, f"failed: {outcome.error}")
            by_index[i] = SweepRun(outcome.name, status, outcome.out, round(outcome.seconds, 3), outcome.attempts)
            rows[i] = {"name": outcome.name, "status": status, "path": outcome.name, "attempts": outcome.attempts,
                       "seconds": round(outcome.seconds, 3)}
        write_json(sweep.out / SWEEP_MANIFEST, manifest("finetune-sweep", source=sweep.source,
                                                         sweep_hash=content_hash(sweep.to_dict()),
                                                         **sweep.to_dict(), runs=rows))

    record()
    executor = executor or LocalExecutor(threads=threads)
    executor.run([cfg.replace(resume=True) for _, cfg in plan], names=[n for n, _ in plan], log=log,
                 on_result=record)
    results = [by_index[i] for i in range(len(plan))]
    failed = [r for r in results if r.status.startswith("failed")]
    if failed:
        raise EmprobeError(f"{len(failed)} of {len(results)} sweep runs failed, e.g. {failed[0].name}: "
                           f"{failed[0].status.removeprefix('failed: ')}")
    return results
