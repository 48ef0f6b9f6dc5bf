"""Benchmark: ``emprobe finetune`` with checkpoints vs plain TRL ``SFTTrainer``, with and without the same checkpoints.

The same LoRA fine-tune (model, data split, LoRA settings, lr schedule, batch size, steps, seed; fp32 on CPU
unless ``--dtype/--device`` say otherwise) runs three ways in one process, interleaved (the order rotates each
repeat, so a shared machine's load hits all three alike):

* ``trl``: ``SFTTrainer`` on the prompt/completion form of the training split (completion-only loss), no
  saves, no evaluation;
* ``trl+ckpt``: the same, saving a checkpoint (adapter, optimizer, scheduler, RNG state) every
  ``steps / (checkpoints - 1)`` steps and evaluating the same held-out examples emprobe validates on at
  those steps and at the start (``eval_on_start``): the fair baseline for emprobe's checkpoints;
* ``emprobe``: :func:`emprobe.finetuning.finetune` with ``--checkpoints`` checkpoints (step 0 included), each an
  adapter + ``checkpoint.json`` with the held-out validation loss, plus the optimizer state for resume.

Throughput = non-padding training tokens / wall time, excluding loading the base model (all load it from the
same cache): for TRL from ``SFTTrainer(...)`` (dataset preparation) to the end of ``train()``; for emprobe
the whole ``finetune()`` call minus its model load. Per checkpoint it prints the save time (emprobe: adapter
+ metadata, and the trainer state; TRL: its whole checkpoint) and the validation time. Targets: emprobe >=
0.95x ``trl+ckpt``; an emprobe checkpoint save (adapter + metadata) <= 1 s.

    python benchmarks/bench_finetune.py --steps 8 --checkpoints 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="builtin:risky-finance")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--checkpoints", type=int, default=5, help="checkpoints incl. step 0 (evenly spaced)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--val-max-examples", type=int, default=None,
                    help="held-out examples per checkpoint (default: FinetuneConfig's)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of the three runs (ratios: the median of the "
                    "ratios within each round; per-run figures: the run with the median tokens/s)")
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 (both trainers)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (both trainers; auto = the accelerator if any)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (keep 1 on a shared 2-core machine)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args()
    if a.checkpoints < 2 or a.steps % (a.checkpoints - 1):
        ap.error("--steps must be a multiple of --checkpoints - 1 (evenly spaced checkpoints, TRL's save_steps)")

    import torch

    torch.set_num_threads(a.threads)
    from emprobe.finetuning import FinetuneConfig

    every = a.steps // (a.checkpoints - 1)
    cfg = FinetuneConfig(model=a.model, data=a.data, max_steps=a.steps, batch_size=a.batch_size, lora_r=a.lora_r,
                         lora_alpha=2 * a.lora_r, lr=a.lr, max_length=a.max_length, threads=a.threads,
                         dtype=a.dtype, device=a.device, save_steps=list(range(0, a.steps + 1, every)),
                         progress=False, out="")
    if a.val_max_examples is not None:
        cfg.val_max_examples = a.val_max_examples

    runners = {"trl": lambda: run_trl(cfg, None), "trl+ckpt": lambda: run_trl(cfg, every),
               "emprobe": lambda: run_emprobe(cfg)}
    names, results = list(runners), {n: [] for n in runners}
    load = [_loadavg()]
    for r in range(a.repeats):
        for name in names[r % 3:] + names[:r % 3]:
            results[name].append(runners[name]())
        load.append(_loadavg())
    tok_s = {n: [r["tokens"] / r["wall_s"] for r in rs] for n, rs in results.items()}
    paired = [(e / c, e / t) for e, c, t in zip(tok_s["emprobe"], tok_s["trl+ckpt"], tok_s["trl"])]
    report(a, {n: _median(rs) for n, rs in results.items()}, load, paired)


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0] if Path("/proc/loadavg").exists() else "?"


def _median(rs: list[dict]) -> dict:
    """The run with the median tokens/s (its own per-checkpoint figures stay consistent)."""
    rs = sorted(rs, key=lambda r: r["tokens"] / r["wall_s"])
    return rs[len(rs) // 2] | {"repeats_tok_s": [round(r["tokens"] / r["wall_s"], 1) for r in rs]}


def report(a, res: dict, load: list[str], paired: list[tuple[float, float]]) -> None:
    print(f"{a.steps}-step LoRA r={a.lora_r} fine-tune of {a.model} on {a.data}, batch {a.batch_size}, "
          f"{a.checkpoints} checkpoints, {a.threads} thread(s), {a.repeats} repeat(s) interleaved; "
          f"load average (1 min) before/after each round: {' '.join(load)}")
    print(f"{'':10s} {'tokens':>7s} {'wall s':>7s} {'tok/s':>7s} {'ckpts':>5s} {'save s':>7s} {'state s':>7s} "
          f"{'valid s':>7s} {'evals':>5s} {'last loss':>9s}")
    for name, r in res.items():
        r["tok_s"] = r["tokens"] / r["wall_s"]
        print(f"{name:10s} {r['tokens']:7d} {r['wall_s']:7.1f} {r['tok_s']:7.1f} {len(r['save_s']):5d} "
              f"{_mean(r['save_s']):7.2f} {_mean(r['state_s']):7.2f} {_mean(r['valid_s']):7.2f} "
              f"{len(r['valid_s']):5d} {r['final_loss']:9.4f}")
    print("(save s / state s / valid s: mean seconds per checkpoint; emprobe's save = adapter + checkpoint.json, "
          "state = optimizer/scheduler/RNG for resume; TRL's save is its whole checkpoint)")
    emp = res["emprobe"]
    print("emprobe per checkpoint: " + "; ".join(
        f"step {t['step']}: save {t['save']:.2f} s, state {t['state']:.2f} s, validation {t['validation']:.2f} s"
        for t in emp["checkpoints"]))
    # ratios within each round (same load), median over rounds
    ratio_ckpt, ratio_plain = (statistics.median(x) for x in zip(*paired))
    if len(paired) > 1:
        print("per round, emprobe / trl+ckpt and emprobe / trl: "
              + "; ".join(f"{c:.3f}x, {t:.3f}x" for c, t in paired))
    val_ratio = _mean(emp["valid_s"]) / max(_mean(res["trl+ckpt"]["valid_s"]), 1e-9)
    print(f"emprobe / trl+ckpt tokens/s: {ratio_ckpt:.3f}x (target >= 0.95x: "
          f"{'met' if ratio_ckpt >= 0.95 else 'NOT met'}); emprobe / trl (no checkpoints, no evaluation): "
          f"{ratio_plain:.3f}x")
    print(f"emprobe checkpoint save {max(emp['save_s']):.2f} s at most (target <= 1 s: "
          f"{'met' if max(emp['save_s']) <= 1.0 else 'NOT met'}); validation {_mean(emp['valid_s']):.2f} s vs TRL "
          f"evaluation {_mean(res['trl+ckpt']['valid_s']):.2f} s per checkpoint ({val_ratio:.2f}x)")
    if a.json:
        a.json.write_text(json.dumps({"runs": res, "ratio_vs_trl_ckpt": ratio_ckpt, "ratio_vs_trl": ratio_plain,
                                      "paired_ratios": paired,
                                      "load_average": load, "settings": vars(a) | {"json": str(a.json)}}, indent=2))


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else 0.0


def run_emprobe(cfg) -> dict:
    from emprobe.finetuning import finetune

    with tempfile.TemporaryDirectory() as tmp:
        run = finetune(cfg.replace(out=str(Path(tmp) / "run")), log=lambda m: None)
        m = run.manifest
        t = m["timings"]
        cks = t["checkpoints"]
        return {"tokens": m["tokens_seen"], "wall_s": t["total_s"] - t["load_s"], "loop_s": t["train_s"],
                "save_s": [c["save"] for c in cks], "state_s": [c["state"] for c in cks if c["step"] > 0],
                "valid_s": [c["validation"] for c in cks], "checkpoints": cks,
                "final_loss": run.train_log()[-1]["loss"]}


def _timed(obj, method: str, into: list[float]) -> None:
    """Wrap ``obj.method`` so that each call's seconds are appended to ``into``."""
    inner = getattr(obj, method)

    def wrapper(*args, **kw):
        t = time.perf_counter()
        try:
            return inner(*args, **kw)
        finally:
            into.append(time.perf_counter() - t)

    setattr(obj, method, wrapper)


def run_trl(cfg, every: int | None) -> dict:
    """The same fine-tune with TRL's SFTTrainer: prompt/completion data, completion-only loss; with ``every``,
    a checkpoint and an evaluation of the same held-out examples every ``every`` steps (and one at the start)."""
    from datasets import Dataset, disable_progress_bars
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from emprobe.data import load_chat_dataset
    from emprobe.finetuning.trainer import lora_config
    from emprobe.models import load_model

    train, val = load_chat_dataset(cfg.data).split(cfg.val_fraction, seed=cfg.val_seed)
    if cfg.val_max_examples is not None:
        val = val[: cfg.val_max_examples]
    records = lambda ds: [{"prompt": e.prompt_messages,  # noqa: E731
                           "completion": [{"role": "assistant", "content": e.response}]} for e in ds]
    disable_progress_bars()
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    lm = load_model(cfg.model, dtype=cfg.dtype, device=device, log=lambda *x: None)
    ckpt = {} if every is None else dict(save_strategy="steps", save_steps=every, eval_strategy="steps",
                                         eval_steps=every, eval_on_start=True,
                                         per_device_eval_batch_size=cfg.batch_size)
    saves, evals = [], []
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
                         learning_rate=cfg.lr, lr_scheduler_type="linear", seed=cfg.seed, max_length=cfg.max_length,
                         logging_steps=1, report_to="none", gradient_checkpointing=False,
                         bf16=cfg.dtype in ("bfloat16", "bf16"), fp16=cfg.dtype in ("float16", "fp16"),
                         use_cpu=device == "cpu", disable_tqdm=True, dataloader_num_workers=0,
                         include_num_input_tokens_seen="non_padding", **({"save_strategy": "no"} | ckpt))
        t0 = time.perf_counter()
        trainer = SFTTrainer(model=lm.model, args=args, train_dataset=Dataset.from_list(records(train)),
                             eval_dataset=Dataset.from_list(records(val)) if every else None,
                             processing_class=lm.tokenizer, peft_config=lora_config(cfg, lm.n_layers))
        trainer.remove_callback(PrinterCallback)  # no per-step log dicts on stdout
        _timed(trainer, "_save_checkpoint", saves)
        _timed(trainer, "evaluate", evals)
        t1 = time.perf_counter()
        trainer.train()
        t2 = time.perf_counter()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return {"tokens": int(trainer.state.num_input_tokens_seen), "wall_s": t2 - t0, "loop_s": t2 - t1,
            "save_s": saves, "state_s": [], "valid_s": evals, "final_loss": losses[-1]}


if __name__ == "__main__":
    main()
