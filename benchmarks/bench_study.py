"""Benchmark: where a study's time goes — analysis stages vs fine-tuning (issue 14's goal: analysis <= 1.0x).

Runs a preset (``demo``, ``fast`` or ``paper``; or a study YAML) into a fresh directory, or reads the timing of a
finished study (``--from OUT``), and prints per stage the seconds, then the fine-tuning time (setup +
finetune), the analysis time (every other stage) and their ratio — the baseline named in the issue is the
fine-tuning time of the same study, measured in the same run — plus the total against the preset's budget
(demo 10 min, fast 3 min, paper 30 min on 2 cores).

    python benchmarks/bench_study.py --preset fast --threads 2
    python benchmarks/bench_study.py --from emprobe-demo        # a finished study's summary.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

BUDGET_S = {"demo": 600, "fast": 180, "paper": 1800}


def report(summary: dict) -> dict:
    t = summary["timing"]
    rows = [(k, v["seconds"], v["cached"]) for k, v in t["stages"].items()]
    print(f"study: preset {summary.get('preset')}, model {summary.get('model')}, threads {t.get('threads')}")
    for name, sec, cached in rows:
        print(f"  {name:<11} {sec:8.1f} s{'  (reused)' if cached else ''}")
    ft, an = t.get("finetune_seconds") or 0.0, t.get("analysis_seconds") or 0.0
    ratio = t.get("analysis_over_finetune")
    print(f"fine-tuning (baseline) {ft:.1f} s; analysis {an:.1f} s; analysis / fine-tuning = "
          f"{ratio if ratio is not None else float('nan'):.2f}x (goal <= 1.0x)")
    budget = BUDGET_S.get(str(summary.get("preset")))
    total = t.get("computed_seconds") or t.get("total_seconds")
    if budget:
        print(f"total {total:.0f} s vs budget {budget} s: {total / budget:.2f}x of the budget")
    return {"preset": summary.get("preset"), "finetune_s": ft, "analysis_s": an, "ratio": ratio, "total_s": total,
            "budget_s": budget}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fast", help="demo | fast | paper")
    ap.add_argument("--config", help="a study YAML instead of a preset")
    ap.add_argument("--from", dest="from_dir", help="read a finished study's summary.json instead of running one")
    ap.add_argument("--out", help="where to run (default: a fresh temporary directory)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    if args.from_dir:
        path = Path(args.from_dir) / "summary.json"
        if not path.is_file():
            print(f"error: {path}: no such file (a finished study writes it last)", file=sys.stderr)
            return 2
        summary = json.loads(path.read_text())
    else:
        from emprobe.studies import study

        out = args.out or tempfile.mkdtemp(prefix=f"bench-study-{args.preset}-")
        summary = study(args.config, preset_name=None if args.config else args.preset, out=out, threads=args.threads)
    figures = report(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
