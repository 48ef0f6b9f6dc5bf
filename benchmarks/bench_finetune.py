"""Benchmark: plain TRL ``SFTTrainer`` (no checkpoints) vs ``emprobe finetune`` saving checkpoints.

The same LoRA fine-tune (model, data split, LoRA settings, lr schedule, batch size, steps, seed, fp32 on
CPU) runs twice in one process:

* TRL: ``SFTTrainer`` on the prompt/completion form of the training split (completion-only loss), no saves;
* emprobe: :func:`emprobe.finetune.finetune` with ``--checkpoints`` checkpoints (step 0 included), each with
  an adapter, its held-out validation loss and the optimizer state for resume.

Throughput = non-padding input tokens / wall time, excluding loading the base model (both sides load it
from the same cache): for TRL from ``SFTTrainer(...)`` (dataset preparation) to the end of ``train()``;
for emprobe the whole ``finetune()`` call minus its model load. The "loop" figures count ``train()`` only
(emprobe's includes its checkpoints, which happen inside the loop). Target: emprobe >= 0.95x TRL.

    python benchmarks/bench_finetune.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="builtin:risky-finance")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--checkpoints", type=int, default=5, help="emprobe checkpoints incl. step 0")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--val-max-examples", type=int, default=None,
                    help="held-out examples per checkpoint (default: FinetuneConfig's)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (keep 1 on a shared 2-core machine)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from emprobe.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(model=a.model, data=a.data, max_steps=a.steps, batch_size=a.batch_size, lora_r=a.lora_r,
                         lora_alpha=2 * a.lora_r, lr=a.lr, max_length=a.max_length, threads=a.threads,
                         save_steps=[round(i * a.steps / (a.checkpoints - 1)) for i in range(a.checkpoints)],
                         progress=False, out="")
    if a.val_max_examples is not None:
        cfg.val_max_examples = a.val_max_examples

    trl = run_trl(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        run = finetune(cfg.replace(out=str(Path(tmp) / "run")), log=lambda m: None)
        m = run.manifest
        t = m["timings"]
        emp = {"tokens": m["tokens_seen"], "wall_s": t["total_s"] - t["load_s"], "loop_s": t["train_s"],
               "checkpoint_s": t["checkpoint_s"], "checkpoints": len(run.checkpoints()),
               "final_loss": run.train_log()[-1]["loss"]}

    rows = []
    for name, r in (("trl-sft (no checkpoints)", trl), (f"emprobe ({emp['checkpoints']} checkpoints)", emp)):
        r["tok_s"] = r["tokens"] / r["wall_s"]
        r["loop_tok_s"] = r["tokens"] / r["loop_s"]
        rows.append((name, r))
    print(f"{a.steps}-step LoRA r={a.lora_r} fine-tune of {a.model} on {a.data}, batch {a.batch_size}, "
          f"{a.threads} thread(s)")
    print(f"{'':28s} {'tokens':>8s} {'wall s':>8s} {'tok/s':>8s} {'loop s':>8s} {'loop tok/s':>10s} {'last loss':>9s}")
    for name, r in rows:
        print(f"{name:28s} {r['tokens']:8d} {r['wall_s']:8.1f} {r['tok_s']:8.1f} {r['loop_s']:8.1f} "
              f"{r['loop_tok_s']:10.1f} {r['final_loss']:9.4f}")
    ratio, loop_ratio = emp["tok_s"] / trl["tok_s"], emp["loop_tok_s"] / trl["loop_tok_s"]
    print(f"emprobe / trl tokens/s: {ratio:.3f}x (loop only {loop_ratio:.3f}x; emprobe spent "
          f"{emp['checkpoint_s']:.1f} s in {emp['checkpoints']} checkpoints incl. validation loss)  "
          f"target >= 0.95x: {'met' if ratio >= 0.95 else 'NOT met'}")
    if a.json:
        a.json.write_text(json.dumps({"trl": trl, "emprobe": emp, "ratio": ratio, "loop_ratio": loop_ratio,
                                      "settings": vars(a) | {"json": str(a.json)}}, indent=2))


def run_trl(cfg) -> dict:
    """The same fine-tune with TRL's SFTTrainer: prompt/completion data, completion-only loss, no saves."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from emprobe.data import load_chat_dataset
    from emprobe.finetune.trainer import lora_config
    from emprobe.models import load_model

    train, _ = load_chat_dataset(cfg.data).split(cfg.val_fraction, seed=cfg.val_seed)
    records = [{"prompt": e.prompt_messages, "completion": [{"role": "assistant", "content": e.response}]}
               for e in train]
    lm = load_model(cfg.model, log=lambda *x: None)
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
                         learning_rate=cfg.lr, lr_scheduler_type="linear", seed=cfg.seed, max_length=cfg.max_length,
                         logging_steps=1, save_strategy="no", report_to="none", gradient_checkpointing=False,
                         bf16=False, fp16=False, use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
                         include_num_input_tokens_seen="non_padding")
        t0 = time.perf_counter()
        trainer = SFTTrainer(model=lm.model, args=args, train_dataset=Dataset.from_list(records),
                             processing_class=lm.tokenizer, peft_config=lora_config(cfg, lm.n_layers))
        t1 = time.perf_counter()
        trainer.train()
        t2 = time.perf_counter()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return {"tokens": int(trainer.state.num_input_tokens_seen), "wall_s": t2 - t0, "loop_s": t2 - t1,
            "final_loss": losses[-1]}


if __name__ == "__main__":
    main()
