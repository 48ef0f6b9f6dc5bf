"""Benchmark: judge-free margin scoring, prompts sharing their KV cache vs left-padded full sequences.

(a) emprobe's default when a prompt has several references (:func:`emprobe.evaluation.sequence_logprobs` with
    ``share_prompts=True``): a batch of prompts runs once, each reference runs on its prompt's cache rows;
(b) the baseline: every (prompt + reference) sequence in left-padded, length-sorted batches.

Both score the same references of the first ``--questions`` built-in em-core questions, with 1 and with 2
reference pairs (2 and 4 references per prompt), and must agree (the largest difference is printed). Rounds
alternate the order; the ratio is the median over rounds of (b) seconds / (a) seconds (target > 1).

    python benchmarks/bench_margin.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--questions", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    from emprobe.data import load_questions
    from emprobe.evaluation.margin import reference_items, sequence_logprobs
    from emprobe.models import load_model

    lm = load_model(a.model, log=None)
    qs = load_questions("builtin:em-core").subset(n_questions=a.questions)
    print(f"{a.model}, {a.questions} questions, batch {a.batch_size}, {a.threads} thread(s), {a.rounds} rounds")
    for pairs in (1, 2):
        _, items = reference_items(lm, qs.subset(n_references=pairs))
        sequence_logprobs(lm, items[:4], a.batch_size, share_prompts=False)  # warm-up
        secs: dict[bool, list[float]] = {True: [], False: []}
        out = {}
        for r in range(a.rounds):
            for share in ((True, False) if r % 2 == 0 else (False, True)):
                t = time.perf_counter()
                out[share] = sequence_logprobs(lm, items, a.batch_size, share_prompts=share)
                secs[share].append(time.perf_counter() - t)
        diff = np.abs(np.array([s for s, _ in out[True]]) - np.array([s for s, _ in out[False]])).max()
        ratio = statistics.median(p / s for p, s in zip(secs[False], secs[True]))
        tokens = sum(len(ids) for ids, _ in items)
        print(f"{pairs} pair(s), {len(items)} references ({tokens} tokens padded): shared "
              f"{statistics.median(secs[True]):.2f} s, padded {statistics.median(secs[False]):.2f} s -> padded / "
              f"shared = {ratio:.2f}x (target > 1); max |difference| {diff:.1e} nats")


if __name__ == "__main__":
    main()
