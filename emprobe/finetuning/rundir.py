"""Writing a run directory: deciding fresh / resume / complete, the manifest, the loss log, checkpoints.

Only the main process (rank 0) writes; every write is atomic (see :mod:`emprobe.io`). The layout is
documented in :mod:`emprobe.finetuning.run`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emprobe.errors import ConfigError
from emprobe.finetuning.run import (
    CKPT_DIR, CKPT_MANIFEST, RUN_MANIFEST, STATE_DIR, TRAIN_LOG, Run, checkpoint_name,
)
from emprobe.io import atomic_dir, read_json, write_json, write_text

TRAINER_STATE = "trainer_state.json"  # written last into a transformers checkpoint: marks it complete


@dataclass
class RunPlan:
    """What to do with ``out``: ``fresh`` (start over), ``resume`` (from ``resume_step``) or ``complete``."""

    mode: str
    out: Path
    resume_step: int | None = None
    state_path: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def resume_from(self) -> str | None:
        """The transformers checkpoint to pass as ``resume_from_checkpoint`` (``None``: train from step 0)."""
        return str(self.state_path) if self.state_path else None


def _settings_diff(old: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """Settings that differ; a setting a run predates (absent from its ``run.json``) counts as its default."""
    keys = sorted(set(old) | set(new))
    norm = lambda v: json.loads(json.dumps(v, default=str))  # noqa: E731  (tuples vs lists, floats)
    was = {k: old.get(k, defaults.get(k)) for k in keys}
    return [f"{k}: {was[k]!r} -> {new.get(k)!r}" for k in keys if norm(was[k]) != norm(new.get(k))]


def check_run_out(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """The output policy for a run directory (:mod:`emprobe.outdir`): new or empty; a run to continue with
    ``resume``; output emprobe wrote, replaced with ``overwrite``; never a file or a directory emprobe did not
    write. Read-only."""
    from emprobe.outdir import check_out, owner

    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (overwrite and owner(out)):
        if resume and not (out / RUN_MANIFEST).is_file():
            raise ConfigError(f"`out` {out} holds no emprobe run ({RUN_MANIFEST}): nothing to resume; point `out` at "
                              "the run to continue, or at a new directory without `resume`")
        if not resume and (out / RUN_MANIFEST).is_file():
            raise ConfigError(f"`out` {out} holds a run; pass `resume` to continue it or `overwrite` to replace it")
    return check_out(out, overwrite=overwrite, reuse=("finetune-run",) if resume else False)


def plan_run_dir(cfg) -> RunPlan:
    """Inspect ``cfg.out`` (read-only, so every rank can call it) and decide how to proceed.

    Raises :class:`ConfigError` where :func:`check_run_out` refuses ``cfg.out``, for resuming with different
    settings, and for a run whose optimizer state is missing.
    """
    out = check_run_out(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite)
    empty = not out.exists() or not any(out.iterdir())
    if empty or cfg.overwrite:
        return RunPlan("fresh", out)
    run = Run.load(out)
    diff = _settings_diff(run.settings, cfg.run_settings(), type(cfg)().run_settings())
    if diff:
        raise ConfigError(f"cannot resume {out}: settings differ ({'; '.join(diff[:3])}); pass `overwrite` to start "
                          "again")
    if run.complete:
        return RunPlan("complete", out, manifest=run.manifest)
    ckpts = run.checkpoints()
    if not ckpts:
        return RunPlan("fresh", out, manifest=run.manifest)
    last = ckpts[-1].step
    if last == 0:
        return RunPlan("resume", out, 0, None, run.manifest)
    state = out / STATE_DIR / f"checkpoint-{last}"
    if not (state / TRAINER_STATE).is_file():
        raise ConfigError(f"cannot resume {out}: no optimizer state for its last checkpoint (step {last}) in "
                          f"{state}; pass `overwrite` to start again")
    return RunPlan("resume", out, last, state, run.manifest)


class RunWriter:
    """The main process's handle on a run directory."""

    def __init__(self, out: str | Path, manifest: dict[str, Any]) -> None:
        self.out = Path(out)
        self.manifest = manifest
        self.log_rows: list[dict[str, Any]] = []

    # --------------------------------------------------------------- set-up
    def prepare(self, plan: RunPlan) -> None:
        """Empty the directory for a fresh run, or drop everything after the resume step."""
        if plan.mode == "fresh" and self.out.exists():
            for child in self.out.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        self.out.mkdir(parents=True, exist_ok=True)
        ckdir = self.out / CKPT_DIR
        if plan.mode == "resume":
            keep = plan.resume_step or 0
            for d in ckdir.glob("*"):  # half-written temp dirs of a killed run, checkpoints past the resume step
                if d.name.startswith(".") or (d.name.startswith("step-") and int(d.name[5:]) > keep):
                    shutil.rmtree(d, ignore_errors=True)
            self.prune_state(keep)
            self.log_rows = [r for r in Run(self.out, {}).train_log() if r["step"] <= keep]
            self.manifest["checkpoints"] = [c for c in plan.manifest.get("checkpoints", []) if c["step"] <= keep]
            self.manifest["resumed_from"] = plan.manifest.get("resumed_from", []) + [keep]
            self.manifest["created"] = plan.manifest.get("created", self.manifest.get("created"))
            self.write_log()
        self.write_manifest()

    # --------------------------------------------------------------- manifest and log
    def write_manifest(self) -> None:
        write_json(self.out / RUN_MANIFEST, self.manifest)

    def write_log(self) -> None:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.log_rows)
        write_text(self.out / TRAIN_LOG, text)

    def add_log_row(self, row: dict[str, Any]) -> None:
        self.log_rows = [r for r in self.log_rows if r["step"] < row["step"]] + [row]
        self.write_log()

    def losses(self, upto: int, since: int = 0) -> list[float]:
        return [r["loss"] for r in self.log_rows if since < r["step"] <= upto]

    # --------------------------------------------------------------- checkpoints
    def has_checkpoint(self, step: int) -> bool:
        return (self.out / CKPT_DIR / checkpoint_name(step) / CKPT_MANIFEST).is_file()

    def checkpoint_info(self, step: int) -> dict[str, Any]:
        """A written checkpoint's ``checkpoint.json``."""
        return read_json(self.out / CKPT_DIR / checkpoint_name(step) / CKPT_MANIFEST)

    def write_checkpoint(self, step: int, save_weights, info: dict[str, Any]) -> Path:
        """Atomically write ``checkpoints/step-NNNNNN``: ``save_weights(tmp_dir)`` then ``checkpoint.json``."""
        path = self.out / CKPT_DIR / checkpoint_name(step)
        with atomic_dir(path, overwrite=True) as tmp:
            save_weights(tmp)
            write_json(tmp / CKPT_MANIFEST, {"step": step, **info})
        entry = {"step": step, "path": f"{CKPT_DIR}/{checkpoint_name(step)}",
                 **{k: info.get(k) for k in ("train_loss", "val_loss")}}
        self.manifest["checkpoints"] = [c for c in self.manifest.get("checkpoints", []) if c["step"] != step]
        self.manifest["checkpoints"].append(entry)
        self.manifest["checkpoints"].sort(key=lambda c: c["step"])
        self.write_manifest()
        return path

    # --------------------------------------------------------------- optimizer state
    def prune_state(self, keep_step: int | None) -> None:
        """Delete transformers checkpoints under ``state/`` except the one at ``keep_step``."""
        for d in (self.out / STATE_DIR).glob("*"):
            if d.name != f"checkpoint-{keep_step}":
                shutil.rmtree(d, ignore_errors=True)

    def finish(self, **fields: Any) -> None:
        self.manifest.update(fields, status="complete")
        self.write_manifest()
