"""emprobe: a mechanistic toolkit for studying emergent misalignment (EM).

Stages (data flows one way; no stage imports a later one)::

    models -> finetuning -> evaluation -> probes -> analysis -> report -> studies   (cli on top)
      data (question sets, chat datasets, built-in data) feeds every stage

(``docs/architecture.md`` draws them and names the one place for each concern.)

Conventions used by every API that takes a layer or a position:

* layer ``l`` is the residual stream *after* decoder block ``l`` (0-based), i.e. the block's own
  output = TransformerLens ``blocks.{l}.hook_resid_post`` = HF ``hidden_states[l + 1]``, except for the
  last layer, where HF's last hidden state has already gone through the final norm;
* positions: ``last_prompt`` (last token of the chat-templated prompt, generation header included),
  ``prompt_mean`` and ``response_mean``.
"""

__version__ = "0.1.0"

from emprobe.errors import EmprobeError  # noqa: E402

#: ``ep.NAME`` -> "module:attribute"; imported on first use so ``import emprobe`` stays fast.
_API = {
    # loading
    "load_model": "emprobe.models:load_model", "load_questions": "emprobe.data:load_questions",
    "load_dataset": "emprobe.data:load_chat_dataset", "load_prompts": "emprobe.probes:load_prompts",
    "load_run": "emprobe.finetuning:load_run", "load_results": "emprobe.evaluation.external:load_results", "Direction": "emprobe.probes:Direction",
    "ActivationStore": "emprobe.probes:ActivationStore", "FinetuneConfig": "emprobe.finetuning:FinetuneConfig",
    # stages
    "finetune": "emprobe.finetuning:finetune", "evaluate": "emprobe.evaluation:evaluate",
    "extract": "emprobe.probes:extract", "fit_direction": "emprobe.probes:fit_direction",
    "intervene": "emprobe.probes.interventions:intervene",
    # analyses (each returns a typed Result)
    "track": "emprobe.analysis.track:track", "priors": "emprobe.analysis.priors:priors", "overlap": "emprobe.analysis.overlap:overlap",
    "dynamics": "emprobe.analysis.dynamics:dynamics", "monitor": "emprobe.analysis.monitor:monitor", "patch": "emprobe.analysis.patch:patch",
    "steer": "emprobe.analysis.steer:steer", "ablate": "emprobe.analysis.ablate:ablate", "Result": "emprobe.result:Result",
    "Verdict": "emprobe.result:Verdict", "explain": "emprobe.analysis.explain:explain",
    "margins": "emprobe.analysis.margins:margins",
    "consistency": "emprobe.analysis.consistency:consistency",
    "mitigations": "emprobe.analysis.mitigations:mitigations",
    "diff": "emprobe.analysis.diff:diff", "screen": "emprobe.analysis.screen:screen",
    # studies
    "study": "emprobe.studies:study", "demo": "emprobe.studies:demo", "StudyConfig": "emprobe.studies:StudyConfig",
    "StudyResult": "emprobe.studies:StudyResult",
}

__all__ = ["EmprobeError", "__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'emprobe' has no attribute {name!r}")
    import importlib

    module, attr = _API[name].split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
