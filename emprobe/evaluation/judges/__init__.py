"""LLM judges behind one interface: an OpenAI-compatible HTTP judge and a local HF judge."""

from __future__ import annotations

from emprobe.errors import ConfigError
from emprobe.evaluation.judges.base import (
    DEFAULT_PROMPTS, METRICS, Judge, JudgeError, JudgePrompts, judge_samples, render_prompt,
)
from emprobe.evaluation.judges.cache import JudgeCache, default_cache_path
from emprobe.evaluation.judges.local_hf import LocalHFJudge
from emprobe.evaluation.judges.openai_http import OpenAIJudge, parse_top_logprobs


def make_judge(url: str | None = None, model: str | None = None, local: str | None = None,
               api_key_env: str = "OPENAI_API_KEY", cache=None, **kw) -> Judge:
    """An :class:`OpenAIJudge` (``url`` + ``model``) or a :class:`LocalHFJudge` (``local`` model spec)."""
    if local and (url or model):
        raise ConfigError("choose either a local judge or an HTTP judge (a URL / judge model name), not both")
    if local:
        return LocalHFJudge(local, **{k: v for k, v in kw.items() if k == "min_mass"})
    if not model:
        raise ConfigError("a judge needs `judge`: a judge model name (HTTP judge) or a local model (local HF judge)")
    from emprobe.evaluation.judges.openai_http import DEFAULT_URL

    return OpenAIJudge(model, url or DEFAULT_URL, api_key_env=api_key_env, cache=cache, **kw)


__all__ = [
    "DEFAULT_PROMPTS", "METRICS", "Judge", "JudgeCache", "JudgeError", "JudgePrompts", "LocalHFJudge",
    "OpenAIJudge", "default_cache_path", "judge_samples", "make_judge", "parse_top_logprobs", "render_prompt",
]
