"""Benchmark: margins of many LoRA checkpoints of one base model — mixed-adapter batches vs one merged checkpoint
at a time.

(a) emprobe's mixed-adapter scoring (:func:`emprobe.evaluation.mixed.adapter_reference_logprobs`): every adapter
    stacked on one base, each row routed through its own adapter, batches filled across adapters;
(b) the study's previous way: every adapter attached to one peft model, each merged into the weights in turn
    (``Run.iter_models(merge=True)``) and scored alone.

Both score the same ``--questions`` em-core questions (``--pairs`` pairs) for ``--adapters`` checkpoints and must
agree (the largest margin difference is printed). The adapters are the checkpoints of ``--run DIR`` or, without
it, random LoRA adapters of the study's shape (r 16, all linear layers) with trained-size weights. Rounds
alternate the order; the ratio is the median of (b) / (a). On CPU merging makes every forward cheaper (no LoRA
matmuls) and batches are already large enough, so expect (a) near or below 1x there; on an accelerator the
filled batches are the point.

    python benchmarks/bench_checkpoints.py --adapters 6 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def synthetic_adapters(lm, n: int, out: Path) -> list[Path]:
    import torch

    from emprobe.finetuning.config import FinetuneConfig
    from emprobe.finetuning.stacked import StackedLoRA
    from emprobe.finetuning.trainer import lora_config

    stack = StackedLoRA(lm.model)
    cfg = lora_config(FinetuneConfig(data="x", out="y", lora_r=16, lora_alpha=32), lm.n_layers)
    for k in range(n):
        stack.add_initial(cfg, k)
    dirs = []
    with torch.no_grad():
        for i, m in enumerate(stack.modules.values()):
            for k in range(n):
                g = torch.Generator().manual_seed(1000 * i + k)
                m.lora_B[k].copy_(torch.randn(m.lora_B[k].shape, generator=g) * 2e-3)
    for k in range(n):
        d = out / f"adapter-{k}"
        d.mkdir()
        stack.save(k, d, str(lm.path))
        dirs.append(d)
    stack.unstack()
    return dirs


def merged_one_by_one(lm, adapters, qs, bs):
    from emprobe.evaluation.margin import reference_logprobs
    from emprobe.finetuning.run import base_weights, merged_adapter
    from emprobe.models.adapters import attach_adapter

    model = lm.model
    for k, a in enumerate(adapters):
        model = attach_adapter(model, a, f"a{k}")
    saved, out = base_weights(model), []
    orig = lm.model
    try:
        lm.model = model
        for k in range(len(adapters)):
            model.set_adapter(f"a{k}")
            with merged_adapter(model, saved):
                out.append(reference_logprobs(lm, qs, batch_size=bs))
    finally:
        lm.model = model.unload() if hasattr(model, "unload") else orig
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--run", help="score this run's checkpoints (default: random adapters)")
    ap.add_argument("--adapters", type=int, default=6)
    ap.add_argument("--questions", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpu-time", action="store_true", help="time with this process's CPU time")
    a = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    from emprobe.data import load_questions
    from emprobe.evaluation.margin import pair_margins
    from emprobe.evaluation.mixed import adapter_reference_logprobs
    from emprobe.finetuning import Run
    from emprobe.models import load_model

    clock = time.process_time if a.cpu_time else time.perf_counter
    lm = load_model(a.model, log=None)
    qs = load_questions("builtin:em-core").subset(n_questions=a.questions, n_references=a.pairs)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    adapters = ([c.path for c in Run.load(a.run).checkpoints() if c.step > 0][: a.adapters] if a.run
                else synthetic_adapters(lm, a.adapters, tmp))
    print(f"{a.model}, {len(adapters)} adapters, {a.questions} questions x {a.pairs} pair(s), batch {a.batch_size}, "
          f"{a.threads} thread(s), {'CPU' if a.cpu_time else 'wall'} seconds")
    ways = {"mixed": lambda: adapter_reference_logprobs(lm, adapters, qs, a.batch_size),
            "merged": lambda: merged_one_by_one(lm, adapters, qs, a.batch_size)}
    secs: dict[str, list[float]] = {k: [] for k in ways}
    out = {}
    for r in range(a.rounds):
        for name in (("mixed", "merged") if r % 2 == 0 else ("merged", "mixed")):
            t = clock()
            out[name] = ways[name]()
            secs[name].append(clock() - t)
    diff = max(float(np.abs(pair_margins(x).margin.to_numpy() - pair_margins(y).margin.to_numpy()).max())
               for x, y in zip(out["mixed"], out["merged"]))
    ratio = statistics.median(m / x for m, x in zip(secs["merged"], secs["mixed"]))
    print(f"mixed-adapter batches {statistics.median(secs['mixed']):.2f} s, merged one at a time "
          f"{statistics.median(secs['merged']):.2f} s -> merged / mixed = {ratio:.2f}x; max |margin difference| "
          f"{diff:.1e} nats/token")


if __name__ == "__main__":
    main()
