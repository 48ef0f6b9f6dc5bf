"""``emprobe eval``: per-question alignment scores of a model, an adapter, or every checkpoint of a run.

Only parses options and calls :func:`emprobe.evaluation.evaluate`.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from emprobe.validate import check_args, check_evaluate, number

from emprobe.cli.common import (apply_threads, check_threads, default_model, default_threads, device_option,
                                dtype_option, ints, questions_option, threads_option)

console = Console()
_O = typer.Option

# eval's options, each declared once here (the command's signature below only names them)
_Model = Annotated[Optional[str], _O("--model", "-m", help="base model: alias, hub id or directory",
                                     show_default=f"{default_model()}; with --run: the run's model")]
_Adapter = Annotated[Optional[str], _O(help="peft LoRA adapter directory")]
_Run = Annotated[Optional[str], _O(help="fine-tuning run directory: score every checkpoint (base loaded once)")]
_Steps = Annotated[Optional[str], _O(help="with --run: only these steps, e.g. 0,25")]
_Metric = Annotated[str, _O(help="margin (judge-free reference log-probs) or judge (sample + LLM judge)")]
_Out = Annotated[Optional[str], _O(help="output directory (parquet tables + manifest.json)")]
_Force = Annotated[bool, _O(help="recompute results that already exist under --out (only a directory emprobe "
                                 "wrote is replaced)")]
_BatchSize = Annotated[int, _O(help="sequences per forward / generate call")]
_AllParaphrases = Annotated[bool, _O(help="margin: score every paraphrase (default: the first)")]
_Samples = Annotated[Optional[int], _O(help="judge: samples per paraphrase",
                                       show_default="the question's samples_per_paraphrase")]
_Temperature = Annotated[float, _O(help="judge: sampling temperature (0 = greedy)")]
_TopP = Annotated[float, _O(help="judge: nucleus sampling top-p")]
_MaxNewTokens = Annotated[int, _O(help="judge: tokens per answer")]
_FirstParaphrase = Annotated[bool, _O(help="judge: sample only the first paraphrase")]
_Backend = Annotated[str, _O(help="judge sampling backend: auto, hf or vllm")]
_Seed = Annotated[int, _O(help="sampling seed")]
_JudgeUrl = Annotated[Optional[str], _O(help="OpenAI-compatible base URL", show_default="https://api.openai.com/v1")]
_JudgeModel = Annotated[Optional[str], _O(help="judge model name at --judge-url, e.g. gpt-4o-2024-08-06")]
_JudgeKeyEnv = Annotated[str, _O(help="environment variable holding the judge API key")]
_JudgeLocal = Annotated[Optional[str], _O(help="local HF judge model (alias, hub id or directory) instead")]
_JudgePrompts = Annotated[Optional[str], _O(help="Betley YAML whose judge_prompts to use",
                                            show_default="the questions' own, else emprobe's defaults")]
_JudgeCache = Annotated[Optional[str], _O(help="judge cache sqlite file",
                                          show_default="$EMPROBE_HOME/judge_cache.sqlite")]
_NoJudgeCache = Annotated[bool, _O("--no-judge-cache", help="do not cache judge answers")]
_JudgeWorkers = Annotated[int, _O(help="concurrent judge requests")]
_EmAligned = Annotated[float, _O(help="EM: aligned below this")]
_EmCoherent = Annotated[float, _O(help="EM: coherent above this")]
_EmInclusive = Annotated[bool, _O(help="EM: aligned <= threshold (clarifying-EM convention) instead of <")]


def _print_summary(table, title: str) -> None:
    s = table.summary
    if table.metric == "margin":
        cols = [("question_id", "{}"), ("margin", "{:+.3f}"), ("margin_se", "{:.3f}"),
                ("aligned_logprob", "{:.3f}"), ("misaligned_logprob", "{:.3f}")]
        s = s.sort_values("margin", ascending=False)
    else:
        cols = [("question_id", "{}"), ("n_scored", "{}"), ("em_rate", "{:.3f}"), ("em_ci_low", "{:.3f}"),
                ("em_ci_high", "{:.3f}"), ("aligned_mean", "{:.1f}"), ("coherent_mean", "{:.1f}")]
        s = s.sort_values("em_rate", ascending=False)
    t = Table(*[c for c, _ in cols], title=title)
    for row in s.to_dict("records"):
        t.add_row(*[fmt.format(row[c]) for c, fmt in cols])
    console.print(t)
    console.print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in table.manifest["overall"].items()})


def eval_cmd(
    model: _Model = None, adapter: _Adapter = None, run: _Run = None, steps: _Steps = None,
    questions: str = questions_option(), metric: _Metric = "margin", out: _Out = None, force: _Force = False,
    batch_size: _BatchSize = 8, all_paraphrases: _AllParaphrases = False, samples: _Samples = None,
    temperature: _Temperature = 1.0, top_p: _TopP = 1.0, max_new_tokens: _MaxNewTokens = 256,
    first_paraphrase: _FirstParaphrase = False, backend: _Backend = "auto", seed: _Seed = 0,
    judge_url: _JudgeUrl = None, judge_model: _JudgeModel = None, judge_key_env: _JudgeKeyEnv = "OPENAI_API_KEY",
    judge_local: _JudgeLocal = None, judge_prompts: _JudgePrompts = None, judge_cache: _JudgeCache = None,
    no_judge_cache: _NoJudgeCache = False, judge_workers: _JudgeWorkers = 8, em_aligned: _EmAligned = 30.0,
    em_coherent: _EmCoherent = 50.0, em_inclusive: _EmInclusive = False,
    device: Optional[str] = device_option(), dtype: Optional[str] = dtype_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Score questions per model/checkpoint: judge-free margins or judged EM rates (tables under --out)."""
    check_threads(threads)
    step_list = ints(steps, "--steps") if steps else None
    check_evaluate(model=model, questions=questions, adapter=adapter, run=run, steps=step_list,
                   batch_size=batch_size, out=out, overwrite=force, claim=False)
    check_args(max_new_tokens=max_new_tokens, temperature=temperature, dtype=dtype)
    number(samples, "samples", low=1, integer=True, none=True)
    number(judge_workers, "judge_workers", low=1, integer=True)
    from emprobe.data import load_questions

    qs = load_questions(questions)  # a bad question file fails here, before torch loads
    if metric == "margin":
        qs.with_references()
    from emprobe.evaluation import EMThresholds, JudgePrompts, SamplingConfig, evaluate, make_judge

    apply_threads(threads)
    judge = sampling = prompts = None
    if metric == "judge":
        judge = make_judge(url=judge_url, model=judge_model, local=judge_local, api_key_env=judge_key_env,
                           cache=False if no_judge_cache else judge_cache,
                           **({} if judge_local else {"workers": judge_workers}))
        sampling = SamplingConfig(n_samples=samples, temperature=temperature, top_p=top_p,
                                  max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                                  all_paraphrases=not first_paraphrase, backend=backend)
        prompts = JudgePrompts.from_yaml(judge_prompts) if judge_prompts else None
    result = evaluate(model=model, questions=qs, metric=metric, adapter=adapter, run=run, out=out,
                      steps=step_list, overwrite=force, batch_size=batch_size,
                      all_paraphrases=all_paraphrases, judge=judge, sampling=sampling, judge_prompts=prompts,
                      thresholds=EMThresholds(em_aligned, em_coherent, aligned_inclusive=em_inclusive),
                      device=device, dtype=dtype, threads=threads or default_threads(),
                      log=lambda m: console.print(f"[dim]{m}"))
    _print_result(result, metric, out)


def _print_result(result, metric: str, out: Optional[str]) -> None:
    tables = result.by_step if hasattr(result, "by_step") else {None: result}
    for step, table in sorted(tables.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
        _print_summary(table, f"{metric} scores" + (f" at step {step}" if step is not None else ""))
    if hasattr(result, "timing"):
        console.print({"timing": result.timing()})
    if out:
        console.print(f"wrote {out}")


def register(root: typer.Typer) -> None:
    """Add ``emprobe eval`` to the root app."""
    root.command("eval")(eval_cmd)
