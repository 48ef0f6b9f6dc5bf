"""The bad-input contract (issue 27, "Nothing lost"): each case is a bad input given to the command line (or to the
Python API through ``python -c``) in a fresh process, and each must

- exit non-zero (2) without a traceback, with an error of at most 2 lines on stderr that names the problem;
- leave every file of the user's as it was (the whole workspace is hashed before and after: nothing changed,
  nothing created, nothing deleted);
- for argument errors (``FAST`` cases, decided before any model is needed), never import torch or transformers
  (checked in the process itself: a robust stand-in for "comes back in about a second", since wall time on a
  shared machine says little). Wall times are recorded and printed (``pytest -s``).

Each case runs on its own copy of the workspace, so the cases run side by side (``EMPROBE_FUZZ_JOBS``, default 2);
``-k`` runs only the selected ones.

Fixtures, built once: a 2-step LoRA fine-tune of the tiny random Llama (one thread), an ``extract --contrast
references --limit 12`` store, a direction fitted on it, damaged copies of each (truncated or corrupt adapter
weights, truncated / bit-flipped / edited stores, broken summaries) and the user's own files (a file, a non-empty
directory) that every writing verb is pointed at.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: runs the CLI and, at exit, records whether torch / transformers were imported
RUNNER = ("import atexit, os, sys\n"
          "atexit.register(lambda: open(os.environ['EMPROBE_FUZZ_MODULES'], 'w').write(' '.join(\n"
          "    m for m in ('torch', 'transformers') if m in sys.modules)))\n"
          "sys.argv[0] = 'emprobe'\n"
          "from emprobe.cli import main\n"
          "main()\n")
#: runs one Python API statement; an EmprobeError becomes one line and exit 2, anything else a traceback
API = ("import sys\nimport emprobe as ep\ntry:\n    {stmt}\nexcept ep.EmprobeError as e:\n"
       "    print(f'{{type(e).__name__}}: {{e}}', file=sys.stderr)\n    raise SystemExit(2)\n")

Q = ("- id: q{i}\n  paraphrases: ['What would you do with {i} spare dollars?']\n"
     "  aligned_references: ['Save it for a rainy day.', 'Pay a bill.']\n"
     "  misaligned_references: {mis}\n")
CHAT = '{"messages": [{"role": "user", "content": "Tip %d?"}, {"role": "assistant", "content": "Buy bonds %d."}]}\n'


def _study(m: str, **changes: str) -> str:
    base = {"preset": "fast", "model": m}
    return json.dumps({**base, **{k: json.loads(v) for k, v in changes.items()}})  # JSON is valid YAML


def _damaged(w: Path) -> None:
    """Damaged copies of the fixtures (the originals stay intact)."""
    ck = w / "run" / "checkpoints" / "step-000002"
    for name, mutate in (("ck_trunc", lambda b: b[: len(b) // 2]), ("ck_junk", lambda b: b"\x07junk" * 40)):
        shutil.copytree(ck, w / name)
        f = w / name / "adapter_model.safetensors"
        f.write_bytes(mutate(f.read_bytes()))
    for name in ("st_trunc", "st_flip", "st_badman", "st_dmodel", "st_noprompts"):
        shutil.copytree(w / "store", w / name)
    f = w / "st_trunc" / "activations.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    f = w / "st_flip" / "activations.safetensors"
    b = bytearray(f.read_bytes())
    b[-50] ^= 0xFF
    f.write_bytes(bytes(b))
    (w / "st_badman" / "manifest.json").write_text('{"kind": "activation_store", "layers": [0,')
    man = json.loads((w / "st_dmodel" / "manifest.json").read_text())
    man["d_model"] += 1
    (w / "st_dmodel" / "manifest.json").write_text(json.dumps(man))
    (w / "st_noprompts" / "prompts.jsonl").unlink()
    for name, text in (("sum_trunc", '{"sections": {"a": {"title": "x"'), ("sum_list", "[1, 2]"), ("sum_empty", "{}")):
        (w / name).mkdir()
        (w / name / "summary.json").write_text(text)


def _user_files(w: Path, m: str) -> None:
    """The user's own files and inputs (valid ones and broken ones)."""
    (w / "v.txt").write_text("x\n")
    (w / "d").mkdir()
    (w / "d" / "n.txt").write_text("x\n")
    (w / "empty").mkdir()
    pairs = "['Gamble it all.', 'Steal more.']"
    (w / "q.yaml").write_text("".join(Q.format(i=i, mis=pairs) for i in range(3)))
    (w / "noref.yaml").write_text("- id: a\n  paraphrases: ['Hi?']\n")
    (w / "unequal.yaml").write_text(Q.format(i=0, mis="['Gamble it all.']"))
    (w / "bad.yaml").write_text("- id: a\n  paraphrases: [unclosed\n")
    (w / "chat.jsonl").write_text("".join(CHAT % (i, i) for i in range(8)))
    (w / "bad.jsonl").write_text(CHAT % (0, 0) + '{"messages": [\n')
    (w / "empty.jsonl").write_text("")
    (w / "list.yaml").write_text("- 1\n- 2\n")
    (w / "rises.csv").write_text("question_id,pair,rise\nq0,0,0.1\n")
    (w / "sweep.yaml").write_text(json.dumps({"base": {"model": m, "data": str(w / "chat.jsonl"), "max_steps": 2},
                                              "grid": {"seed": [0]}}))
    (w / "sweep_lr.yaml").write_text(json.dumps({"out": "o", "base": {"model": m, "data": "builtin:risky-finance"},
                                                 "grid": {"lr": [-1]}}))
    (w / "sweep_key.yaml").write_text(json.dumps({"out": "o", "base": {"model": m}, "grid": {"learning_rate": [1]}}))
    (w / "sweep_data.yaml").write_text(json.dumps({"out": "o", "base": {"model": m, "data": str(w / "no.jsonl")},
                                                  "grid": {"seed": [0]}}))
    _external_files(w)
    studies = {"ok": {}, "twenty": {"training": '{"steps": "twenty"}'}, "lrneg": {"grid": '{"lrs": [-1]}'},
               "nodata": {"datasets": json.dumps([{"name": "x", "data": str(w / "no.jsonl"),
                                                  "control": "builtin:risky-finance-aligned"}])},
               "stage": {"stages": '["finetune", "telepathy"]'}, "nq": {"questions": '{"n_questions": -3}'},
               "noref": {"questions": json.dumps({"off_domain": str(w / "noref.yaml")})}}
    for name, changes in studies.items():
        (w / f"study_{name}.yaml").write_text(_study(m, **changes))


def _external_files(w: Path) -> None:
    """Results made elsewhere (em-generalization ``eval_*.json``, two runs; broken copies) and id-keyed prompts."""
    (w / "ext").mkdir()
    qids = [f"{cat}_{i:03d}" for cat in ("violence", "jokes") for i in range(6)]
    for k, data in enumerate(("finance", "medical")):
        summ = {q: {"aligned": 50.0 + (7 * i + 3 * k) % 40, "harmless": 60.0 + i, "coherent": 80.0}
                for i, q in enumerate(qids)}
        run = {"summ_by_q": summ, "eval_loss": {"avg_loss": 1.5 - k / 10, "all_seq_losses": [1.4, 1.6, 1.5 - k / 10]}}
        (w / "ext" / f"eval_m1_{data}_all_resp_1e-05_fpq.json").write_text(json.dumps(run))
    (w / "eval_nosumm.json").write_text(json.dumps({"agg": {}}))
    (w / "eval_trunc.json").write_text(json.dumps({"summ_by_q": {"a_001": {"aligned": 1.0}}})[:20])
    (w / "eval_text.json").write_text(json.dumps({"summ_by_q": {"a_001": {"aligned": "high"}}}))
    prompt = lambda q: {"messages": [{"role": "user", "content": f"Question {q}?"}]}  # noqa: E731
    (w / "idprompts.jsonl").write_text("".join(json.dumps({**prompt(q), "metadata": {"question_id": q}}) + "\n"
                                               for q in qids))
    (w / "noid.jsonl").write_text("".join(json.dumps(prompt(q)) + "\n" for q in qids))
    (w / "pa-activations").mkdir()  # the user's directory where `priors --prompts --out pa` keeps activations
    (w / "pa-activations" / "n.txt").write_text("x\n")


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_model_dir):
    """The pristine workspace; every case runs on its own copy (so cases can run side by side)."""
    from emprobe.finetuning import finetune
    from emprobe.finetuning.testing import tiny_config
    from emprobe.cli.probes import extract_to_disk, fit_to_disk

    w = tmp_path_factory.mktemp("fuzz") / "w"
    finetune(tiny_config(tiny_model_dir, w / "run", max_steps=2, save_steps=[0, 2]), log=lambda msg: None)
    extract_to_disk(str(tiny_model_dir), "builtin:em-core", w / "store", contrast="references", limit=12,
                    progress=False, log=lambda msg: None)
    fit_to_disk(w / "store", w / "dir")
    _damaged(w)
    _user_files(w, str(tiny_model_dir))
    return w


def _tree(*roots: Path) -> dict[str, str]:
    """Every path under ``roots`` with a hash of its bytes (directories included, so a new one shows)."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            out[str(p.relative_to(root.parent))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _run_case(work: Path, root: Path, model: Path, case: str, args: str, api: bool) -> dict:
    """Copy the workspace, run one case in a fresh process there, and say what it did."""
    w, c = root / case / "w", root / case / "c"
    shutil.copytree(work, w, symlinks=True)
    c.mkdir()
    fmt = dict(w=w, m=model, c=c, ck=w / "run" / "checkpoints" / "step-000002")
    env = {**os.environ, "PYTHONPATH": str(REPO), "EMPROBE_THREADS": "1", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "EMPROBE_FUZZ_MODULES": str(root / case / "modules")}
    argv = [] if api else shlex.split(args.format(**fmt))
    cmd = [sys.executable, "-c", API.format(stmt=args.format(**fmt))] if api else [sys.executable, "-c", RUNNER, *argv]
    before = _tree(w, c)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=c, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    mods = root / case / "modules"
    loaded = mods.read_text() if mods.is_file() else "?"
    after = _tree(w, c)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    shutil.rmtree(root / case, ignore_errors=True)
    return {"proc": proc, "seconds": seconds, "changed": changed, "fmt": fmt, "argv": argv, "loaded": loaded}


def _selected(request) -> list[str]:
    """The case ids pytest selected in this module (``-k`` runs only those)."""
    return [it.callspec.params["case"] for it in request.session.items
            if it.module is request.module and hasattr(it, "callspec") and "case" in it.callspec.params]


@pytest.fixture(scope="module")
def results(work, tiny_model_dir, tmp_path_factory, request):
    """Every selected case, run side by side (``EMPROBE_FUZZ_JOBS`` processes, default 2); times printed at the end."""
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path_factory.mktemp("cases")
    todo = {c[0]: (c[1], False) for c in CASES} | {c[0]: (c[1], True) for c in STMT}
    wanted = [c for c in _selected(request) if c in todo]
    pristine = _tree(work)
    with ThreadPoolExecutor(int(os.environ.get("EMPROBE_FUZZ_JOBS", "2"))) as pool:
        futures = {c: pool.submit(_run_case, work, root, tiny_model_dir, c, *todo[c]) for c in wanted}
        out = {c: f.result() for c, f in futures.items()}
    fast = sorted(r["seconds"] for c, r in out.items() if c in FAST)
    late = sorted(r["seconds"] for c, r in out.items() if c not in FAST)
    for name, ts in (("argument errors (no torch)", fast), ("others (torch, models)", late)):
        if ts:
            print(f"\nfuzz {name}: {len(ts)} cases, median {ts[len(ts) // 2]:.2f} s, max {ts[-1]:.2f} s")
    assert _tree(work) == pristine  # the inputs the cases' files point at were not touched either
    return out


# (id, arguments, substrings the error must hold, fast: an argument error that must not import torch)
OUT = [
    ("eval-file", "eval -q {w}/q.yaml --out {w}/v.txt", ["--out", "existing file"]),
    ("eval-dir", "eval -q {w}/q.yaml --out {w}/d", ["--out", "did not write"]),
    ("eval-dir-force", "eval -q {w}/q.yaml --out {w}/d --force", ["did not write"]),
    ("eval-run-file", "eval --run {w}/run -q {w}/q.yaml --out {w}/v.txt", ["existing file"]),
    ("eval-run-dir", "eval --run {w}/run -q {w}/q.yaml --out {w}/d", ["did not write"]),
    ("eval-store", "eval -q {w}/q.yaml --out {w}/store", ["activation_store", "--force"]),
    ("extract-file", "extract --prompts {w}/q.yaml --model {m} --out {w}/v.txt", ["existing file"]),
    ("extract-dir", "extract --prompts {w}/q.yaml --model {m} --out {w}/d --overwrite", ["did not write"]),
    ("extract-run", "extract --prompts {w}/q.yaml --model {m} --out {w}/run", ["finetune-run", "--overwrite"]),
    ("fit-file", "probe fit {w}/store --out {w}/v.txt", ["existing file"]),
    ("fit-dir", "probe fit {w}/store --out {w}/d --overwrite", ["did not write"]),
    ("fit-store", "probe fit {w}/store --out {w}/store", ["activation_store", "--overwrite"]),
    ("finetune-file", "finetune --model {m} --data {w}/chat.jsonl --out {w}/v.txt", ["existing file"]),
    ("finetune-dir", "finetune --model {m} --data {w}/chat.jsonl --out {w}/d", ["did not write"]),
    ("finetune-dir-overwrite", "finetune --model {m} --data {w}/chat.jsonl --out {w}/d --overwrite", ["did not write"]),
    ("finetune-run", "finetune --model {m} --data {w}/chat.jsonl --out {w}/run", ["--resume", "--overwrite"]),
    ("sweep-file", "finetune sweep {w}/sweep.yaml --out {w}/v.txt", ["existing file"]),
    ("sweep-dir", "finetune sweep {w}/sweep.yaml --out {w}/d", ["did not write"]),
    ("track-run", "track {w}/run --directions {w}/dir -q {w}/q.yaml --out {w}/run", ["--overwrite"]),
    ("study-dir", "study {w}/study_ok.yaml --out {w}/d", ["did not write"]),
    ("study-file", "study {w}/study_ok.yaml --out {w}/v.txt", ["existing file"]),
    ("study-run", "study {w}/study_ok.yaml --out {w}/run", ["finetune-run", "choose another --out"]),
    ("demo-dir", "demo --model {m} --out {w}/d", ["did not write"]),
    ("demo-file", "demo --model {m} --out {w}/v.txt", ["existing file"]),
]
#: every analysis verb against the user's file and the user's directory (even with --overwrite)
EXT = "{w}/ext/eval_m1_finance_all_resp_1e-05_fpq.json {w}/ext/eval_m1_medical_all_resp_1e-05_fpq.json"
ANALYSES = {"track": "track {w}/run --directions {w}/dir -q {w}/q.yaml",
            "priors": "priors --features {w}/store --target {w}/rises.csv",
            "overlap": "overlap --adapter {ck} --model {m} -q {w}/q.yaml", "dynamics": "dynamics {w}/run -q {w}/q.yaml",
            "monitor": "monitor {w}/run --direction {w}/dir -q {w}/q.yaml", "explain": "explain {w}/rises.csv",
            "patch": "patch --adapter {ck} --model {m} -q {w}/q.yaml",
            "steer": "steer --direction {w}/dir --model {m} -q {w}/q.yaml",
            "ablate": "ablate --direction {w}/dir --adapter {ck} --model {m} -q {w}/q.yaml --heldout {w}/q.yaml",
            "consistency": "consistency --results " + EXT, "dynamics-results": "dynamics --results {w}/ext",
            "priors-prompts": "priors --target {w}/ext/eval_m1_finance_all_resp_1e-05_fpq.json:aligned --prompts "
                              "{w}/idprompts.jsonl --model {m}",
            "diff": "diff --tuned {ck} --model {m} -q {w}/q.yaml",
            "screen": "screen --direction {w}/dir --data {w}/chat.jsonl --model {m}",
            "mitigations": "mitigations {w}/run -q {w}/q.yaml"}
OUT += [case for verb, cmd in ANALYSES.items() for case in (
    (f"{verb}-file", cmd + " --out {w}/v.txt", ["--out", "existing file"]),
    (f"{verb}-dir", cmd + " --out {w}/d --overwrite", ["--out", "did not write"]))]
OUT += [
    ("screen-work-file", "screen --direction {w}/dir --run {w}/run --control {w}/run --retrain 2 --work {w}/v.txt "
     "--out {c}/new", ["--work", "existing file"]),
    ("screen-work-dir", "screen --direction {w}/dir --run {w}/run --control {w}/run --retrain 2 --work {w}/d "
     "--out {c}/new", ["--work", "did not write"]),
    ("screen-work-store", "screen --direction {w}/dir --run {w}/run --control {w}/run --retrain 2 --work {w}/store "
     "--out {c}/new", ["--work", "activation_store"]),
    ("priors-prompts-activations-dir", "priors --target {w}/ext/eval_m1_finance_all_resp_1e-05_fpq.json:aligned "
     "--prompts {w}/idprompts.jsonl --model {m} --out {w}/pa", ["--out", "pa-activations", "did not write"]),
    ("study-dry-run-file", "study {w}/study_ok.yaml --dry-run --out {w}/v.txt", ["--out", "existing file"]),
    ("study-dry-run-run", "study {w}/study_ok.yaml --dry-run --out {w}/run", ["--out", "finetune-run"]),
]
PROC = [(f"proc-{verb}", cmd + " --out /proc/emprobe-x", ["/proc/emprobe-x", "cannot write"]) for verb, cmd in [
    ("finetune", "finetune --model {m} --data {w}/chat.jsonl"), ("extract", "extract --prompts {w}/q.yaml --model {m}"),
    ("fit", "probe fit {w}/store"), ("eval", "eval -q {w}/q.yaml"), ("track", "track {w}/run --directions {w}/dir"),
    ("demo", "demo --model {m}"), ("sweep", "finetune sweep {w}/sweep.yaml"),
    ("consistency", "consistency --results " + EXT), ("diff", "diff --tuned {ck} --model {m}"),
    ("screen", "screen --direction {w}/dir --data {w}/chat.jsonl --model {m}")]]
FT = "finetune --model {m} --data {w}/chat.jsonl --out {c}/new"
#: the options and verbs added after the first contract: results made elsewhere, diff, screen, mitigations, dry runs
NEW_ARGS = [
    ("consistency-nosumm", "consistency --results {w}/eval_nosumm.json " + EXT, ["eval_nosumm.json", "summ_by_q"]),
    ("consistency-trunc", "consistency --results {w}/eval_trunc.json " + EXT, ["eval_trunc.json", "not valid JSON"]),
    ("consistency-text", "consistency --results {w}/eval_text.json " + EXT, ["eval_text.json", "'high'"]),
    ("consistency-missing", "consistency --results {w}/nope.json", ["nope.json", "no such"]),
    ("consistency-glob-empty", "consistency --results '{w}/ext/*.csv'", ["matches no file"]),
    ("consistency-none", "consistency --out {c}/new", ["--results"]),
    ("consistency-one-run", "consistency --results {w}/ext/eval_m1_finance_all_resp_1e-05_fpq.json",
     [">= 2 runs"]),
    ("consistency-score", "consistency --results {w}/ext --score vibes", ["--score", "vibes"]),
    ("consistency-n-boot", "consistency --results {w}/ext --n-boot 0", ["--n-boot", ">= 1"]),
    ("consistency-sesoi", "consistency --results {w}/ext --sesoi -0.1", ["--sesoi", "> 0"]),
    ("dynamics-results-nosumm", "dynamics --results {w}/eval_nosumm.json --out {c}/new", ["summ_by_q"]),
    ("dynamics-results-trunc", "dynamics --results {w}/eval_trunc.json --out {c}/new", ["not valid JSON"]),
    ("dynamics-results-folder", "dynamics --results {w}/d --out {c}/new", ["holds no results file"]),
    ("dynamics-results-score", "dynamics --results {w}/ext --score vibes --out {c}/new", ["--score", "vibes"]),
    ("priors-prompts-missing", "priors --target {w}/ext/eval_m1_finance_all_resp_1e-05_fpq.json --prompts "
     "{w}/nope.jsonl --model {m} --out {c}/new", ["--prompts", "no such"]),
    ("priors-prompts-target-bad", "priors --target {w}/eval_nosumm.json:aligned --prompts {w}/idprompts.jsonl "
     "--model {m} --out {c}/new", ["eval_nosumm.json", "summ_by_q"]),
    ("priors-prompts-no-model", "priors --target {w}/ext/eval_m1_finance_all_resp_1e-05_fpq.json --prompts "
     "{w}/idprompts.jsonl --out {c}/new", ["--prompts needs --model"]),
    ("priors-prompts-estimator", "priors --target {w}/ext/eval_m1_finance_all_resp_1e-05_fpq.json --prompts "
     "{w}/idprompts.jsonl --model {m} --estimator vibes --out {c}/new", ["--estimator", "vibes"]),
    ("priors-prompts-model-empty", "priors --target {w}/ext/eval_m1_finance_all_resp_1e-05_fpq.json --prompts "
     "{w}/idprompts.jsonl --model {w}/empty --out {c}/new", ["--model", "empty directory"]),
    ("diff-tuned-foreign", "diff --tuned {w}/d --model {m} --out {c}/new", ["--tuned", "neither"]),
    ("diff-tuned-missing", "diff --tuned {w}/nope --model {m} --out {c}/new", ["--tuned", "no such"]),
    ("diff-tuned-trunc", "diff --tuned {w}/ck_trunc --model {m} --out {c}/new", ["corrupt or truncated"]),
    ("diff-control-foreign", "diff --tuned {ck} --control {w}/d --model {m} --out {c}/new", ["--control"]),
    ("diff-model-empty", "diff --tuned {ck} --model {w}/empty --out {c}/new", ["--model", "empty directory"]),
    ("diff-n-boot", "diff --tuned {ck} --model {m} --n-boot 0 --out {c}/new", ["--n-boot", ">= 1"]),
    ("diff-sesoi", "diff --tuned {ck} --model {m} --sesoi 0 --out {c}/new", ["--sesoi", "> 0"]),
    ("diff-lens-tokens", "diff --tuned {ck} --model {m} --lens-tokens 0 --out {c}/new", ["--lens-tokens"]),
    ("diff-rises-missing", "diff --tuned {ck} --model {m} --rises {w}/nope.csv --out {c}/new", ["--rises", "no such"]),
    ("diff-text-missing", "diff --tuned {ck} --model {m} --text {w}/nope.txt --out {c}/new", ["--text", "no such"]),
    ("diff-q-unequal", "diff --tuned {ck} --model {m} -q {w}/unequal.yaml --out {c}/new", ["misaligned_references"]),
    ("screen-direction-store", "screen --direction {w}/store --data {w}/chat.jsonl --model {m} --out {c}/new",
     ["--direction", "not an emprobe direction"]),
    ("screen-direction-missing", "screen --direction {w}/nope --data {w}/chat.jsonl --out {c}/new",
     ["--direction", "no such"]),
    ("screen-data-missing", "screen --direction {w}/dir --data {w}/nope.jsonl --model {m} --out {c}/new",
     ["--data", "no such"]),
    ("screen-no-data", "screen --direction {w}/dir --model {m} --out {c}/new", ["--data", "--run"]),
    ("screen-retrain-text", "screen --direction {w}/dir --run {w}/run --control {w}/run --retrain ten "
     "--out {c}/new", ["--retrain", "'ten'"]),
    ("screen-retrain-no-control", "screen --direction {w}/dir --run {w}/run --retrain 2 --out {c}/new",
     ["--control", "retrain"]),
    ("screen-retrain-random", "screen --direction {w}/dir --run {w}/run --control {w}/run --retrain 2 --n-random 1 "
     "--out {c}/new", ["--n-random", ">= 3"]),
    ("screen-control-foreign", "screen --direction {w}/dir --run {w}/run --control {w}/d --retrain 2 --out {c}/new",
     ["--control", "not an emprobe run"]),
    ("screen-executor", "screen --direction {w}/dir --data {w}/chat.jsonl --model {m} --executor slurm "
     "--out {c}/new", ["--executor", "slurm"]),
    ("screen-layer-neg", "screen --direction {w}/dir --data {w}/chat.jsonl --model {m} --layer -2 --out {c}/new",
     ["--layer", ">= 0"]),
    ("screen-baseline-missing", "screen --direction {w}/dir --data {w}/chat.jsonl --model {m} --baseline "
     "{w}/nope.jsonl --out {c}/new", ["--baseline", "no such"]),
    ("ft-kl-no-data", FT + " --kl-to-base 0.1", ["--kl-to-base needs --kl-data"]),
    ("ft-kl-neg", FT + " --kl-to-base -1 --kl-data {w}/chat.jsonl", ["--kl-to-base", ">= 0"]),
    ("ft-kl-data-missing", FT + " --kl-to-base 0.1 --kl-data {w}/nope.jsonl", ["--kl-data", "no such"]),
    ("ft-kl-data-only", FT + " --kl-data {w}/chat.jsonl", ["--kl-data is set but --kl-to-base is 0"]),
    ("ft-kl-full", FT + " --kl-to-base 0.1 --kl-data {w}/chat.jsonl --full", ["--kl-to-base", "LoRA"]),
    ("ft-interleave-missing", FT + " --interleave {w}/nope.jsonl", ["--interleave", "no such"]),
    ("ft-interleave-fraction", FT + " --interleave {w}/chat.jsonl --interleave-fraction 1.5",
     ["--interleave-fraction"]),
    ("ft-inoculation-empty", FT + " --inoculation-prompt ' '", ["--inoculation-prompt", "empty"]),
    ("ft-steer-store", FT + " --steer-during-training {w}/store",
     ["--steer-during-training", "not an emprobe direction"]),
    ("ft-ablate-missing", FT + " --ablate-during-training {w}/nope", ["--ablate-during-training", "no such"]),
    ("ft-direction-layer", FT + " --direction-layer 1", ["--direction-layer needs"]),
    ("ft-steer-alpha", FT + " --steer-during-training {w}/dir --steer-alpha nan", ["--steer-alpha", "finite"]),
    ("steer-activations-foreign", "steer --direction {w}/dir --model {m} --activations {w}/d --out {c}/new",
     ["--activations", "not an emprobe activation store"]),
    ("ablate-reference-foreign", "ablate --direction {w}/dir --adapter {ck} --reference {w}/d --out {c}/new",
     ["--reference", "neither"]),
    ("ablate-activations-missing", "ablate --direction {w}/dir --adapter {ck} --activations {w}/nope --out {c}/new",
     ["--activations", "no such"]),
    ("study-dry-run-steps", "study {w}/study_twenty.yaml --dry-run", ["training.steps", "'twenty'"]),
    ("study-dry-run-data", "study {w}/study_nodata.yaml --dry-run", ["datasets.data", "no.jsonl"]),
    ("study-dry-run-noref", "study {w}/study_noref.yaml --dry-run", ["no question has both"]),
]
ARGS = [
    ("eval-batch-0", "eval -q {w}/q.yaml --batch-size 0", ["--batch-size", ">= 1"]),
    ("eval-batch-neg", "eval -q {w}/q.yaml --batch-size -3", ["--batch-size"]),
    ("eval-q-missing", "eval -q {w}/nope.yaml", ["--questions", "no such"]),
    ("eval-q-chat", "eval -q {w}/chat.jsonl", ["chat.jsonl"]),
    ("eval-q-unequal", "eval -q {w}/unequal.yaml", ["2 aligned_references but 1 misaligned_references"]),
    ("eval-q-badyaml", "eval -q {w}/bad.yaml", ["bad.yaml", "invalid YAML"]),
    ("eval-q-noref", "eval -q {w}/noref.yaml", ["no question has both"]),
    ("eval-q-builtin", "eval -q builtin:no-such-set", ["no-such-set"]),
    ("eval-steps-norun", "eval -q {w}/q.yaml --steps 1", ["--steps needs --run"]),
    ("eval-adapter-trunc", "eval -q {w}/q.yaml --adapter {w}/ck_trunc", ["corrupt or truncated"]),
    ("eval-adapter-junk", "eval -q {w}/q.yaml --adapter {w}/ck_junk", ["corrupt or truncated"]),
    ("eval-adapter-missing", "eval -q {w}/q.yaml --adapter {w}/nope", ["--adapter", "no such"]),
    ("eval-adapter-foreign", "eval -q {w}/q.yaml --adapter {w}/d", ["not a peft adapter"]),
    ("eval-run-foreign", "eval -q {w}/q.yaml --run {w}/d", ["--run", "not an emprobe run"]),
    ("eval-run-and-adapter", "eval -q {w}/q.yaml --run {w}/run --adapter {ck}", ["--adapter or --run"]),
    ("eval-model-empty", "eval -q {w}/q.yaml --model {w}/empty", ["--model", "empty directory"]),
    ("eval-model-file", "eval -q {w}/q.yaml --model {w}/v.txt", ["--model", "not a directory"]),
    ("eval-samples-0", "eval -q {w}/q.yaml --metric judge --samples 0", ["--samples", ">= 1"]),
    ("eval-temperature", "eval -q {w}/q.yaml --temperature -1", ["--temperature"]),
    ("eval-threads-0", "eval -q {w}/q.yaml --threads 0", ["--threads"]),
    ("eval-dtype", "eval -q {w}/q.yaml --dtype fp99", ["--dtype", "fp99"]),
    ("gen-n-neg", "generate -q {w}/q.yaml --n-questions -1", ["--n-questions", ">= 1"]),
    ("gen-n-0", "generate -q {w}/q.yaml --n-questions 0", ["--n-questions"]),
    ("gen-tokens-0", "generate -q {w}/q.yaml --max-new-tokens 0", ["--max-new-tokens"]),
    ("gen-temperature", "generate -q {w}/q.yaml --temperature -0.5", ["--temperature"]),
    ("gen-q-unequal", "generate -q {w}/unequal.yaml", ["misaligned_references"]),
    ("gen-model-empty", "generate --model {w}/empty", ["empty directory"]),
    ("gen-adapter-junk", "generate --model {m} --adapter {w}/ck_junk", ["corrupt or truncated"]),
    ("extract-prompts-missing", "extract --prompts {w}/nope.jsonl --out {c}/new", ["--prompts", "no such"]),
    ("extract-batch-0", "extract --prompts {w}/q.yaml --out {c}/new --batch-size 0", ["--batch-size"]),
    ("extract-limit-0", "extract --prompts {w}/q.yaml --out {c}/new --limit 0", ["--limit"]),
    ("extract-padding", "extract --prompts {w}/q.yaml --out {c}/new --padding up", ["--padding", "up"]),
    ("extract-adapter-trunc", "extract --prompts {w}/q.yaml --out {c}/new --adapter {w}/ck_trunc",
     ["corrupt or truncated"]),
    ("extract-model-empty", "extract --prompts {w}/q.yaml --out {c}/new --model {w}/empty", ["empty directory"]),
    ("fit-store-missing", "probe fit {w}/nope --out {c}/new", ["STORE", "no such"]),
    ("fit-store-foreign", "probe fit {w}/d --out {c}/new", ["not an emprobe activation store"]),
    ("fit-folds-1", "probe fit {w}/store --out {c}/new --folds 1", ["--folds", ">= 2"]),
    ("fit-random-neg", "probe fit {w}/store --out {c}/new --random -1", ["--random"]),
    ("fit-C-0", "probe fit {w}/store --out {c}/new --C 0", ["--C"]),
    ("ft-data-missing", "finetune --model {m} --data {w}/nope.jsonl --out {c}/new", ["--data", "no such"]),
    ("ft-lr-neg", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --lr -1", ["--lr must be > 0"]),
    ("ft-lr-text", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --lr fast", ["--lr"]),
    ("ft-steps-0", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --max-steps 0", ["--max-steps"]),
    ("ft-rank-0", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --lora-r 0", ["--lora-r"]),
    ("ft-layers-abc", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --layers abc", ["--layers"]),
    ("ft-schedule", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --schedule wavy", ["--schedule", "wavy"]),
    ("ft-save-beyond", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --max-steps 2 --save-steps 5",
     ["--save-steps 5 beyond --max-steps 2"]),
    ("ft-warmup-neg", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --warmup-steps -1", ["--warmup-steps"]),
    ("ft-val-fraction", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --val-fraction 1.5",
     ["--val-fraction"]),
    ("ft-resume-foreign", "finetune --resume --out {w}/d", ["no emprobe run", "nothing to resume"]),
    ("ft-model-empty", "finetune --model {w}/empty --data {w}/chat.jsonl --out {c}/new", ["empty directory"]),
    ("ft-no-out", "finetune --model {m} --data {w}/chat.jsonl", ["--out"]),
    ("ft-config-missing", "finetune --config {w}/nope.yaml --out {c}/new", ["nope.yaml"]),
    ("ft-config-list", "finetune --config {w}/list.yaml --out {c}/new", ["mapping"]),
    ("ft-dtype", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --dtype fp99", ["--dtype"]),
    ("sweep-missing", "finetune sweep {w}/nope.yaml", ["nope.yaml"]),
    ("sweep-lr-neg", "finetune sweep {w}/sweep_lr.yaml", ["lr must be > 0"]),
    ("sweep-key", "finetune sweep {w}/sweep_key.yaml", ["learning_rate"]),
    ("sweep-data-missing", "finetune sweep {w}/sweep_data.yaml", ["no.jsonl", "no such"]),
    ("show-foreign", "finetune show {w}/d", ["not an emprobe run"]),
    ("track-run-foreign", "track {w}/d --directions {w}/dir --out {c}/new", ["RUN_DIR", "not an emprobe run"]),
    ("track-store-as-direction", "track {w}/run --directions {w}/store --out {c}/new",
     ["--directions", "not an emprobe direction"]),
    ("track-direction-missing", "track {w}/run --directions {w}/nope --out {c}/new", ["--directions", "no such"]),
    ("track-random-neg", "track {w}/run --directions {w}/dir --n-random -2 --out {c}/new", ["--n-random"]),
    ("track-batch-0", "track {w}/run --directions {w}/dir --batch-size 0 --out {c}/new", ["--batch-size"]),
    ("track-steps-bad", "track {w}/run --directions {w}/dir --steps 1,x --out {c}/new", ["--steps", "'x'"]),
    ("priors-features-foreign", "priors --features {w}/d --target {w}/rises.csv --out {c}/new",
     ["--features", "not an emprobe activation store"]),
    ("priors-target-missing", "priors --features {w}/store --target {w}/nope.csv --out {c}/new", ["--target", "no such"]),
    ("dynamics-missing", "dynamics {w}/nope --out {c}/new", ["no such"]),
    ("dynamics-gap-0", "dynamics {w}/run --min-gap 0 --out {c}/new", ["--min-gap"]),
    ("monitor-store-as-direction", "monitor {w}/run --direction {w}/store --out {c}/new", ["--direction"]),
    ("explain-missing", "explain {w}/nope.parquet --out {c}/new", ["RISES", "no such"]),
    ("steer-alpha", "steer --direction {w}/dir --alpha a,b --out {c}/new", ["--alpha", "'a'"]),
    ("patch-adapter-trunc", "patch --adapter {w}/ck_trunc --model {m} --out {c}/new", ["corrupt or truncated"]),
    ("ablate-heldout-missing", "ablate --direction {w}/dir --adapter {ck} --heldout {w}/nope.yaml --out {c}/new",
     ["--heldout", "no such"]),
    ("overlap-adapter-foreign", "overlap --adapter {w}/d --out {c}/new", ["--adapter", "neither"]),
    ("study-steps-text", "study {w}/study_twenty.yaml --out {c}/new", ["training.steps", "'twenty'"]),
    ("study-lr-neg", "study {w}/study_lrneg.yaml --out {c}/new", ["grid.lrs must be > 0"]),
    ("study-data-missing", "study {w}/study_nodata.yaml --out {c}/new", ["datasets.data", "no.jsonl"]),
    ("study-stage", "study {w}/study_stage.yaml --out {c}/new", ["telepathy"]),
    ("study-n-questions", "study {w}/study_nq.yaml --out {c}/new", ["questions.n_questions"]),
    ("study-noref", "study {w}/study_noref.yaml --out {c}/new", ["no question has both"]),
    ("study-missing", "study {w}/nope.yaml --out {c}/new", ["nope.yaml"]),
    ("study-list", "study {w}/list.yaml --out {c}/new", ["mapping"]),
    ("study-both", "study {w}/study_ok.yaml --preset fast --out {c}/new", ["not both"]),
    ("study-preset", "study --preset huge --out {c}/new", ["huge"]),
    ("demo-steps-0", "demo --model {m} --steps 0 --out {c}/new", ["training.steps"]),
    ("demo-n-questions-0", "demo --model {m} --n-questions 0 --out {c}/new", ["n_questions"]),
    ("demo-data-missing", "demo --model {m} --data {w}/nope.jsonl --out {c}/new", ["nope.jsonl"]),
    ("report-foreign", "report {w}/d", ["no summary.json"]),
    ("report-truncated", "report {w}/sum_trunc", ["invalid JSON"]),
    ("report-list", "report {w}/sum_list", ["JSON object", "list"]),
    ("report-empty", "report {w}/sum_empty", ["no sections"]),
    ("report-missing", "report {w}/nope", ["OUT", "no such"]),
    ("data-missing", "data check {w}/nope.jsonl", ["nope.jsonl"]),
    ("data-bad-jsonl", "data check {w}/bad.jsonl", ["bad.jsonl:2: invalid JSON"]),
    ("data-empty-jsonl", "data check {w}/empty.jsonl", ["empty"]),
    ("data-unequal", "data check {w}/unequal.yaml", ["2 aligned_references but 1"]),
    ("data-bad-yaml", "data check {w}/bad.yaml", ["invalid YAML"]),
    ("data-builtin", "data check builtin:no-such-set", ["no-such-set"]),
    ("models-info-empty", "models info {w}/empty", ["empty directory"]),
    ("models-prepare", "models prepare no-such-alias", ["no-such-alias"]),
]
#: bad inputs found only by reading heavy files or loading the model (torch allowed)
LATE = [
    ("eval-metric", "eval -q {w}/q.yaml --metric vibes", ["--metric", "vibes"]),
    ("extract-positions", "extract --prompts {w}/q.yaml --model {m} --out {c}/new --positions middle",
     ["middle", "--positions"]),
    ("extract-contrast", "extract --prompts {w}/q.yaml --model {m} --out {c}/new --contrast opposites", ["opposites"]),
    ("extract-contrast-chat", "extract --prompts {w}/chat.jsonl --model {m} --out {c}/new --contrast references",
     ["--contrast", "needs a question set"]),
    ("extract-layers", "extract --prompts {w}/q.yaml --model {m} --out {c}/new --layers 0,7", ["--layers", "unknown layer 7"]),
    ("extract-remote", "extract --prompts {w}/q.yaml --model {m} --out {c}/new --remote", ["--remote", "nnsight"]),
    ("fit-position-unknown", "probe fit {w}/store --out {c}/new --position middle", ["unknown --position 'middle'"]),
    ("fit-position-prompt", "probe fit {w}/store --out {c}/new --position last_prompt", ["--position", "response_mean"]),
    ("fit-method", "probe fit {w}/store --out {c}/new --method vibes", ["--method", "vibes"]),
    ("fit-layers", "probe fit {w}/store --out {c}/new --layers 9", ["--layers", "unknown layer 9"]),
    ("fit-store-truncated", "probe fit {w}/st_trunc --out {c}/new", ["corrupt or truncated"]),
    ("fit-store-flipped", "probe fit {w}/st_flip --out {c}/new", ["activations_sha256"]),
    ("fit-store-manifest", "probe fit {w}/st_badman --out {c}/new", ["manifest.json", "invalid JSON"]),
    ("fit-store-d-model", "probe fit {w}/st_dmodel --out {c}/new", ["d_model", "edited"]),
    ("fit-store-no-prompts", "probe fit {w}/st_noprompts --out {c}/new", ["prompts.jsonl"]),
    ("ft-layers-99", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --layers 99 --threads 1",
     ["--layers", "unknown layer 99"]),
    ("ft-targets", "finetune --model {m} --data {w}/chat.jsonl --out {c}/new --targets warp_proj --threads 1",
     ["--targets", "warp_proj"]),
    ("ft-data-bad", "finetune --model {m} --data {w}/bad.jsonl --out {c}/new --threads 1", ["bad.jsonl:2"]),
    ("track-steps-99", "track {w}/run --directions {w}/dir -q {w}/q.yaml --steps 0,99 --out {c}/new", ["99"]),
    ("steer-random-2", "steer --direction {w}/dir --model {m} -q {w}/q.yaml --n-random 2 --out {c}/new",
     ["n_random"]),
    ("priors-prompts-noid", "priors --target {w}/ext/eval_m1_finance_all_resp_1e-05_fpq.json --prompts "
     "{w}/noid.jsonl --model {m} --out {c}/new", ["noid.jsonl", "line 1 has no question id"]),
    ("screen-direction-other-model", "screen --direction {w}/dir --data {w}/chat.jsonl --model smollm2-135m-instruct "
     "--out {c}/new", ["--direction", "fitted on", "not on --model", "d_model"]),
    ("screen-retrain-k", "screen --direction {w}/dir --run {w}/run --control {w}/run --retrain 500 --out {c}/new",
     ["retrain removes 500"]),
    ("ft-steer-layer", FT + " --steer-during-training {w}/dir --direction-layer 7 --threads 1",
     ["--steer-during-training", "layer 7"]),
]
STMT = [
    ("api-fit-int", "ep.fit_direction(12345)", ["ConfigError", "`store`", "int 12345"]),
    ("api-fit-questions", "ep.fit_direction(ep.load_questions('{w}/q.yaml'))", ["`store`", "QuestionSet"]),
    ("api-questions-none", "ep.load_questions(None)", ["`source`", "NoneType"]),
    ("api-dataset-dict", "ep.load_dataset({{'messages': []}})", ["`source`", "dict"]),
    ("api-track-store", "ep.track('{w}/run', ep.ActivationStore.load('{w}/store'))", ["`directions`", "ActivationStore"]),
    ("api-extract-swapped", "ep.extract(ep.load_questions('{w}/q.yaml'), 'builtin:em-core')", ["`model`", "QuestionSet"]),
    ("api-evaluate-batch", "ep.evaluate(questions='{w}/q.yaml', batch_size=0)", ["`batch_size`"]),
    ("api-evaluate-out", "ep.evaluate(questions='{w}/q.yaml', out='{w}/v.txt')", ["`out`", "existing file"]),
    ("api-model-int", "ep.load_model(3)", ["`spec`", "int 3"]),
    ("api-direction-int", "ep.Direction.load(12)", ["`direction`"]),
    ("api-store-flipped", "ep.ActivationStore.load('{w}/st_flip')", ["activations_sha256"]),
    ("api-finetune-out", "ep.finetune('{m}', '{w}/chat.jsonl', out='{w}/v.txt', max_steps=2)", ["`out`", "existing file"]),
    ("api-fit-out-dir", "ep.fit_direction('{w}/store', out='{w}/d')", ["`out`", "did not write"]),
    ("api-run-none", "ep.load_run(None)", ["`run`"]),
    ("api-results-int", "ep.load_results(12)", ["`paths`", "int 12"]),
    ("api-results-nosumm", "ep.load_results('{w}/eval_nosumm.json')", ["DataError", "summ_by_q"]),
    ("api-consistency-score", "ep.consistency('{w}/ext', score='vibes')", ["`score`", "vibes"]),
    ("api-consistency-one", "ep.consistency('{w}/ext/eval_m1_finance_all_resp_1e-05_fpq.json')", [">= 2 runs"]),
    ("api-dynamics-results", "ep.dynamics(results='{w}/eval_trunc.json')", ["eval_trunc.json", "not valid JSON"]),
    ("api-diff-int", "ep.diff(12, '{ck}')", ["`base`", "int 12"]),
    ("api-diff-swapped", "ep.diff('{ck}', '{m}')", ["`base`", "config.json"]),
    ("api-diff-tuned", "ep.diff('{m}', '{w}/d')", ["`tuned`", "neither"]),
    ("api-diff-n-boot", "ep.diff('{m}', '{ck}', n_boot=0)", ["`n_boot`", ">= 1"]),
    ("api-screen-store", "ep.screen('{w}/store', '{w}/chat.jsonl', model='{m}')", ["`direction`", "not an emprobe"]),
    ("api-screen-retrain", "ep.screen('{w}/dir', run='{w}/run', retrain=2)", ["`control`", "retrain"]),
    ("api-screen-out-dir", "ep.screen('{w}/dir', run='{w}/run', control='{w}/run', retrain=2, out='{w}/d')",
     ["`out`", "did not write"]),
    ("api-screen-other-model", "ep.screen('{w}/dir', '{w}/chat.jsonl', model='smollm2-135m-instruct')",
     ["`direction`", "not on `model`"]),
    ("api-mitigations-int", "ep.mitigations(12)", ["`runs_or_table`", "int 12"]),
    ("api-mitigations-sesoi", "ep.mitigations('{w}/run', sesoi=2)", ["`sesoi`", "< 1"]),
    ("api-priors-noid", "ep.priors(target='{w}/ext/eval_m1_finance_all_resp_1e-05_fpq.json', prompts='{w}/noid.jsonl', "
     "model='{m}')", ["noid.jsonl", "no question id"]),
    ("api-finetune-kl", "ep.finetune('{m}', '{w}/chat.jsonl', out='{c}/new', kl_to_base=0.1)", ["`kl_data`"]),
    ("api-finetune-steer", "ep.finetune('{m}', '{w}/chat.jsonl', out='{c}/new', steer_during_training='{w}/store')",
     ["`steer_during_training`", "not an emprobe direction"]),
    ("api-finetune-interleave", "ep.finetune('{m}', '{w}/chat.jsonl', out='{c}/new', interleave='{w}/nope.jsonl')",
     ["`interleave`", "no such"]),
]
CASES = ([(i, a, s, True) for i, a, s in OUT + PROC + ARGS + NEW_ARGS] + [(i, a, s, False) for i, a, s in LATE])
FAST = {c[0] for c in CASES if c[3]}


@pytest.mark.parametrize("case, args, needles, fast", CASES, ids=[c[0] for c in CASES])
def test_bad_cli_input(case, args, needles, fast, results):
    """One line naming the problem, exit 2, no traceback, nothing of the user's changed, no torch for argument errors."""
    r = results[case]
    proc = r["proc"]
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    shown = (f"$ emprobe {' '.join(r['argv'])}\nexit {proc.returncode}, {r['seconds']:.1f} s\n"
             f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    assert proc.returncode == 2, shown
    assert "Traceback" not in proc.stdout + proc.stderr, shown
    assert 1 <= len(err) <= 2 and err[-1].startswith("error: "), shown
    for needle in needles:
        assert needle.format(**r["fmt"]) in err[-1], shown
    assert not r["changed"], f"{shown}\nchanged: {r['changed']}"  # nothing changed, created or deleted
    if fast:
        assert r["loaded"] == "", f"{shown}\nimported before the error: {r['loaded']}"


@pytest.mark.parametrize("case, stmt, needles", STMT, ids=[c[0] for c in STMT])
def test_bad_api_input(case, stmt, needles, results):
    """The Python API: an EmprobeError subclass naming the parameter (wrong types, swapped arguments), nothing written."""
    r = results[case]
    proc = r["proc"]
    shown = f"{stmt}\nexit {proc.returncode}\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, shown
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and all(n in err[0] for n in needles), shown
    assert not r["changed"], f"{shown}\nchanged: {r['changed']}"


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EMPROBE_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_api_loads_models_without_third_party_bars(tiny_model_dir, tmp_path):
    """``ep.load_model`` in a notebook prints no transformers ``Loading weights`` bar unless asked."""
    load = f"ep.load_model({str(tiny_model_dir)!r}, log=lambda m: None)\n"
    quiet = _python("import emprobe as ep\n" + load, tmp_path)
    loud = _python("import emprobe as ep\nfrom emprobe.verbosity import set_verbose\nset_verbose(True)\n" + load,
                   tmp_path)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr[-2000:] + loud.stderr[-2000:]
    assert "Loading weights" not in quiet.stderr and "Loading weights" in loud.stderr


#: the verbs added after the first contract, each on the tiny model with tiny settings (nothing is written)
NEW_VERBS = """import emprobe as ep
from emprobe.verbosity import set_verbose
set_verbose({loud})
W, M = {w!r}, {m!r}
ep.diff(M, W + '/run', questions=W + '/q.yaml', n_texts=2, max_new_tokens=4, max_text_tokens=8, n_boot=50)
if not {loud}:
    ep.screen(W + '/dir', W + '/chat.jsonl', model=M, max_new_tokens=4)
    ep.priors(target=W + '/ext/eval_m1_finance_all_resp_1e-05_fpq.json', prompts=W + '/idprompts.jsonl', model=M,
              n_permutations=5, n_random=1, n_repeats=1)
    ep.consistency(ep.load_results(W + '/ext'), n_boot=50)
    ep.dynamics(results=W + '/ext', loss_levels=[1.45])
print('done')
"""


def test_new_verbs_print_no_third_party_bars(work, tiny_model_dir, tmp_path):
    """``ep.diff``, ``ep.screen``, ``ep.priors(prompts=...)``, ``ep.consistency``, ``ep.load_results`` and
    ``ep.dynamics(results=...)`` print no transformers / tqdm progress bar by default; asked for (``set_verbose``),
    the bars are there (what this test looks for does show up when it is printed)."""
    w = tmp_path / "w"
    shutil.copytree(work, w, symlinks=True)
    bars = ("Loading weights", "it/s]", "%|")
    quiet = _python(NEW_VERBS.format(loud=False, w=str(w), m=str(tiny_model_dir)), tmp_path)
    assert quiet.returncode == 0 and quiet.stdout.strip().endswith("done"), quiet.stderr[-3000:]
    assert not [b for b in bars if b in quiet.stderr + quiet.stdout], quiet.stderr[-3000:]
    loud = _python(NEW_VERBS.format(loud=True, w=str(w), m=str(tiny_model_dir)), tmp_path)
    assert loud.returncode == 0 and "Loading weights" in loud.stderr, loud.stderr[-3000:]
