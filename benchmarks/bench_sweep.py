"""Benchmark: a sweep of small fine-tuning runs — worker processes vs one process per run — and whether stacking
several runs' LoRA adapters into one batch over one frozen base trains faster on this machine.

Part 1, the same ``--runs`` runs (SmolLM2, ``--steps`` steps of batch 4, checkpoints at 0, the middle and the end,
``--val-examples`` held out, two datasets) trained twice by the local executor, side by side in one process:

(a) emprobe: worker processes that train their runs one after another (Python, torch and the model start once
    per worker), each dataset's step 0 validated once, later checkpoints on the examples the loss CI needs
    (``val_ci``);
(b) the previous code's way: one process per run, every run validating step 0, every checkpoint on every held-out
    example.

Printed: seconds of each, the ratio (b) / (a), and whether the trained adapters are identical (their
checkpoint digests).

Part 2 (``--stacked K``): one training step of K runs stacked in one batch (:class:`~emprobe.finetuning.stacked.
StackedLoRA`, rows routed per adapter) vs K separate steps of the same runs on the same batches, CPU seconds per
step at one thread. On a CPU both do the same multiply-adds at the matmul throughput the cores allow, so the
ratio stays near 1: stacking runs pays where one run's batch leaves the hardware idle (an accelerator), not here.

    python benchmarks/bench_sweep.py --threads 2 --runs 4 --stacked 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def sweep_cells(root: Path, n: int, steps: int, val: int, new: bool):
    from emprobe.finetuning import FinetuneConfig

    data = ["builtin:risky-finance", "builtin:bad-medical"]
    return [FinetuneConfig(data=data[i % 2], out=str(root / f"run{i}"), max_steps=steps,
                           save_steps=[0, steps // 2, steps], batch_size=4, max_length=128, lr=1e-3, seed=i // 2,
                           val_max_examples=val, val_ci=0.3 if new else None, progress=False) for i in range(n)]


def part1(a) -> None:
    from emprobe.finetuning import Run
    from emprobe.finetuning.executors import LocalExecutor

    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    secs = {}
    for name in (("previous", "emprobe") if a.order == "previous-first" else ("emprobe", "previous")):
        new = name == "emprobe"
        cells = sweep_cells(root / name, a.runs, a.steps, a.val_examples, new)
        t = time.perf_counter()
        out = LocalExecutor(threads=a.threads, reuse_processes=new).run(cells, log=None)
        secs[name] = time.perf_counter() - t
        assert all(o.status == "ok" for o in out), [o.error for o in out]
    same = all([c.digest() for c in Run.load(root / "emprobe" / f"run{i}").checkpoints()]
               == [c.digest() for c in Run.load(root / "previous" / f"run{i}").checkpoints()] for i in range(a.runs))
    print(f"{a.runs} runs x {a.steps} steps, {a.val_examples} held out, {a.threads} threads: emprobe "
          f"{secs['emprobe']:.1f} s, one process per run {secs['previous']:.1f} s -> previous / emprobe = "
          f"{secs['previous'] / secs['emprobe']:.2f}x; adapters identical: {same}")


def part2(a) -> None:
    import copy

    import torch
    from peft import get_peft_model
    from transformers import set_seed

    from emprobe.data import load_chat_dataset
    from emprobe.finetuning.config import FinetuneConfig
    from emprobe.finetuning.dataset import PadCollator, response_loss_sum, tokenize_chat
    from emprobe.finetuning.stacked import StackedLoRA
    from emprobe.finetuning.trainer import lora_config
    from emprobe.models import load_model

    torch.set_num_threads(1)
    lm = load_model("smollm2-135m-instruct", log=None)
    lc = lora_config(FinetuneConfig(data="x", out="y", lora_alpha=32), lm.n_layers)
    train, _ = load_chat_dataset("builtin:risky-finance").split(0.1, seed=0)
    rows = tokenize_chat(train, lm.require_chat(), 128)
    batches = [PadCollator(lm.tokenizer.pad_token_id)([rows[i] for i in range(4 * s, 4 * s + 4)]) for s in range(3)]
    k = a.stacked

    def separate() -> float:
        spent = 0.0
        for seed in range(k):
            set_seed(seed)
            pm = get_peft_model(lm.model, copy.deepcopy(lc))
            opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-3)
            for b in batches:
                t = time.process_time()
                loss, n = response_loss_sum(pm, b["input_ids"], b["attention_mask"], b["labels"])
                (loss / n).backward()
                opt.step(), opt.zero_grad()
                spent += time.process_time() - t
            lm.model = pm.unload()
        return spent / len(batches)

    def stacked() -> float:
        st = StackedLoRA(lm.model)
        for seed in range(k):
            st.add_initial(lc, seed)
        opts = [torch.optim.AdamW(st.parameters(i), lr=1e-3) for i in range(k)]
        spent = 0.0
        for b in batches:
            big = {key: v.repeat(k, 1) for key, v in b.items()}
            t = time.process_time()
            with st.route([(i, 4) for i in range(k)]):
                loss, n = response_loss_sum(st.model, big["input_ids"], big["attention_mask"], big["labels"],
                                            per_row=True)
            sum(loss[4 * i:4 * i + 4].sum() / n[4 * i:4 * i + 4].sum() for i in range(k)).backward()
            for o in opts:
                o.step(), o.zero_grad()
            spent += time.process_time() - t
        lm.model = st.unstack()
        return spent / len(batches)

    res: dict[str, list[float]] = {"separate": [], "stacked": []}
    for r in range(a.rounds):
        for name, fn in ((("separate", separate), ("stacked", stacked)) if r % 2 == 0
                         else (("stacked", stacked), ("separate", separate))):
            res[name].append(fn())
    sep, stk = statistics.median(res["separate"]), statistics.median(res["stacked"])
    print(f"{k} runs, batch 4 each, 1 thread: {k} separate steps {sep:.1f} CPU-s, one stacked step {stk:.1f} CPU-s "
          f"-> separate / stacked = {sep / stk:.2f}x (per round: "
          f"{', '.join(f'{x / y:.2f}' for x, y in zip(res['separate'], res['stacked']))})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--val-examples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--order", choices=("previous-first", "emprobe-first"), default="previous-first")
    ap.add_argument("--stacked", type=int, default=0, help="also time K runs stacked in one batch (part 2)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-sweep", action="store_true", help="part 2 only")
    a = ap.parse_args()
    if not a.skip_sweep:
        part1(a)
    if a.stacked:
        part2(a)


if __name__ == "__main__":
    main()
