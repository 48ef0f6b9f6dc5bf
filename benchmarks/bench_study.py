"""Benchmark: where a study's time goes — analysis stages vs fine-tuning (goal: analysis <= 1.0x) — and, with
``--baseline REF``, the same study run side by side with the previous code (ratios per stage, and the margins of
both compared: they must agree within 1e-4 nats/token wherever both scored).

Runs a preset (``demo``, ``fast`` or ``paper``; or a study YAML) into a fresh directory, or reads the timing of a
finished study (``--from OUT``), and prints per stage the seconds, then the fine-tuning time (setup +
finetune), the analysis time (every other stage) and their ratio — the baseline named in the issue is the
fine-tuning time of the same study, measured in the same run — plus the total against the preset's budget
(demo 240 s, fast 180 s, paper (3 seeds) 40 min; the paper preset with ``--seeds 1``: 30 min, on 2 idle cores).

``--baseline REF`` extracts ``git archive REF`` of this repository into a temporary directory and runs the same
study with that code first (``--order`` swaps), each study in its own process; the machine's load average is
printed before each run (ratios taken under different loads mislead).

    python benchmarks/bench_study.py --preset fast --threads 2 --baseline 482ad60
    python benchmarks/bench_study.py --preset fast --stages finetune,margins --baseline REF   # margins only
    python benchmarks/bench_study.py --preset paper --threads 2            # 3 seeds (the preset's); --seeds 1: one
    python benchmarks/bench_study.py --from emprobe-demo        # a finished study's summary.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = {"demo": 240, "fast": 180, "paper": 2400, "paper-3-seeds": 2400, "paper-1-seeds": 1800}  # the paper preset trains 3 seeds
CHILD = """
import json, sys
from emprobe.studies import study
kw = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(sys.argv[1]).items()}
study(kw.pop("config", None), preset_name=kw.pop("preset", None), **kw)
"""


def report(summary: dict, budget_key: str | None = None) -> dict:
    t = summary["timing"]
    rows = [(k, v["seconds"], v["cached"]) for k, v in t["stages"].items()]
    print(f"study: preset {summary.get('preset')}, model {summary.get('model')}, threads {t.get('threads')}")
    for name, sec, cached in rows:
        print(f"  {name:<11} {sec:8.1f} s{'  (reused)' if cached else ''}")
    ft, an = t.get("finetune_seconds") or 0.0, t.get("analysis_seconds") or 0.0
    ratio = t.get("analysis_over_finetune")
    print(f"fine-tuning (baseline) {ft:.1f} s; analysis {an:.1f} s; analysis / fine-tuning = "
          f"{ratio if ratio is not None else float('nan'):.2f}x (goal <= 1.0x)")
    budget = BUDGET_S.get(budget_key or str(summary.get("preset")))
    total = t.get("computed_seconds") or t.get("total_seconds")
    if budget:
        print(f"total {total:.0f} s vs budget {budget} s: {total / budget:.2f}x of the budget")
    return {"preset": summary.get("preset"), "finetune_s": ft, "analysis_s": an, "ratio": ratio, "total_s": total,
            "budget_s": budget, "stages": {k: s for k, s, _ in rows}}


def run_study(code: Path, kw: dict, threads: int) -> dict:
    """Run a study with the emprobe package under ``code`` in a fresh process; returns its summary.json."""
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS=str(threads), EMPROBE_THREADS=str(threads))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"running with {code} (load average {load:.1f}) -> {kw['out']}", flush=True)
    subprocess.run([sys.executable, "-c", CHILD, json.dumps(kw)], check=True, env=env, cwd=str(code))
    return json.loads((Path(kw["out"]) / "summary.json").read_text())


def compare_margins(old_out: Path, new_out: Path) -> dict:
    """Margins of the two studies on every (run, step, question, pair) both scored, and their validation losses."""
    import pandas as pd

    old = pd.read_parquet(old_out / "margins" / "pairs.parquet")
    new = pd.read_parquet(new_out / "margins" / "pairs.parquet")
    key = ["run", "step", "question_id", "pair"]
    both = old.merge(new, on=key, suffixes=("_old", "_new"))
    diff = float((both.margin_old - both.margin_new).abs().max()) if len(both) else float("nan")
    out = {"compared": len(both), "old_rows": len(old), "new_rows": len(new), "max_margin_diff": diff}
    losses = []
    for run_json in sorted((new_out / "runs").glob("*/run.json")):
        name = run_json.parent.name
        o, n = json.loads((old_out / "runs" / name / "run.json").read_text()), json.loads(run_json.read_text())
        for a, b in zip(o["checkpoints"], n["checkpoints"]):
            losses.append(abs((a["train_loss"] or 0) - (b["train_loss"] or 0)))
    out["max_train_loss_diff"] = max(losses) if losses else float("nan")
    return out


def side_by_side(args, kw: dict, budget_key: str) -> int:
    base = Path(tempfile.mkdtemp(prefix="bench-study-baseline-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
    outs = {"previous": Path(tempfile.mkdtemp(prefix="bench-study-prev-")),
            "emprobe": Path(tempfile.mkdtemp(prefix="bench-study-new-"))}
    code = {"previous": base, "emprobe": REPO}
    order = ["previous", "emprobe"] if args.order == "previous-first" else ["emprobe", "previous"]
    figs = {}
    for name in order:
        summary = run_study(code[name], {**kw, "out": str(outs[name])}, args.threads)
        print(f"--- {name} ({args.baseline if name == 'previous' else 'this tree'})")
        figs[name] = report(summary, budget_key)
    print("--- previous / emprobe seconds per stage (> 1: emprobe faster)")
    for stage, sec in figs["emprobe"]["stages"].items():
        prev = figs["previous"]["stages"].get(stage)
        if prev:
            print(f"  {stage:<11} {prev:8.1f} / {sec:8.1f} = {prev / max(sec, 1e-9):.2f}x")
    for k in ("finetune_s", "analysis_s", "total_s"):
        print(f"  {k:<11} {figs['previous'][k]:8.1f} / {figs['emprobe'][k]:8.1f} = "
              f"{figs['previous'][k] / max(figs['emprobe'][k], 1e-9):.2f}x")
    eq = compare_margins(outs["previous"], outs["emprobe"])
    ok = eq["compared"] > 0 and eq["max_margin_diff"] <= 1e-4
    print(f"margins: {eq['compared']} (run, step, question, pair) rows scored by both (previous {eq['old_rows']}, "
          f"emprobe {eq['new_rows']}); max |difference| {eq['max_margin_diff']:.2e} nats/token "
          f"({'within' if ok else 'NOT within'} 1e-4); max train-loss difference {eq['max_train_loss_diff']:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figs, "margins": eq}, indent=2))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fast", help="demo | fast | paper")
    ap.add_argument("--seeds", type=int, default=None, help="replicate seeds per cell (grid.seeds = 0..N-1)")
    ap.add_argument("--config", help="a study YAML instead of a preset")
    ap.add_argument("--from", dest="from_dir", help="read a finished study's summary.json instead of running one")
    ap.add_argument("--out", help="where to run (default: a fresh temporary directory)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline", help="also run the study with this git ref's code, side by side")
    ap.add_argument("--order", choices=("previous-first", "emprobe-first"), default="previous-first")
    ap.add_argument("--stages", help="only these stages, comma-separated (e.g. finetune,margins: what the margin "
                    "comparison needs); default the preset's")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    if args.from_dir:
        path = Path(args.from_dir) / "summary.json"
        if not path.is_file():
            print(f"error: {path}: no such file (a finished study writes it last)", file=sys.stderr)
            return 2
        figures = report(json.loads(path.read_text()))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        return 0
    kw = {"config": args.config, "preset": None if args.config else args.preset, "threads": args.threads}
    if args.seeds:
        kw["grid__seeds"] = list(range(args.seeds))
    if args.stages:
        kw["stages"] = args.stages.split(",")
    key = f"{args.preset}-{args.seeds}-seeds" if args.seeds else args.preset
    if args.baseline:
        return side_by_side(args, kw, key)
    out = args.out or tempfile.mkdtemp(prefix=f"bench-study-{args.preset}-")
    figures = report(run_study(REPO, {**kw, "out": out}, args.threads), key)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
