"""A study's predicted time before it runs (``emprobe study --dry-run``), from the cost model that
``benchmarks/bench_scaling.py`` fits and stores in ``emprobe/studies/cost_model.json``.

Each part of a study costs time linear in the work it does, and the work is counted from the config:

* fine-tuning (stages ``setup`` + ``finetune``): ``start + (c_train * train_tokens + c_val * val_tokens) / workers``
  (tokens of every run's training batches, each padded to its longest row (:func:`expected_longest`), and of
  its length-sorted validation passes; ``workers`` runs side by side);
* margins: ``load + c_prompt * prompt_tokens + c_ref * reference_tokens`` over what the study scores
  (:mod:`emprobe.studies.plan`, equal checkpoints counted once);
* every other stage: its time measured on the benchmark's reference study, scaled to the config's questions
  (:func:`stage_basis`): the causal checks (patch, steer, ablate) in proportion to the causal questions they
  score (each question runs every variance-matched control); the others taken as half fixed (loading models)
  and half in proportion to the off-domain questions (a split read off the fast preset and the demo, 8 and 30
  questions: their stage times grow 1.7-2.6x for 3.75x the questions).

The coefficients are per model (the benchmark fits SmolLM2-135M and Qwen2.5-Coder-0.5B; another model scales the
nearest fitted one by parameter count) and belong to the machine the benchmark ran on (recorded in the file with
its thread count); the benchmark also reports the fitted exponent of each axis (questions, pairs, checkpoints,
runs, seeds, steps), which the linear parts reproduce. Tokens are counted with the model's tokenizer when it is on
disk (a prepared built-in model or a local directory), else estimated at 4 characters a token.

Limit: the coefficients come from the fast preset's short examples (≤ 128 tokens); per token, long examples cost
more: the insecure-code organism (Qwen2.5-Coder-0.5B, 234-244 tokens a mean example, up to 768) fine-tuned in
753 s where 479 s were predicted (1.57x; its margins: 74 s measured, 77 s predicted)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from emprobe.errors import ConfigError

MODEL_FILE = Path(__file__).with_name("cost_model.json")
#: the parts of a study the model predicts, in order (stages not listed under "stages" in the file cost nothing)
PARTS = ("finetuning", "margins")
FEATURES = {"finetuning": ("one", "train_per_worker", "val_per_worker"),
            "margins": ("one", "prompt_tokens", "ref_tokens")}


@dataclass(frozen=True)
class StudyWork:
    """The work a study does, counted from its config."""

    model: str
    runs: int
    workers: int
    train_tokens: float
    val_tokens: float
    prompt_tokens: float
    ref_tokens: float
    scored_checkpoints: int
    stages: tuple[str, ...]

    def features(self, part: str) -> dict[str, float]:
        f = {"one": 1.0, "train_per_worker": self.train_tokens / self.workers,
             "val_per_worker": self.val_tokens / self.workers, "prompt_tokens": self.prompt_tokens,
             "ref_tokens": self.ref_tokens}
        return {k: f[k] for k in FEATURES[part]}

    def seconds(self, coef: dict[str, float], part: str) -> float:  # part's time under its coefficients coef
        return sum(coef[k] * v for k, v in self.features(part).items())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@lru_cache(maxsize=8)
def _chat(model: str):
    """The model's :class:`~emprobe.models.ChatFormatter` when its tokenizer is on disk, else ``None``."""
    from emprobe.models import ModelSpec
    from emprobe.models.cache import cache_dir, is_prepared

    spec = ModelSpec.coerce(model)
    path = cache_dir(spec.name) if spec.is_builtin and is_prepared(spec.name) else Path(spec.name).expanduser()
    if not path.is_dir():
        return None
    from transformers import AutoTokenizer

    from emprobe.models.chat import ChatFormatter

    try:
        return ChatFormatter(AutoTokenizer.from_pretrained(str(path), local_files_only=True), model_name=model)
    except Exception:  # noqa: BLE001 - no usable tokenizer or chat template: estimate from characters instead
        return None


def _length(chat, messages: list[dict[str, str]], response: str | None = None) -> tuple[int, int]:
    """``(prompt tokens, response tokens)``."""
    if chat is None:
        chars = sum(len(m["content"]) for m in messages)
        return 30 + chars // 4, (len(response) // 4 + 1) if response is not None else 0
    if response is None:
        return len(chat.prompt_ids(messages)), 0
    ids, n = chat.prompt_response_ids(messages, response)
    return n, len(ids) - n


@lru_cache(maxsize=32)
def _example_tokens(model: str, data: str, max_length: int, batch_size: int = 1) -> float:
    """Tokens per example of ``data`` as a batch of ``batch_size`` runs them (prompt + response, capped at
    ``max_length``): the mean length for 1, else the expected length of the longest of ``batch_size`` random
    examples, since each training batch is padded to its longest row (data of uneven lengths, e.g. code, costs
    far more than its mean)."""
    from emprobe.data import load_chat_dataset

    chat = _chat(model)
    ds = load_chat_dataset(data)
    return expected_longest([min(max_length, sum(_length(chat, ex.prompt_messages, ex.response))) for ex in ds],
                            batch_size)


def expected_longest(sizes: Sequence[float], batch_size: int) -> float:
    """The expected longest of ``batch_size`` sizes drawn at random (with replacement) from ``sizes``; their mean
    for a batch of 1."""
    xs, n = sorted(sizes), len(sizes)
    # P(longest <= the i-th shortest) = (i / n) ** batch_size
    return sum(x * (((i + 1) / n) ** batch_size - (i / n) ** batch_size) for i, x in enumerate(xs))


def _finetune_work(cfg, threads: int) -> tuple[int, int, float, float]:
    from emprobe.finetuning.validation import MIN_EXAMPLES
    from emprobe.studies.cells import cells

    t = cfg.training
    runs = cells(cfg)
    n_ckpt = len(t.checkpoints())
    pool = t.val_examples
    n_val = pool if getattr(t, "val_ci", None) is None else min(pool, MIN_EXAMPLES)
    train = val = 0.0
    for c in runs:
        train += t.steps * t.batch_size * _example_tokens(cfg.model, c.data, t.max_length, t.batch_size)
        val += (n_ckpt - 1) * n_val * _example_tokens(cfg.model, c.data, t.max_length)  # length-sorted batches
    for data in {c.data for c in runs}:  # step 0: the whole held-out pool, once per dataset
        val += pool * _example_tokens(cfg.model, data, t.max_length)
    return len(runs), max(1, min(threads, len(runs))), train, val


@lru_cache(maxsize=8)
def _off_domain(path: str, n_questions: int | None, n_references: int):
    """The off-domain questions a study scores (loaded once per dry run: the margins and the other stages count
    them alike)."""
    from emprobe.data import load_questions

    return load_questions(path).with_references().subset(n_questions, n_references, 1)


def _scored_questions(cfg):
    q = cfg.questions
    return _off_domain(q.off_domain, q.n_questions, q.n_references)


def _margin_work(cfg) -> tuple[int, float, float]:
    from emprobe.studies.plan import expected_duplicates, margin_plan

    qs = _scored_questions(cfg)
    chat = _chat(cfg.model)
    per_q = []
    for x in qs:
        msgs = x.messages(0)
        refs = [[_length(chat, msgs, r)[1] for r in (a, m)]
                for a, m in zip(x.aligned_references, x.misaligned_references)]
        per_q.append((_length(chat, msgs)[0], [sum(r) for r in refs]))
    jobs = margin_plan(cfg)
    dup = expected_duplicates(cfg, jobs)
    prompt = ref = 0.0
    for j in jobs:
        if j in dup:
            continue
        for p_len, pair_lens in per_q:
            prompt += p_len
            ref += sum(pair_lens[: j.pairs or len(pair_lens)])
    return len(jobs) - len(dup), prompt, ref


def study_work(cfg, threads: int | None = None) -> StudyWork:
    """Count the work of study config ``cfg`` (a :class:`~emprobe.studies.StudyConfig`)."""
    from emprobe.finetuning.executors import default_threads

    threads = threads or cfg.threads or default_threads()
    runs, workers, train, val = _finetune_work(cfg, threads)
    n_scored, prompt, ref = _margin_work(cfg)
    return StudyWork(cfg.model, runs, workers, train, val, prompt, ref, n_scored, tuple(cfg.stages))


# ------------------------------------------------------------------------------------------------ the model
def load_cost_model(path: str | Path | None = None) -> dict[str, Any]:
    p = Path(path) if path else MODEL_FILE
    if not p.is_file():
        raise ConfigError(f"{p}: no cost model (run benchmarks/bench_scaling.py to fit one)")
    return json.loads(p.read_text())


def _params(model: str) -> float | None:
    """Parameter count of ``model`` from its ``config.json`` when it is on disk."""
    from emprobe.models import ModelSpec
    from emprobe.models.cache import cache_dir, is_prepared

    spec = ModelSpec.coerce(model)
    path = cache_dir(spec.name) if spec.is_builtin and is_prepared(spec.name) else Path(spec.name).expanduser()
    files = list(path.glob("*.safetensors")) if path.is_dir() else []
    return sum(f.stat().st_size for f in files) / 4 if files else None  # float32 weights: 4 bytes each


def _coefficients(cm: dict[str, Any], model: str) -> tuple[dict[str, Any], float, str]:
    """``(coefficients, scale, fitted model used)``: exact for a fitted model, else the nearest by size scaled."""
    fitted = cm["models"]
    if model in fitted:
        return fitted[model], 1.0, model
    size = _params(model)
    if size is None:
        name = next(iter(fitted))
        return fitted[name], 1.0, name
    name = min(fitted, key=lambda m: abs(math.log(size / fitted[m]["params"])))
    return fitted[name], size / fitted[name]["params"], name


def predict(cfg, cost_model: dict[str, Any] | None = None, threads: int | None = None) -> dict[str, Any]:
    """Predicted seconds per part of study ``cfg`` (``finetuning``, ``margins``, each other enabled stage) and in
    all, with the work counted (see the module docstring)."""
    cm = cost_model or load_cost_model()
    work = study_work(cfg, threads)
    coef, scale, used = _coefficients(cm, cfg.model)
    parts: dict[str, float] = {}
    for part in PARTS:
        c = coef[part]
        parts[part] = scale * work.seconds(c, part)
    basis, ref = stage_basis(cfg), coef.get("stage_basis")
    for stage, seconds in coef.get("stages", {}).items():
        if stage in cfg.stages:
            parts[stage] = scale * seconds * _stage_factor(stage, basis, ref)
    return {"seconds": parts, "total_seconds": sum(parts.values()), "work": work.to_dict(), "fitted_model": used,
            "scale": scale, "machine": cm.get("machine", {}), "fitted_example_tokens": coef.get("example_tokens")}


CAUSAL_STAGES = ("patch", "steer", "ablate")


def stage_basis(cfg) -> dict[str, int]:
    """What the stages besides fine-tuning and margins grow with: the off-domain questions scored and the causal
    questions among them (the benchmark stores its reference study's in the cost model)."""
    n = len(_scored_questions(cfg))
    return {"questions": n, "causal": cfg.questions.causal_count(n)}


def _stage_factor(stage: str, basis: dict[str, int], ref: dict[str, int] | None) -> float:
    """How much longer ``stage`` takes at ``basis`` than at the reference's ``ref`` (1 when ``ref`` is unknown)."""
    if not ref:
        return 1.0
    if stage in CAUSAL_STAGES:
        return basis["causal"] / max(ref["causal"], 1)
    return 0.5 + 0.5 * basis["questions"] / max(ref["questions"], 1)


def describe(cfg, prediction: dict[str, Any]) -> list[str]:
    """The dry run's lines: what the study trains and scores, and its predicted time per part."""
    from emprobe.studies.pipeline import fmt_seconds

    w, m, t = prediction["work"], prediction["machine"], cfg.training
    q = cfg.questions
    fitted = prediction.get("fitted_model", cfg.model)
    lines = [f"study {cfg.preset} on {cfg.model}: {w['runs']} fine-tuning runs x {t.steps} steps (batch {t.batch_size}, "
             f"{len(t.checkpoints())} checkpoints each), {w['workers']} side by side",
             f"margins: {q.n_questions or 'all'} questions x {q.n_references} pair(s), {w['scored_checkpoints']} models "
             f"scored ({w['prompt_tokens']:,.0f} prompt + {w['ref_tokens']:,.0f} reference tokens)"]
    if prediction.get("seconds") is None:
        return lines + [f"no predicted time: no cost model fitted here ({MODEL_FILE.name}; fit one with "
                        f"benchmarks/bench_scaling.py --write-model {MODEL_FILE})"]
    lines.append(f"predicted time (cost model fitted on {m.get('date', '?')}, {m.get('threads', '?')} threads of "
                 f"{m.get('cpus', '?')} CPUs" + (f"; {cfg.model} scaled from {fitted} by parameter count x"
                                                f"{prediction['scale']:.2f}" if fitted != cfg.model else "") + "):")
    lines += [f"  {part:<11} {fmt_seconds(s):>7}" for part, s in prediction["seconds"].items()]
    lines.append(f"  {'total':<11} {fmt_seconds(prediction['total_seconds']):>7}")
    fit_len, mine = prediction.get("fitted_example_tokens"), example_tokens(cfg, w["train_tokens"], w["runs"])
    if fit_len and mine > LONG_EXAMPLES * fit_len:
        lines.append(f"caution: its training batches run {mine:.0f} tokens an example (padded), the cost model was "
                     f"fitted at <= {fit_len:.0f}: longer examples cost more per token (see emprobe.studies.cost), so "
                     "fine-tuning will likely take longer than predicted")
    return lines


LONG_EXAMPLES = 1.5  # a study whose padded examples are this many times the fitted ones gets a caution


def example_tokens(cfg, train_tokens: float, runs: int) -> float:
    """Padded tokens per training example of study ``cfg`` (its work's ``train_tokens`` over ``runs``)."""
    return train_tokens / max(1, runs * cfg.training.steps * cfg.training.batch_size)


def dry_run(cfg, threads: int | None = None, cost_model: str | Path | None = None) -> list[str]:
    """What ``emprobe study --dry-run`` prints: the work counted from ``cfg`` and the predicted time per part from
    ``cost_model`` (a file :func:`load_cost_model` reads; default the package's copy, when one has been fitted:
    without it the work alone)."""
    if cost_model is None and not MODEL_FILE.is_file():
        return describe(cfg, {"work": study_work(cfg, threads).to_dict(), "machine": {}, "seconds": None})
    return describe(cfg, predict(cfg, load_cost_model(cost_model), threads))
