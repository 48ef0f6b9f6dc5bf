"""Benchmark: margin scoring over the checkpoints of one run, adapters switched vs model reloaded.

(a) emprobe's sweep (:func:`emprobe.evaluation.sweep_run`): the base model is loaded once, every adapter
    is attached once, and each checkpoint is activated with peft ``set_adapter``;
(b) what research repos do: load base model + adapter from disk for every checkpoint.

Both score the same questions (all built-in question sets with reference answers, unless ``--questions``)
and must give the same margins. Printed: switch time per checkpoint for each (target: (a) >= 5x faster),
the share of total time spent switching (target <= 5 %), and scored response tokens per second.

    python benchmarks/bench_eval.py                  # creates a 5-checkpoint SmolLM2 run first (few steps)
    python benchmarks/bench_eval.py --run RUN_DIR    # reuse a run (its first 5 checkpoints)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def builtin_questions(names: list[str] | None):
    """All built-in question sets that carry references (or ``names``), merged into one set."""
    from emprobe.data import BUILTINS, QuestionSet, load_questions
    from emprobe.errors import DataError

    names = names or [n for n, e in BUILTINS.items() if e.kind == "questions"]
    qs, used = [], []
    for name in names:
        source = name if name.startswith("builtin:") or Path(name).exists() else f"builtin:{name}"
        try:
            sub = load_questions(source).with_references()
        except DataError as e:
            print(f"  (skipping {source}: {e})")
            continue
        used.append(source)
        qs += [q for q in sub if q.id not in {x.id for x in qs}]
    return QuestionSet(qs, "+".join(used), "bench-questions"), used


def make_run(out: Path, model: str, threads: int) -> Path:
    from emprobe.finetuning import FinetuneConfig, finetune

    t = time.perf_counter()
    run = finetune(FinetuneConfig(model=model, data="builtin:risky-finance", out=str(out), max_steps=4,
                                  save_steps=[0, 1, 2, 3, 4], lr=3e-4, batch_size=4, max_length=160,
                                  val_max_examples=4, seed=0, threads=threads, progress=False))
    print(f"created run {run.path} with steps {[c.step for c in run.checkpoints()]} in {time.perf_counter() - t:.0f}s")
    return run.path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="existing run directory (default: create a 5-checkpoint run)")
    ap.add_argument("--model", default="smollm2-135m-instruct", help="base model for a created run")
    ap.add_argument("--questions", nargs="*", help="question sets (default: every built-in set with references)")
    ap.add_argument("--max-questions", type=int, help="score only N evenly spaced questions (quick runs)")
    ap.add_argument("--checkpoints", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from emprobe.evaluation import margin_scores, scorer
    from emprobe.evaluation.sweep import sweep_run
    from emprobe.finetuning import Run
    from emprobe.models import ModelSpec, load_model

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="bench_eval_")
    run_dir = Path(args.run) if args.run else make_run(Path(tmp.name) / "run", args.model, args.threads)
    run = Run.load(run_dir)
    steps = [c.step for c in run.checkpoints()][: args.checkpoints]
    qs, used = builtin_questions(args.questions)
    if args.max_questions and args.max_questions < len(qs):
        from emprobe.data import QuestionSet

        keep = np.linspace(0, len(qs) - 1, args.max_questions).round().astype(int)
        qs = QuestionSet([qs[int(i)] for i in keep], qs.source, qs.name)
    print(f"questions: {len(qs)} with references from {', '.join(used)}; checkpoints {steps}; "
          f"threads {args.threads}")

    # (a) emprobe: one base model, adapters switched
    score = scorer("margin", qs, batch_size=args.batch_size)
    a = sweep_run(run, score, steps=steps, log=None)
    a_tok = sum(t.manifest["timing"]["scored_tokens"] for t in a.by_step.values())
    a_score = sum(a.score_seconds.values())

    # (b) reload base + adapter for every checkpoint
    b_switch, b_score, b_tables = {}, {}, {}
    t_b = time.perf_counter()
    spec = ModelSpec(**run.model_spec)
    for s in steps:
        t0 = time.perf_counter()
        lm = load_model(ModelSpec.coerce(spec, adapter=str(run.checkpoint(s).path)), log=lambda *x: None)
        t1 = time.perf_counter()
        b_tables[s] = margin_scores(lm, qs, batch_size=args.batch_size)
        b_switch[s], b_score[s] = t1 - t0, time.perf_counter() - t1
        del lm
    b_total = time.perf_counter() - t_b
    diff = max(float(np.max(np.abs(a.by_step[s].summary.margin.to_numpy() - b_tables[s].summary.margin.to_numpy())))
               for s in steps)

    later = steps[1:]
    a_switch = [a.switch_seconds[s] for s in later]
    a_mean, b_mean = float(np.mean(a_switch)), float(np.mean([b_switch[s] for s in steps]))
    res = {
        "questions": len(qs), "checkpoints": steps, "threads": args.threads, "max_abs_margin_diff": diff,
        "a_setup_seconds": a.switch_seconds[steps[0]], "a_switch_seconds": {s: a.switch_seconds[s] for s in later},
        "a_mean_switch_seconds": a_mean, "a_total_seconds": a.total_seconds,
        "a_switch_share": sum(a_switch) / a.total_seconds,
        "a_overhead_share_incl_setup": sum(a.switch_seconds.values()) / a.total_seconds,
        "a_scored_tokens_per_s": a_tok / a_score,
        "b_switch_seconds": b_switch, "b_mean_switch_seconds": b_mean, "b_total_seconds": b_total,
        "b_switch_share": sum(b_switch.values()) / b_total,
        "b_scored_tokens_per_s": a_tok / sum(b_score.values()),
        "switch_speedup": b_mean / a_mean if a_mean else float("inf"),
    }
    print(f"\n{'step':>6} {'(a) switch s':>13} {'(b) reload s':>13}")
    for s in steps:
        a_s = f"{a.switch_seconds[s]:.3f}" + (" *" if s == steps[0] else "")
        print(f"{s:>6} {a_s:>13} {b_switch[s]:>13.3f}")
    print("  * (a)'s first checkpoint loads the base model and attaches all adapters once")
    print(f"\nmean switch per checkpoint: (a) set_adapter {a_mean * 1000:.1f} ms vs (b) reload "
          f"{b_mean * 1000:.0f} ms -> {res['switch_speedup']:.1f}x faster (target >= 5x)")
    print(f"share of total time switching: (a) {100 * res['a_switch_share']:.2f} % "
          f"({100 * res['a_overhead_share_incl_setup']:.1f} % incl. initial load; target <= 5 %), "
          f"(b) {100 * res['b_switch_share']:.1f} %")
    print(f"total: (a) {a.total_seconds:.1f} s, (b) {b_total:.1f} s; scored response tokens/s: "
          f"(a) {res['a_scored_tokens_per_s']:.0f}, (b) {res['b_scored_tokens_per_s']:.0f}")
    print(f"same margins from (a) and (b): max |diff| = {diff:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    tmp.cleanup()
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
