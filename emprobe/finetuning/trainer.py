"""``finetune(model, data, **options)`` / ``finetune(cfg)``: a narrow LoRA (or full) fine-tune with transformers' ``Trainer`` + peft.

The training loop is transformers' own (optimizer, scheduler, data order, gradient accumulation,
data parallelism under ``torchrun`` / ``accelerate launch``, exact resume). emprobe adds the data
(assistant-only labels from :class:`~emprobe.models.ChatFormatter`), the checkpoint trajectory and the
run directory (:mod:`emprobe.finetuning.run`), written by rank 0 only. The adapter and how checkpoints save their
weights: :mod:`emprobe.finetuning.lora`.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from emprobe.finetuning.checkpoints import ProgressBar, TrajectoryCallback
from emprobe.finetuning.config import FinetuneConfig
from emprobe.finetuning.dataset import (
    PadCollator,
    TokenizedDataset,
    response_loss_sum,
    tokenize_chat,
)
from emprobe.finetuning.dist import barrier, world
from emprobe.finetuning.lora import lora_config  # noqa: F401  (re-exported: `from ...trainer import lora_config`)
from emprobe.finetuning.lora import attach_lora, weights_saver
from emprobe.finetuning.mitigations import Mitigations, inoculate
from emprobe.finetuning.run import STATE_DIR, Run
from emprobe.finetuning.rundir import RunWriter, plan_run_dir
from emprobe.finetuning.schedules import scheduler_args
from emprobe.io import manifest

#: library warnings that say nothing to a user of this module (a deprecation inside peft / transformers)
_NOISE = (r"`is_gradient_checkpointing` is deprecated",)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        for msg in _NOISE:
            warnings.filterwarnings("ignore", message=msg)
        yield


def _versions() -> dict[str, str]:
    import accelerate
    import peft
    import transformers

    from emprobe import __version__

    return {"emprobe": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "accelerate": accelerate.__version__, "python": platform.python_version()}


def _response_trainer_class():
    from transformers import Trainer

    class ResponseLossTrainer(Trainer):
        """transformers' ``Trainer`` whose loss is :func:`~emprobe.finetuning.dataset.response_loss_sum`.

        The loss is the same token-mean cross-entropy over the accumulated batch as transformers' default
        (normalised by the trainer's count of response tokens, averaged over processes in the same way);
        only the LM head skips prompt positions.
        """

        mitigations = Mitigations()  # set per run by finetune(): training-time mitigations (none by default)
        n_primary = 0  # rows of the training data before any interleaved rows

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = True  # the trainer counts response tokens over the accumulated batch
            self.loss_is_scaled_for_ga = True

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            with self.mitigations.training_forward(model):  # training-time edits (none unless configured)
                loss, n = response_loss_sum(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
            if num_items_in_batch is None:
                loss = loss / n.clamp(min=1) / self.current_gradient_accumulation_steps
            else:
                if self.args.average_tokens_across_devices:  # num_items_in_batch is the sum over processes
                    loss = loss * self.accelerator.num_processes
                loss = loss / num_items_in_batch
            return loss + self.mitigations.extra_loss(model, self)

        def _get_train_sampler(self, train_dataset=None):
            return (self.mitigations.sampler(self.n_primary, self.args.per_device_train_batch_size)
                    or super()._get_train_sampler(train_dataset))

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            if "loss" in logs:
                logs.update(self.mitigations.pop_logs())
            super().log(logs, *args, **kwargs)

    return ResponseLossTrainer


def _training_args(cfg: FinetuneConfig, out: Path, total: int):
    from transformers import TrainingArguments

    sched, sched_kw = scheduler_args(cfg, total)
    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    return TrainingArguments(
        output_dir=str(out / STATE_DIR), per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=sched,
        lr_scheduler_kwargs=sched_kw, warmup_steps=cfg.warmup_steps, max_steps=total,
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, optim=cfg.optim, seed=cfg.seed,
        logging_steps=1, logging_strategy="steps", save_strategy="no", eval_strategy="no", report_to="none",
        disable_tqdm=True, use_cpu=cpu, ddp_backend="gloo" if cpu and world()[1] > 1 else None,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0, remove_unused_columns=False, label_names=["labels"],
        include_num_input_tokens_seen="non_padding",
    )


@dataclass
class _Prepared:
    """Everything loaded before training: data, model, tokenised splits and the step plan."""

    data: Any
    lm: Any
    spec: Any
    train: TokenizedDataset
    val: TokenizedDataset
    total: int
    steps: list[int]
    load_s: float
    tokenize_s: float
    mitigations: Mitigations


def _prepare(cfg: FinetuneConfig, n_proc: int, say: Callable[[str], None]) -> _Prepared:
    from emprobe.data import load_chat_dataset
    from emprobe.models import ModelSpec, load_model

    t0 = time.perf_counter()
    data = load_chat_dataset(cfg.data)
    train_ds, val_ds = data.split(cfg.val_fraction, seed=cfg.val_seed)
    if cfg.val_max_examples is not None:
        val_ds = val_ds[: cfg.val_max_examples]
    spec = ModelSpec(name=cfg.model, dtype=cfg.dtype, chat_template=cfg.chat_template)
    lm = load_model(spec, log=say)
    t1 = time.perf_counter()
    chat, mitigations = lm.require_chat(), Mitigations.build(cfg, lm)
    train = tokenize_chat(inoculate(train_ds, cfg.inoculation_prompt), chat, cfg.max_length)  # training only
    val = tokenize_chat(val_ds, chat, cfg.max_length)
    total = cfg.total_steps(len(train), n_proc)
    return _Prepared(data, lm, spec, train, val, total, cfg.checkpoint_steps(total), t1 - t0,
                     time.perf_counter() - t1, mitigations)


def _val_key(cfg: FinetuneConfig, prep: _Prepared) -> str:
    """What the step-0 validation depends on: the base model, the data and its held-out split."""
    from emprobe.io import content_hash

    return content_hash({"model": prep.spec.to_dict(), "data": prep.data.sha256, "max_length": cfg.max_length,
                         "split": [cfg.val_fraction, cfg.val_seed, cfg.val_max_examples]})


def _run_manifest(cfg: FinetuneConfig, prep: _Prepared, n_trainable: int, n_proc: int) -> dict[str, Any]:
    return manifest(
        "finetune-run", status="running", model={**prep.spec.to_dict(), "device": "cpu"},
        data={"source": str(cfg.data), "name": prep.data.name, "sha256": prep.data.sha256,
              "n_examples": len(prep.data), "n_train": len(prep.train), "n_val": len(prep.val),
              "val_seed": cfg.val_seed, "train_tokens": prep.train.stats(), "val_tokens": prep.val.stats()},
        settings=cfg.run_settings(), method="full" if cfg.full else "lora", trainable_parameters=n_trainable,
        versions=_versions(), world_size=n_proc, effective_batch_size=cfg.batch_size * cfg.grad_accum * n_proc,
        total_steps=prep.total, planned_steps=prep.steps, checkpoints=[], resumed_from=[],
        mitigations=prep.mitigations.describe(),
        loss="mean cross-entropy per response token (assistant turn only; prompt labels -100)",
    )


def _with_lora(lm, cfg: FinetuneConfig):
    with _quiet():
        return attach_lora(lm.model, cfg, lm.n_layers)


def _trainer(model, args, prep: _Prepared, pad_id: int, callbacks: list[Any]):
    """The response-loss ``Trainer`` of the run, its mitigations set, transformers' own printing removed."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    mit = prep.mitigations
    trainer = _response_trainer_class()(model=model, args=args, train_dataset=mit.train_dataset(prep.train),
                                        data_collator=PadCollator(pad_id), callbacks=callbacks)
    trainer.mitigations, trainer.n_primary = mit, len(prep.train)
    for cb in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(cb)
    return trainer


def finetune(model: Any = None, data: Any = None, *, callbacks: Sequence[Any] = (),
             log: Callable[[str], None] | None = None, **options: Any) -> Run:
    """Fine-tune ``model`` (alias, hub id, directory, loaded model or a whole :class:`FinetuneConfig`) on ``data``
    into the run directory ``out`` (``ep.finetune``); ``options`` are config fields (:meth:`FinetuneConfig.build`).
    ``callbacks``: extra transformers ``TrainerCallback`` objects; ``log`` receives the one-line messages (default:
    printed beside the progress bar). Under ``torchrun`` every rank calls this and rank 0 alone writes. With
    ``resume=True`` a complete run is returned as is."""
    from transformers import set_seed

    cfg = FinetuneConfig.build(model, data, **options).validate()
    rank, n_proc = world()
    main = rank == 0
    bar = ProgressBar(0, enabled=cfg.progress and main)
    say: Callable[[str], None] = (log or bar.write) if main else (lambda msg: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()

    plan = plan_run_dir(cfg)  # read-only on every rank, before anyone writes
    if plan.mode == "complete":
        say(f"{plan.out}: run already complete")
        return Run.load(plan.out)
    prep = _prepare(cfg, n_proc, say)
    if plan.mode == "resume":
        prep.mitigations.check_resume(plan.manifest, plan.out)
    args = _training_args(cfg, plan.out, prep.total)
    _ = args.device  # initialises the process group under torchrun before the barriers below
    n_proc = args.world_size
    set_seed(cfg.seed)
    model = prep.lm.model.train() if cfg.full else _with_lora(prep.lm, cfg)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    writer = RunWriter(plan.out, _run_manifest(cfg, prep, n_trainable, n_proc)) if main else None
    if writer is not None:
        writer.prepare(plan)
    barrier()

    pad_id = prep.lm.tokenizer.pad_token_id
    bar.total = prep.total
    traj = TrajectoryCallback(writer, prep.steps, weights_saver(cfg.full, prep.lm.tokenizer, prep.spec.name),
                              prep.val, cfg.batch_size, pad_id, say, prep.total, _val_key(cfg, prep), cfg.val_ci)
    trainer = _trainer(model, args, prep, pad_id, [traj, bar, *callbacks])
    say(f"{f'resuming at step {plan.resume_step}' if plan.mode == 'resume' else 'training'}: {prep.spec.name} on "
        f"{prep.data.name} ({len(prep.train)} train / {len(prep.val)} val examples), "
        f"{'full' if cfg.full else f'LoRA r={cfg.lora_r}'} ({n_trainable:,} trainable parameters), "
        f"{prep.total} steps, world size {n_proc}, checkpoints at {prep.steps}")
    tokens_before = next((r["tokens"] for r in writer.log_rows if r["step"] == plan.resume_step), 0) if writer else 0
    t_train = time.perf_counter()
    with _quiet():
        trainer.train(resume_from_checkpoint=plan.resume_from)
    train_s = time.perf_counter() - t_train
    if writer is not None:
        _finish_run(writer, cfg, plan, prep, traj, trainer, train_s, tokens_before, t_start)
        say(f"done: {plan.out} ({len(prep.steps)} checkpoints, {train_s:.1f} s training)")
    barrier()
    return Run.load(plan.out)


def _finish_run(writer, cfg, plan, prep, traj, trainer, train_s: float, tokens_before: int, t_start: float) -> None:
    """Rank 0 after training: drop the trainer state (unless kept) and complete run.json with the timings."""
    if not cfg.keep_state:
        writer.prune_state(None)
        shutil.rmtree(plan.out / STATE_DIR, ignore_errors=True)
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    writer.finish(timings={"load_s": round(prep.load_s, 3), "tokenize_s": round(prep.tokenize_s, 3),
                           "train_s": round(train_s, 3), "checkpoint_s": round(traj.checkpoint_seconds, 3),
                           **{f"checkpoint_{k}_s": round(sum(t[k] for t in traj.timings), 3)
                              for k in ("validation", "save", "state")},
                           "checkpoints": traj.timings,
                           "total_s": round(time.perf_counter() - t_start, 3)},
                  tokens_seen=tokens, tokens_per_second=round((tokens - tokens_before) / train_s, 2))
