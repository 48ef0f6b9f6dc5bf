"""Trainer callbacks: checkpoints along the trajectory, the per-step loss log, the progress bar.

:class:`TrajectoryCallback` asks the trainer to save its own (optimizer, scheduler, RNG) state at each
requested step and, once that is on disk, writes emprobe's checkpoint (weights + ``checkpoint.json`` with
the training loss so far and a held-out validation loss) atomically; then it deletes the older trainer
state, so only the latest checkpoint can be resumed from. Step 0 is written before the first update.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from emprobe.finetuning.dataset import TokenizedDataset
from emprobe.finetuning.dist import barrier
from emprobe.finetuning.mitigations import LOG_KEYS
from emprobe.finetuning.rundir import RunWriter
from emprobe.finetuning.validation import StepZeroCache, Validation, split_size, validate


def _mean(xs: list[float]) -> float | None:
    return float(sum(xs) / len(xs)) if xs else None


class TrajectoryCallback(TrainerCallback):
    """Checkpoint at ``steps`` (incl. 0), log every optimizer step; rank 0 writes.

    ``val_key`` names what determines the step-0 validation (base model, data, split): runs of this process
    with the same key validate step 0 once (:class:`~emprobe.finetuning.validation.StepZeroCache`). Step 0
    validates every example of ``val_data``; later checkpoints the first
    :func:`~emprobe.finetuning.validation.split_size` of them (all of them when ``val_ci`` is ``None``).
    """

    def __init__(self, writer: RunWriter | None, steps: list[int], save_weights: Callable[[Any, Path], None],
                 val_data: TokenizedDataset, val_batch_size: int, pad_id: int, say: Callable[[str], None],
                 total_steps: int, val_key: str | None = None, val_ci: float | None = None) -> None:
        self.writer, self.steps, self.save_weights = writer, set(steps), save_weights
        self.val_data, self.val_batch_size, self.pad_id, self.val_key = val_data, val_batch_size, pad_id, val_key
        self.val_ci = val_ci
        self.step0: Validation | None = None
        self.step0_shared = False  # step 0's validation came from another run of this process / worker pool
        self.say, self.total = say, total_steps
        self.t0 = time.perf_counter()
        self.checkpoint_seconds = 0.0
        self.last_ckpt_step = 0
        self._save_requested: float | None = None
        #: seconds per checkpoint: "validation" (the held-out loss), "save" (adapter/weights + checkpoint.json),
        #: "state" (the trainer's optimizer/scheduler/RNG state for resume; none at step 0)
        self.timings: list[dict[str, float]] = []

    # ------------------------------------------------------------------ events
    def on_train_begin(self, args, state, control, model=None, **kw):
        self.t0 = time.perf_counter()
        self.last_ckpt_step = state.global_step
        if state.global_step == 0 and 0 in self.steps and self.writer is not None and not self.writer.has_checkpoint(0):
            self._write(0, model, state)
        return control

    def on_step_end(self, args, state, control, **kw):
        if state.global_step in self.steps:
            control.should_save = True
            self._save_requested = time.perf_counter()
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        if self.writer is None or not logs or "loss" not in logs:
            return control
        row = {"step": state.global_step, "loss": float(logs["loss"]),
               "learning_rate": float(logs.get("learning_rate", float("nan"))),
               "grad_norm": float(logs["grad_norm"]) if logs.get("grad_norm") is not None else None,
               "epoch": round(float(state.epoch or 0.0), 6), "tokens": int(state.num_input_tokens_seen or 0),
               "time": round(time.perf_counter() - self.t0, 3),
               **{k: float(logs[k]) for k in LOG_KEYS if k in logs}}  # e.g. kl_to_base
        self.writer.add_log_row(row)
        return control

    def on_save(self, args, state, control, model=None, **kw):
        barrier()  # every rank's RNG state is on disk before the checkpoint counts as complete
        if self.writer is not None and state.global_step in self.steps:
            t = self._save_requested
            self._save_requested = None
            self._write(state.global_step, model, state, 0.0 if t is None else time.perf_counter() - t)
            self.writer.prune_state(state.global_step)
        return control

    # ------------------------------------------------------------------ writing
    def _validate(self, step: int, model) -> Validation:
        """This checkpoint's validation (step 0: from this process's cache when a run with the same key did it)."""
        if step > 0:
            if self.step0 is None and self.writer is not None and self.writer.has_checkpoint(0):  # resumed run
                self.step0 = Validation.from_info(self.writer.checkpoint_info(0))
                if self.step0 is not None:
                    self._keep(len(self.step0.sums))
            return validate(model, self.val_data, self.val_batch_size, self.pad_id)
        pool = StepZeroCache.get(self.val_key) if self.val_key else None
        self.step0_shared = pool is not None
        if pool is None:
            pool = validate(model, self.val_data, self.val_batch_size, self.pad_id)
            if self.val_key:
                StepZeroCache.put(self.val_key, pool)
        self.step0 = pool.head(self._keep(split_size(pool, self.val_ci)))
        return self.step0

    def _keep(self, n: int) -> int:
        """Validate on the first ``n`` held-out examples from now on."""
        self.val_data = TokenizedDataset(self.val_data.rows[:n], self.val_data.n_truncated)
        return n

    def _write(self, step: int, model, state, state_s: float = 0.0) -> None:
        t = time.perf_counter()
        w = self.writer
        assert w is not None
        v = self._validate(step, model)
        val = v.loss
        t_val = time.perf_counter()
        last = w.losses(step, step - 1)
        info = {
            "train_loss": _mean(w.losses(step)),
            "train_loss_recent": _mean(w.losses(step, self.last_ckpt_step)),
            "loss": last[0] if last else None,
            **v.info(self.step0 if step > 0 else None),
            "learning_rate": next((r["learning_rate"] for r in reversed(w.log_rows) if r["step"] <= step), None),
            "epoch": round(float(state.epoch or 0.0), 6),
            "tokens_seen": int(state.num_input_tokens_seen or 0),
        }
        w.write_checkpoint(step, lambda d: self.save_weights(model, d), info)
        end = time.perf_counter()
        took = end - t + state_s
        self.timings.append({"step": step, "validation": round(t_val - t, 4), "save": round(end - t_val, 4),
                             "state": round(state_s, 4), **({"validation_shared": True}
                                                           if step == 0 and self.step0_shared else {})})
        self.checkpoint_seconds += took
        self.last_ckpt_step = step
        fmt = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"  # noqa: E731
        self.say(f"checkpoint step {step}/{self.total}: train_loss {fmt(info['train_loss'])} "
                 f"val_loss {fmt(val)} ({took:.1f} s: validation {t_val - t:.1f} s) -> "
                 f"{w.out.name}/checkpoints/step-{step:06d}")


class ProgressBar(TrainerCallback):
    """A tqdm bar over optimizer steps with the latest loss (main process only)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.enabled, self.bar = total, enabled, None

    def on_train_begin(self, args, state, control, **kw):
        if self.enabled and state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=state.global_step, desc="finetune", unit="step",
                            dynamic_ncols=True)
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', 0):.2e}", refresh=False)
            self.bar.update(state.global_step - self.bar.n)
        return control

    def on_train_end(self, args, state, control, **kw):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        return control

    def write(self, msg: str) -> None:
        """Print a line without breaking the bar."""
        if self.bar is not None:
            self.bar.write(msg)
        else:
            print(msg, flush=True)
