"""Benchmark: how a study's wall time and peak memory grow as each axis doubles, and the cost model the dry run
reads (``emprobe study --dry-run``).

From a reference study (the ``fast`` preset: 8 questions x 2 reference pairs, 2 runs of 4 steps, checkpoints
0/2/4, 4 held-out examples) each axis is doubled ``--doublings`` times on its own — questions, reference pairs
(em-core has 3), checkpoints (at 8 steps), runs (learning rates), seeds, steps, held-out examples — and the
reference is run on each ``--models`` entry (SmolLM2-135M vs Qwen2.5-Coder-0.5B). Each point is a fresh
subprocess running the fine-tuning and margins stages (the parts that grow); the other stages run once per model
at the reference (they work on fixed-size subsets). Per point: the stage seconds and the peak resident memory of
the whole process tree (the study and its fine-tuning workers), sampled every 0.2 s.

Printed and written under ``--out``: ``points.jsonl``, ``table.md`` (per axis: the values, seconds, MB and the
fitted exponent of time and of memory: the least-squares slope of log cost on log axis value), ``scaling.png``
(log-log, one panel per axis) and, with ``--write-model PATH``, the fitted cost model
(:mod:`emprobe.studies.cost`; the package's copy is ``emprobe/studies/cost_model.json``). The model is then
checked on every point (predicted / measured) and, with ``--check-presets``, its predictions for ``demo`` and
``paper`` are printed (compare with ``bench_study.py``; the issue's target is within +-25 %).

    python benchmarks/bench_scaling.py --threads 2 --write-model emprobe/studies/cost_model.json
    python benchmarks/bench_scaling.py --quick           # two axes, one doubling, tiny: checks the script runs
    python benchmarks/bench_scaling.py --from-points OUT/points.jsonl --write-model M.json   # refit, no measuring
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SMOL, QWEN = "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"
CORE = ("finetune", "margins")
AXES = ("questions", "pairs", "checkpoints", "runs", "seeds", "steps", "val_examples")
CHILD = """
import json, sys
from emprobe.studies import study
from emprobe.studies.config import StudyConfig
summary = study(StudyConfig.from_dict(json.loads(sys.argv[1])), log=None)
print("TIMING " + json.dumps(summary["timing"] if isinstance(summary, dict) else summary.timing), flush=True)
"""


def axis_config(base, axis: str, k: int):
    """``(config, axis value)``: ``base`` with ``axis`` doubled ``k`` times (k = 0: the series' starting point)."""
    from dataclasses import replace

    t, q, g = base.training, base.questions, base.grid
    if axis == "questions":
        v = (q.n_questions or 8) * 2 ** k
        return base.with_(questions=replace(q, n_questions=v)), v
    if axis == "pairs":
        v = min(3, 2 ** k)
        return base.with_(questions=replace(q, n_references=v)), v
    if axis == "checkpoints":
        every = 8 // 2 ** (k + 1)
        steps = tuple(range(0, 9, every))
        return base.with_(training=replace(t, steps=8, save_steps=steps)), len(steps)
    if axis == "runs":
        lrs = (1e-3, 5e-4, 2e-3, 3e-4, 7e-4, 1.5e-3, 4e-4, 2.5e-3)[: 2 ** k]
        return base.with_(grid=replace(g, lrs=lrs)), len(lrs) + len(base.datasets)
    if axis == "seeds":
        seeds = tuple(range(2 ** k))
        return base.with_(grid=replace(g, seeds=seeds)), len(seeds)
    if axis == "steps":
        s = t.steps * 2 ** k
        return base.with_(training=replace(t, steps=s, save_steps=(0, s // 2, s))), s
    if axis == "val_examples":
        v = t.val_examples * 2 ** k
        return base.with_(training=replace(t, val_examples=v)), v
    raise ValueError(axis)


def point_config(p: dict):
    """The study config a measured point ran: the fast preset on its model, its axis doubled ``k`` times."""
    from emprobe.studies.config import preset

    base = preset("fast").with_(model=p["model"])
    cfg = base if p["axis"] == "reference" else axis_config(base, p["axis"], p["k"])[0]
    return cfg.with_(stages=tuple(p["work"]["stages"]))


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for x in procs:
        try:
            total += x.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_point(cfg, threads: int) -> dict:
    """Run ``cfg`` in a fresh process: ``{"stages": {name: s}, "wall_s", "peak_mb"}``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), EMPROBE_THREADS=str(threads))
    d = cfg.with_(out=tempfile.mkdtemp(prefix="bench-scaling-"), threads=threads).to_dict()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(d)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    th.join(1)
    if proc.returncode != 0:
        raise RuntimeError(f"study point failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
    timing = json.loads(out.split("TIMING ", 1)[1].splitlines()[0])
    stages = {k: v["seconds"] for k, v in timing["stages"].items()}
    return {"stages": stages, "wall_s": time.perf_counter() - t0, "peak_mb": peak[0] / 2 ** 20}


def parts(stages: dict) -> dict:
    return {"finetuning": stages.get("setup", 0) + stages.get("finetune", 0), "margins": stages.get("margins", 0)}


def _fast_basis() -> dict:
    from emprobe.studies.config import preset
    from emprobe.studies.cost import stage_basis

    return stage_basis(preset("fast"))


def measure(a, out: Path) -> list[dict]:
    """Run every point (appending to ``out/points.jsonl`` as they finish)."""
    from emprobe.studies.config import preset
    from emprobe.studies.cost import stage_basis, study_work

    models = [m for m in a.models.split(",") if m]
    axes = [x for x in a.axes.split(",") if x]
    ref = preset("fast")
    plan = []
    for m in models:
        base = ref.with_(model=m)
        plan.append((m, "reference", 0, base, True))
        for axis in (axes if m == models[0] else [x for x in a.qwen_axes.split(",") if x]):
            for k in range(a.doublings + 1):
                plan.append((m, axis, k, base, False))
    points = []
    with open(out / "points.jsonl", "w") as fh:
        for m, axis, k, base, full in plan:
            cfg, value = (base, None) if axis == "reference" else axis_config(base, axis, k)
            cfg = cfg.with_(stages=tuple(cfg.stages) if full and not a.quick else CORE)
            print(f"[{len(points) + 1}/{len(plan)}] {m} {axis} {value if value is not None else ''}", flush=True)
            r = run_point(cfg, a.threads)
            r.update(model=m, axis=axis, k=k, value=value, work=study_work(cfg, a.threads).to_dict(),
                     parts=parts(r["stages"]), stage_basis=stage_basis(cfg))
            print(f"    {r['wall_s']:.1f} s wall, fine-tuning {r['parts']['finetuning']:.1f} s, margins "
                  f"{r['parts']['margins']:.1f} s, peak {r['peak_mb']:.0f} MB", flush=True)
            fh.write(json.dumps(r) + "\n")
            fh.flush()
            points.append(r)
    return points


def _table(points: list[dict]) -> tuple[str, dict]:
    from emprobe.studies.cost_fit import exponent

    lines = ["| model | axis | values | seconds (fine-tuning + margins) | peak MB | exponent: time | exponent: memory |",
             "|---|---|---|---|---|---|---|"]
    exps: dict = {}
    for (m, axis) in dict.fromkeys((p["model"], p["axis"]) for p in points if p["axis"] != "reference"):
        ser = sorted((p for p in points if (p["model"], p["axis"]) == (m, axis)), key=lambda p: p["k"])
        secs = [p["parts"]["finetuning"] + p["parts"]["margins"] for p in ser]
        vals = [p["value"] for p in ser]
        e_t, e_m = exponent(vals, secs), exponent(vals, [p["peak_mb"] for p in ser])
        exps.setdefault(m, {})[axis] = {"time": round(e_t, 3), "memory": round(e_m, 3)}
        mbs = ", ".join(f"{p['peak_mb']:.0f}" for p in ser)
        lines.append(f"| {m} | {axis} | {', '.join(map(str, vals))} | {', '.join(f'{s:.0f}' for s in secs)} | "
                     f"{mbs} | {e_t:.2f} | {e_m:.2f} |")
    refs = {p["model"]: p for p in points if p["axis"] == "reference"}
    if len(refs) == 2:
        import math

        (m1, p1), (m2, p2) = refs.items()
        size = math.log(_params(m2) / _params(m1))
        t1 = p1["parts"]["finetuning"] + p1["parts"]["margins"]
        t2 = p2["parts"]["finetuning"] + p2["parts"]["margins"]
        e_t = math.log(t2 / t1) / size
        e_m = math.log(p2["peak_mb"] / p1["peak_mb"]) / size
        exps.setdefault("model_size", {})[f"{m1} -> {m2}"] = {"time": round(e_t, 3), "memory": round(e_m, 3)}
        lines.append(f"| {m1} -> {m2} | parameters | {_params(m1):.3g}, {_params(m2):.3g} | {t1:.0f}, {t2:.0f} | "
                     f"{p1['peak_mb']:.0f}, {p2['peak_mb']:.0f} | {e_t:.2f} | {e_m:.2f} |")
    return "\n".join(lines), exps


def _params(model: str) -> float:
    from emprobe.studies.cost import _params as params

    return params(model) or float("nan")


def _plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = list(dict.fromkeys(p["axis"] for p in points if p["axis"] != "reference"))
    fig, panels = plt.subplots(1, max(1, len(axes)), figsize=(3.2 * max(1, len(axes)), 3.2), squeeze=False)
    for ax, axis in zip(panels[0], axes):
        for m in dict.fromkeys(p["model"] for p in points):
            ser = sorted((p for p in points if (p["model"], p["axis"]) == (m, axis)), key=lambda p: p["k"])
            if ser:
                ax.loglog([p["value"] for p in ser], [p["parts"]["finetuning"] + p["parts"]["margins"] for p in ser],
                          "o-", label=m.split("-")[0], base=2)
        ax.set(title=axis, xlabel=axis, ylabel="seconds")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def fit_and_report(a, points: list[dict], out: Path) -> None:
    """Fit the cost model, print and write the table, the plot, the model and its check."""
    import platform

    from emprobe.studies.cost import StudyWork, example_tokens, predict
    from emprobe.studies.cost_fit import fit_part, identifiable, scale_part

    table, exps = _table(points)
    print(table)
    (out / "table.md").write_text(table + "\n")
    _plot(points, out / "scaling.png")
    models: dict = {}
    for m in dict.fromkeys(p["model"] for p in points):
        mine = [p for p in points if p["model"] == m]
        works = [StudyWork(**{**p["work"], "stages": tuple(p["work"]["stages"])}) for p in mine]
        coef = {}
        for part in ("finetuning", "margins"):
            secs = [p["parts"][part] for p in mine]
            if identifiable(works, part) or not models:
                coef[part] = fit_part(works, secs, part)
            else:  # too few points to pin every coefficient: the first model's, times one measured factor
                first = next(iter(models))
                coef[part], factor = scale_part(models[first][part], works, secs, part)
                coef.setdefault("scaled_from", {"model": first})[part] = round(factor, 4)
                print(f"{m} {part}: {first}'s coefficients x {factor:.3f} (its {len(mine)} points cannot pin all "
                      f"{len(coef[part])})")
        full = next((p for p in mine if p["axis"] == "reference" and len(p["stages"]) > 3), None)
        coef["stages"] = {k: v for k, v in (full["stages"] if full else {}).items() if k not in ("setup", *CORE)}
        coef["stage_basis"] = full["stage_basis"] if full else None
        coef["params"] = _params(m)
        coef["example_tokens"] = round(max(example_tokens(point_config(p), p["work"]["train_tokens"], p["work"]["runs"])
                                           for p in mine), 1)  # the longest (padded) examples fitted
        models[m] = coef
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cm = {"machine": {"cpus": os.cpu_count(), "threads": a.threads, "platform": platform.platform(),
                      "date": time.strftime("%Y-%m-%d"), "load_average_at_end": load},
          "models": models, "exponents": exps, "points": len(points)}
    counts = {m: sum(p["model"] == m for p in points) for m in models}
    cm["machine"]["note"] = ("fitted from measured points (" + ", ".join(f"{m}: {n}" for m, n in counts.items()) +
                             "; fine-tuning + margins; a model whose points cannot pin every coefficient scales the "
                             "first model's by one measured factor per part); other stages from each model's fast "
                             "preset's full run")
    print("model check (predicted / measured, fine-tuning + margins):")
    for p in points:
        w = StudyWork(**{**p["work"], "stages": tuple(p["work"]["stages"])})
        c = models[p["model"]]
        pred = sum(w.seconds(c[part], part) for part in ("finetuning", "margins"))
        meas = p["parts"]["finetuning"] + p["parts"]["margins"]
        print(f"  {p['model']} {p['axis']} {p['value'] or ''}: {pred:.0f} / {meas:.0f} s = {pred / meas:.2f}")
    if a.write_model:
        Path(a.write_model).write_text(json.dumps(cm, indent=1, sort_keys=True) + "\n")
        print(f"wrote the cost model to {a.write_model}")
    if a.check_presets:
        from emprobe.studies.config import preset

        for name in ("demo", "paper"):
            r = predict(preset(name), cm, threads=a.threads)
            print(f"predicted {name}: {r['total_seconds']:.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in r['seconds'].items())})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=f"{SMOL},{QWEN}")
    ap.add_argument("--axes", default=",".join(AXES))
    ap.add_argument("--doublings", type=int, default=2)
    ap.add_argument("--qwen-axes", default="questions,steps", help="axes also doubled on the second model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--write-model", default=None, help="write the fitted cost model here")
    ap.add_argument("--check-presets", action="store_true", help="print the model's demo / paper predictions")
    ap.add_argument("--quick", action="store_true", help="SmolLM2, two axes, one doubling, no other stages")
    ap.add_argument("--from-points", default=None, help="refit from a finished run's points.jsonl (no measuring)")
    a = ap.parse_args()
    if a.quick:
        a.models, a.axes, a.doublings, a.qwen_axes = SMOL, "questions,steps", 1, ""
    out = Path(a.out or tempfile.mkdtemp(prefix="bench-scaling-out-"))
    out.mkdir(parents=True, exist_ok=True)
    if a.from_points:
        points = [json.loads(line) for line in Path(a.from_points).read_text().splitlines() if line.strip()]
        from emprobe.studies.cost import study_work

        fast = _fast_basis()
        for p in points:  # points measured before the stage basis was recorded: the preset they ran is fast's
            p.setdefault("stage_basis", fast)
            p["work"] = study_work(point_config(p), a.threads).to_dict()  # the work as this code counts it
    else:
        points = measure(a, out)
    fit_and_report(a, points, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
