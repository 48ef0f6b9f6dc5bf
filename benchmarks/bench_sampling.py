#!/usr/bin/env python3
"""Benchmark: sampling throughput, emprobe's batched HF ``generate`` vs vLLM (when installed), same prompts.

Both sides get the chat-templated prompt token ids of the first paraphrase of ``--n`` built-in questions
(repeated to fill ``--n``), greedy decoding, at most ``--max-new-tokens`` new tokens, stopping at the
model's end-of-turn tokens. Throughput = generated tokens / wall time of the generate call (model loading
and vLLM's engine start-up excluded, reported separately). The HF side is
:func:`emprobe.models.generation.generate_chat_details` (length-sorted left-padded batches of
``--batch-size``); vLLM schedules all prompts itself (continuous batching). The greedy texts are compared
too: the share of prompts whose first 32 characters agree (bf16 kernels differ, so not all will).

    python benchmarks/bench_sampling.py --model qwen2.5-coder-0.5b-instruct --dtype bf16 --device cuda
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time


def prompts_for(lm, n: int) -> list[list[dict]]:
    from emprobe.data import load_questions

    qs = [q.messages(0) for q in load_questions("builtin:em-core")]
    return [qs[i % len(qs)] for i in range(n)]


def run_hf(lm, convs, max_new, batch_size) -> dict:
    import torch

    from emprobe.models.generation import generate_chat_details

    generate_chat_details(lm, convs[:batch_size], max_new_tokens=8, batch_size=batch_size)  # warm-up
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    gens = generate_chat_details(lm, convs, max_new_tokens=max_new, batch_size=batch_size)
    sync()
    dt = time.perf_counter() - t0
    toks = sum(g.n_tokens for g in gens)
    return {"tokens": toks, "seconds": dt, "tokens_per_s": toks / dt, "texts": [g.text for g in gens]}


def run_vllm(lm, convs, max_new, dtype) -> dict:
    from vllm import LLM, SamplingParams

    t0 = time.perf_counter()
    llm = LLM(model=lm.path, dtype=dtype, gpu_memory_utilization=0.4, enforce_eager=False, seed=0)
    startup = time.perf_counter() - t0
    eos = lm.model.generation_config.eos_token_id
    stop = list(eos) if isinstance(eos, (list, tuple)) else [eos]
    sp = SamplingParams(temperature=0.0, max_tokens=max_new, stop_token_ids=stop)
    ids = [{"prompt_token_ids": lm.chat.prompt_ids(c)} for c in convs]
    llm.generate(ids[:4], sp, use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate(ids, sp, use_tqdm=False)
    dt = time.perf_counter() - t0
    toks = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"tokens": toks, "seconds": dt, "tokens_per_s": toks / dt, "startup_s": startup,
            "texts": [o.outputs[0].text.strip() for o in outs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--n", type=int, default=64, help="prompts")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32, help="HF generate batch size")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from emprobe.models import load_model
    from emprobe.models.arch import parse_dtype

    t0 = time.perf_counter()
    lm = load_model(a.model, dtype=a.dtype, device=a.device, log=lambda *x: None)
    print(f"bench_sampling: {a.model} {a.dtype} on {lm.info()['device']}, {a.n} prompts, greedy, <= {a.max_new_tokens} "
          f"new tokens (load {time.perf_counter() - t0:.1f} s)", flush=True)
    convs = prompts_for(lm, a.n)
    res = {"hf_generate": run_hf(lm, convs, a.max_new_tokens, a.batch_size)}
    if importlib.util.find_spec("vllm") is None:
        print("vllm: not installed, skipped")
    elif not a.device.startswith("cuda"):
        print("vllm: needs --device cuda, skipped")
    else:
        res["vllm"] = run_vllm(lm, convs, a.max_new_tokens, str(parse_dtype(a.dtype)).removeprefix("torch."))
    for name, r in res.items():
        extra = f", engine start-up {r['startup_s']:.1f} s" if "startup_s" in r else ""
        print(f"{name:12s} {r['tokens']:7d} tokens in {r['seconds']:7.2f} s = {r['tokens_per_s']:9.1f} tok/s{extra}")
    if "vllm" in res:
        hf, vl = res["hf_generate"], res["vllm"]
        same = sum(x[:32] == y[:32] for x, y in zip(hf["texts"], vl["texts"])) / len(convs)
        print(f"vllm / hf_generate tokens/s: {vl['tokens_per_s'] / hf['tokens_per_s']:.2f}x; "
              f"greedy texts agreeing in their first 32 characters: {same:.0%}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({k: {kk: vv for kk, vv in v.items() if kk != "texts"} for k, v in res.items()}, f, indent=1)


if __name__ == "__main__":
    main()
