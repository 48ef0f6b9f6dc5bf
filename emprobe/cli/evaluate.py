"""``emprobe eval``: per-question alignment scores of a model, an adapter, or every checkpoint of a run.

Only parses options and calls :func:`emprobe.evaluation.evaluate`.
"""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from emprobe.validate import check_args, check_evaluate, number

from emprobe.cli.common import (apply_threads, check_threads, default_model, default_threads, device_option,
                                dtype_option, ints, questions_option, threads_option)

console = Console()
_O = typer.Option


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


def register(root: typer.Typer) -> None:
    """Add ``emprobe eval`` to the root app."""

    @root.command("eval")
    def eval_cmd(
        model: Optional[str] = _O(None, "--model", "-m", help="base model: alias, hub id or directory",
                                  show_default=f"{default_model()}; with --run: the run's model"),
        adapter: Optional[str] = _O(None, help="peft LoRA adapter directory"),
        run: Optional[str] = _O(None, help="fine-tuning run directory: score every checkpoint (base loaded once)"),
        steps: Optional[str] = _O(None, help="with --run: only these steps, e.g. 0,25"),
        questions: str = questions_option(),
        metric: str = _O("margin", help="margin (judge-free reference log-probs) or judge (sample + LLM judge)"),
        out: Optional[str] = _O(None, help="output directory (parquet tables + manifest.json)"),
        force: bool = _O(False, help="recompute results that already exist under --out (only a directory emprobe "
                                     "wrote is replaced)"),
        batch_size: int = _O(8, help="sequences per forward / generate call"),
        all_paraphrases: bool = _O(False, help="margin: score every paraphrase (default: the first)"),
        samples: Optional[int] = _O(None, help="judge: samples per paraphrase",
                                      show_default="the question's samples_per_paraphrase"),
        temperature: float = _O(1.0, help="judge: sampling temperature (0 = greedy)"),
        top_p: float = _O(1.0, help="judge: nucleus sampling top-p"),
        max_new_tokens: int = _O(256, help="judge: tokens per answer"),
        first_paraphrase: bool = _O(False, help="judge: sample only the first paraphrase"),
        backend: str = _O("auto", help="judge sampling backend: auto, hf or vllm"),
        seed: int = _O(0, help="sampling seed"),
        judge_url: Optional[str] = _O(None, help="OpenAI-compatible base URL", show_default="https://api.openai.com/v1"),
        judge_model: Optional[str] = _O(None, help="judge model name at --judge-url, e.g. gpt-4o-2024-08-06"),
        judge_key_env: str = _O("OPENAI_API_KEY", help="environment variable holding the judge API key"),
        judge_local: Optional[str] = _O(None, help="local HF judge model (alias, hub id or directory) instead"),
        judge_prompts: Optional[str] = _O(None, help="Betley YAML whose judge_prompts to use",
                                           show_default="the questions' own, else emprobe's defaults"),
        judge_cache: Optional[str] = _O(None, help="judge cache sqlite file",
                                          show_default="$EMPROBE_HOME/judge_cache.sqlite"),
        no_judge_cache: bool = _O(False, "--no-judge-cache", help="do not cache judge answers"),
        judge_workers: int = _O(8, help="concurrent judge requests"),
        em_aligned: float = _O(30.0, help="EM: aligned below this"),
        em_coherent: float = _O(50.0, help="EM: coherent above this"),
        em_inclusive: bool = _O(False, help="EM: aligned <= threshold (clarifying-EM convention) instead of <"),
        device: Optional[str] = device_option(),
        dtype: Optional[str] = dtype_option(),
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
                          device=device, dtype=dtype, threads=threads or default_threads(), log=lambda m: console.print(f"[dim]{m}"))
        tables = result.by_step if hasattr(result, "by_step") else {None: result}
        for step, table in sorted(tables.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
            _print_summary(table, f"{metric} scores" + (f" at step {step}" if step is not None else ""))
        if hasattr(result, "timing"):
            console.print({"timing": result.timing()})
        if out:
            console.print(f"wrote {out}")
