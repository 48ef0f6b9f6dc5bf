"""Free-form answers to a question set: n samples per paraphrase, the question's system prompt honoured.

Backends give the same table: ``hf`` (batched HF ``generate``, any device) and ``vllm`` (used by
``backend="auto"`` when vLLM is importable and a GPU is present; it loads its own copy of the model from
``lm.path`` and applies the adapter through a ``LoRARequest``). Both feed the model emprobe's own chat
token ids, so the system prompt and template are identical across backends.

Output columns: ``question_id``, ``paraphrase_index``, ``sample_index``, ``system``, ``question`` (the
user message), ``answer``, ``n_tokens`` (new tokens), ``finished`` (ended with end-of-sequence rather
than at ``max_new_tokens``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from emprobe.errors import ConfigError

BACKENDS = ("auto", "hf", "vllm")
COLUMNS = ["question_id", "paraphrase_index", "sample_index", "system", "question", "answer", "n_tokens", "finished"]


@dataclass
class SamplingConfig:
    """How to sample answers. ``n_samples`` per paraphrase (``None``: each question's
    ``samples_per_paraphrase``); ``temperature`` 0 means greedy."""

    n_samples: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 8
    seed: int = 0
    all_paraphrases: bool = True
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.n_samples is not None and self.n_samples < 1:
            raise ConfigError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"need temperature >= 0 and 0 < top_p <= 1 (got {self.temperature}, {self.top_p})")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError("max_new_tokens and batch_size must be >= 1")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown sampling backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vllm_available() -> bool:
    """vLLM is importable and a CUDA device is visible."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def resolve_backend(backend: str) -> str:
    if backend == "auto":
        return "vllm" if vllm_available() else "hf"
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError("sampling backend 'vllm' requested but vllm is not installed (pip install vllm)")
    return backend


def sampling_plan(questions, config: SamplingConfig) -> list[dict[str, Any]]:
    """One row per answer to draw, without the answer (``question_id`` ... ``question``)."""
    rows = []
    for q in questions:
        n = config.n_samples or q.samples_per_paraphrase
        for p in range(len(q.paraphrases) if config.all_paraphrases else 1):
            for s in range(n):
                rows.append({"question_id": q.id, "paraphrase_index": p, "sample_index": s, "system": q.system,
                             "question": q.paraphrases[p], "_messages": q.messages(p)})
    return rows


def sample_answers(lm, questions, config: SamplingConfig | None = None) -> pd.DataFrame:
    """Sample answers from ``lm`` (a :class:`~emprobe.models.LoadedModel`) to every question/paraphrase."""
    config = config or SamplingConfig()
    plan = sampling_plan(questions, config)
    convs = [r.pop("_messages") for r in plan]
    backend = resolve_backend(config.backend)
    if backend == "vllm":
        gens = VLLMSampler.for_model(lm).generate(convs, config, adapter=lm.spec.adapter)
    else:
        from emprobe.models.generation import generate_chat_details

        gens = generate_chat_details(lm, convs, config.max_new_tokens, config.temperature, config.top_p,
                                     config.seed, config.batch_size)
    df = pd.DataFrame(plan)
    df["answer"] = [g.text for g in gens]
    df["n_tokens"] = [g.n_tokens for g in gens]
    df["finished"] = [g.finished for g in gens]
    return df[COLUMNS]


class VLLMSampler:
    """vLLM offline engine for one base model; adapters are applied per call with a ``LoRARequest``.

    Prompts are passed as token ids from emprobe's chat formatter (``{"prompt_token_ids": ...}``), so
    vLLM sees exactly what the HF backend sees. Written against vLLM's documented ``LLM`` /
    ``SamplingParams`` / ``LoRARequest`` API; only used where vLLM is installed.
    """

    _engines: dict[str, "VLLMSampler"] = {}

    def __init__(self, lm, max_lora_rank: int = 64, **llm_kwargs: Any) -> None:
        from vllm import LLM

        self.lm = lm
        self.llm = LLM(model=lm.path, tokenizer=lm.path, dtype=lm.spec.dtype, enable_lora=True,
                       max_lora_rank=max_lora_rank, trust_remote_code=lm.spec.trust_remote_code, **llm_kwargs)
        self._lora_ids: dict[str, int] = {}

    @classmethod
    def for_model(cls, lm) -> "VLLMSampler":
        """One engine per base model path (a sweep reuses it for every checkpoint)."""
        if lm.path not in cls._engines:
            cls._engines[lm.path] = cls(lm)
        return cls._engines[lm.path]

    def generate(self, conversations, config: SamplingConfig, adapter: str | None = None) -> list:
        from vllm import SamplingParams

        from emprobe.models.generation import Generation

        lora = None
        if adapter:
            from vllm.lora.request import LoRARequest

            lid = self._lora_ids.setdefault(adapter, len(self._lora_ids) + 1)
            lora = LoRARequest(f"adapter-{lid}", lid, adapter)
        chat = self.lm.require_chat()
        prompts = [{"prompt_token_ids": chat.prompt_ids(c)} for c in conversations]
        # one request per answer, each with its own seed (a shared seed would repeat identical prompts' samples)
        params = [SamplingParams(n=1, temperature=config.temperature, top_p=config.top_p,
                                 max_tokens=config.max_new_tokens, seed=config.seed + i) for i in range(len(prompts))]
        outs = self.llm.generate(prompts, params, lora_request=lora)
        res = []
        for o in outs:
            c = o.outputs[0]
            res.append(Generation(c.text.strip(), len(c.token_ids), c.finish_reason == "stop"))
        return res
