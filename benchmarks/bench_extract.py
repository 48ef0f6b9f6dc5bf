#!/usr/bin/env python3
"""Benchmark: last-prompt activations of every layer for 64 chat prompts, five ways, side by side.

Methods (one process, same model weights, method order rotated every round):

* ``naive``         plain full HF forward (logits, no capture) -- the floor every ratio is divided by;
* ``emprobe``       ``emprobe.probes.extract`` with the default hooks backend, end to end
                    (chat templating + tokenization + length sorting included);
* ``emprobe_early`` the same for the first quarter of the layers only (shows the early stop);
* ``hidden_states`` HF forward with ``output_hidden_states=True`` (block outputs = ``hidden_states[1:]``);
* ``tl_cache``      TransformerLens ``TransformerBridge.run_with_cache`` with a names filter on
                    ``blocks.*.hook_resid_post`` (on its own copy of the model: the bridge switches
                    attention to eager in place);
* ``nnsight``       one nnsight ``trace`` per batch saving ``layers[l].output[:, -1]`` for every layer,
                    with ``tracer.stop()`` after the last block (its own copy of the model too).

The baselines get the prompts pre-tokenized, in the data set's order, left-padded (what a user batching
by hand does); emprobe gets the chat messages. Tokens/s counts real (non-pad) tokens. Memory is the peak
RSS during a call (the kernel's high-water mark VmHWM, reset before each call through
/proc/self/clear_refs) minus the RSS just before it; the script re-executes itself with glibc's mmap
threshold fixed at 128 KiB so that freed tensors leave the RSS between calls.

On a GPU (``--device cuda --dtype bf16``) every call ends with ``torch.cuda.synchronize()`` and memory is
the peak CUDA allocation above the allocation at call start (``torch.cuda.max_memory_allocated``).

Usage: python benchmarks/bench_extract.py [--models A,B] [--prompts 64] [--rounds 3] [--batch-sizes 1,8,32]
       [--threads 1] [--dtype fp32|bf16|fp16] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import random
import statistics
import sys
import threading
import time
import warnings

METHODS = ("naive", "emprobe", "emprobe_early", "hidden_states", "tl_cache", "nnsight")
TARGETS = {"smollm2-135m-instruct": 0.85, "gemma-3-270m": 0.40,
           "qwen2.5-coder-0.5b-instruct": 0.85}  # emprobe / naive at batch 8


def _reexec_with_malloc_settings() -> None:
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and sys.platform.startswith("linux"):
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


class RssPeak:
    """Peak resident set size during a ``with`` block, above the RSS at entry.

    Exact where Linux allows resetting the high-water mark (``echo 5 > /proc/self/clear_refs``, then
    ``VmHWM`` in /proc/self/status); otherwise RSS sampled every 2 ms (which can miss short peaks).
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.exact = self._reset_hwm()

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def __enter__(self) -> "RssPeak":
        self.exact = self._reset_hwm()
        self.base = self.peak = self._status("VmRSS")
        if not self.exact:
            self._stop = threading.Event()
            self._t = threading.Thread(target=self._run, daemon=True)
            self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._status("VmRSS"))

    def __exit__(self, *exc) -> None:
        if self.exact:
            self.peak = self._status("VmHWM")
        else:
            self._stop.set()
            self._t.join()
            self.peak = max(self.peak, self._status("VmRSS"))

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def left_padded(id_lists, pad_id, batch_size, device="cpu"):
    """Unsorted left-padded batches (the HF ``output_hidden_states`` baseline's input), padded the emprobe way."""
    from emprobe.sequences import pad_rows, position_ids

    out = []
    for b0 in range(0, len(id_lists), batch_size):
        ids, mask, start = pad_rows(id_lists[b0:b0 + batch_size], pad_id, "left")
        out.append((ids.to(device), mask.to(device), position_ids(start, ids.shape[1]).to(device)))
    return out


def wrappers(lm):
    """Built once per model: the hooks backend, a TL bridge and an nnsight envoy on private model copies."""
    from emprobe.probes import get_backend

    tl_lm = dataclasses.replace(lm, model=copy.deepcopy(lm.model))
    nn_be = get_backend("nnsight", dataclasses.replace(lm, model=copy.deepcopy(lm.model)))
    return {"hooks": get_backend("hooks", lm), "bridge": get_backend("transformerlens", tl_lm).bridge,
            "envoy": nn_be.envoy, "envoy_layers": nn_be._blocks()}


def build_runners(lm, w, items, batch_size):
    """``{method: callable(k=None)}`` running the first ``k`` batches (all by default)."""
    import torch

    from emprobe.probes import extract

    n_layers = lm.n_layers
    ids = [lm.chat.prompt_ids(it.messages) for it in items]
    batches = left_padded(ids, lm.tokenizer.pad_token_id, batch_size, next(lm.model.parameters()).device)
    hooks, bridge, envoy, layers = w["hooks"], w["bridge"], w["envoy"], w["envoy_layers"]

    @torch.no_grad()
    def naive(k=None):
        for ids_, mask, pos in batches[:k]:
            lm.model(input_ids=ids_, attention_mask=mask, position_ids=pos, use_cache=False)

    def emprobe(k=None):
        some = items if k is None else items[:k * batch_size]
        return extract(lm, some, layers="all", positions="last_prompt", backend=hooks, batch_size=batch_size)

    def emprobe_early(k=None):  # only the first quarter of the layers: the forward stops there
        some = items if k is None else items[:k * batch_size]
        return extract(lm, some, layers=f"0:{max(1, n_layers // 4)}", positions="last_prompt", backend=hooks,
                                   batch_size=batch_size)

    @torch.no_grad()
    def hidden_states(k=None):
        out = []
        for ids_, mask, pos in batches[:k]:
            hs = lm.model(input_ids=ids_, attention_mask=mask, position_ids=pos, use_cache=False,
                          output_hidden_states=True).hidden_states
            out.append(torch.stack([h[:, -1] for h in hs[1:]], 1))
        return out

    names = {f"blocks.{i}.hook_resid_post" for i in range(n_layers)}

    @torch.no_grad()
    def tl_cache(k=None):
        out = []
        for ids_, mask, pos in batches[:k]:
            _, cache = bridge.run_with_cache(ids_, attention_mask=mask, position_ids=pos,
                                             names_filter=lambda n: n in names)
            out.append(torch.stack([cache[f"blocks.{i}.hook_resid_post"][:, -1] for i in range(n_layers)], 1))
        return out

    import nnsight

    @torch.no_grad()
    def nnsight_trace(k=None):
        out = []
        for ids_, mask, pos in batches[:k]:
            with envoy.trace(input_ids=ids_, attention_mask=mask, position_ids=pos) as tr:
                saved = nnsight.save([layers[i].output[:, -1] for i in range(n_layers)])
                tr.stop()
            out.append(torch.stack(list(saved), 1))
        return out

    return {"naive": naive, "emprobe": emprobe, "emprobe_early": emprobe_early, "hidden_states": hidden_states,
            "tl_cache": tl_cache, "nnsight": nnsight_trace}, sum(map(len, ids))


class CudaPeak:
    """Peak CUDA memory allocated during a ``with`` block, above the allocation at entry."""

    def __enter__(self) -> "CudaPeak":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.base = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        torch.cuda.synchronize()
        self.peak = torch.cuda.max_memory_allocated()

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def bench_model(name, n_prompts, batch_sizes, rounds, methods, log, dtype="fp32", device="cpu"):
    import gc

    from emprobe.models import load_model
    from emprobe.probes import load_prompts

    lm = load_model(name, dtype=dtype, device=device, log=lambda *a: None)
    on_gpu = str(device).startswith("cuda")
    peak_meter = CudaPeak if on_gpu else RssPeak
    import torch

    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    items = list(load_prompts("builtin:em-core"))
    random.Random(0).shuffle(items)
    items = items[:n_prompts]
    rows = []
    w = wrappers(lm)
    for bs in batch_sizes:
        runners, n_tokens = build_runners(lm, w, items, bs)
        for m in methods:  # warm-up on one batch each (first-call allocations, lazy imports)
            runners[m](1)
        times = {m: [] for m in methods}
        mems = {m: [] for m in methods}
        for r in range(rounds):
            order = methods[r % len(methods):] + methods[:r % len(methods)]
            for m in order:
                gc.collect()
                with peak_meter() as peak:
                    t0 = time.perf_counter()
                    res = runners[m]()
                    sync()
                    dt = time.perf_counter() - t0
                del res
                times[m].append(dt)
                mems[m].append(peak.delta_mb)
            log(f"  {name} bs={bs} round {r + 1}/{rounds}: " + ", ".join(f"{m} {times[m][-1]:.1f}s" for m in methods))
        floor = statistics.median(times["naive"]) if "naive" in times else None
        for m in methods:
            t = statistics.median(times[m])
            rows.append({"model": name, "batch_size": bs, "method": m, "seconds": t, "tokens": n_tokens,
                         "tokens_per_s": n_tokens / t, "ratio_to_naive": t / floor if floor else float("nan"),
                         "peak_rss_mb": statistics.median(mems[m]), "rounds": rounds,
                         "seconds_all": [round(x, 3) for x in times[m]]})
        del runners
        gc.collect()
    return rows


def report(rows, out=print):
    out(f"{'model':<22} {'bs':>3} {'method':<14} {'tok/s':>8} {'x naive':>8} {'peak MB':>9}   (median of rounds)")
    for r in rows:
        out(f"{r['model']:<22} {r['batch_size']:>3} {r['method']:<14} {r['tokens_per_s']:>8.1f} "
            f"{r['ratio_to_naive']:>8.2f} {r['peak_rss_mb']:>9.1f}")
    out("")
    by = {(r["model"], r["batch_size"], r["method"]): r for r in rows}
    for model in dict.fromkeys(r["model"] for r in rows):
        sizes = sorted({r["batch_size"] for r in rows if r["model"] == model})
        target = TARGETS.get(model)
        if 8 in sizes and target and (model, 8, "emprobe") in by:
            ratio = by[(model, 8, "emprobe")]["ratio_to_naive"]
            out(f"{model}: emprobe / naive at batch 8 = {ratio:.2f} (target <= {target}): "
                f"{'met' if ratio <= target else 'MISSED'}")
        for bs in sizes:
            e = by.get((model, bs, "emprobe"))
            others = [by[k] for k in by if k[0] == model and k[1] == bs
                      and k[2] not in ("emprobe", "emprobe_early", "naive")]
            if e and others:
                slower = [o["method"] for o in others if o["seconds"] <= e["seconds"]]
                out(f"{model} bs={bs}: emprobe faster than every other capture method: "
                    f"{'yes' if not slower else 'NO (' + ', '.join(slower) + ')'}")
            hs = by.get((model, bs, "hidden_states"))
            if e and hs and hs["peak_rss_mb"] > 0:
                frac = e["peak_rss_mb"] / hs["peak_rss_mb"]
                out(f"{model} bs={bs}: emprobe peak memory / output_hidden_states = {frac:.2f} (target <= 0.5): "
                    f"{'met' if frac <= 0.5 else 'MISSED'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m-instruct,gemma-3-270m")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (memory is then the peak CUDA allocation)")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    _reexec_with_malloc_settings()
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown methods {bad}; choose from {METHODS}")
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    if args.device.startswith("cuda"):
        how = f"peak CUDA allocation above the allocation at call start on {torch.cuda.get_device_name()}"
    else:
        how = "peak RSS above the RSS at call start (" + (
            "VmHWM high-water mark" if RssPeak().exact else "RSS sampled every 2 ms") + ")"
    print(f"bench_extract: {args.prompts} prompts, all layers, last_prompt, batch sizes {sizes}, {args.rounds} rounds, "
          f"{args.threads} thread(s), {args.dtype} on {args.device}, torch {torch.__version__}; memory = {how}",
          flush=True)
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name, args.prompts, sizes, args.rounds, methods, lambda s: print(s, flush=True),
                            args.dtype, args.device)
    print()
    report(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
