"""The verbs of ``import emprobe as ep`` that need more than their stage's own function.

One rule for every verb: each input may be a loaded object *or* a path / alias / ``builtin:NAME``
(every loader returns a loaded object unchanged), and options are keyword-only. Layer ``l`` is the
residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``); positions are
``last_prompt``, ``prompt_mean`` and ``response_mean``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from emprobe.errors import ConfigError


def finetune(model: Any = None, data: Any = None, *, out: str | Path, **options: Any):
    """Fine-tune ``model`` (alias, hub id, directory or :class:`~emprobe.models.LoadedModel`) on ``data``
    (``builtin:NAME`` or a chat JSONL) into the run directory ``out``; options are
    :class:`~emprobe.finetuning.FinetuneConfig` fields (``max_steps``, ``save_steps``, ``lr``, ``lora_r``, ...).
    Returns the :class:`~emprobe.finetuning.Run`. A loaded model is used by name: training works on its own copy."""
    from emprobe.finetuning import finetune as _finetune
    from emprobe.models import DEFAULT_MODEL, LoadedModel
    from emprobe.validate import check_args, path_arg

    check_args(model=model, **({"data": data} if data is not None else {}))
    path_arg(out, "out", "run directory")
    if isinstance(model, LoadedModel):
        if model.spec.adapter:
            raise ConfigError("`model` must be a base model, not a model with an adapter attached")
        model = str(model.path) if model.spec.name not in _aliases() else model.spec.name
    fields = {"model": model or DEFAULT_MODEL, "out": str(out), **options}
    if data is not None:
        fields["data"] = data if isinstance(data, str) else str(getattr(data, "source", data))
    return _finetune(**fields)


def _aliases() -> set[str]:
    from emprobe.models import BUILTIN_MODELS

    return set(BUILTIN_MODELS)


def extract(model: Any, prompts: Any, *, layers: str | Sequence[int] = "all",
            positions: str | Sequence[str] = "auto", contrast: str | None = None, adapter: str | None = None,
            backend: str = "hooks", batch_size: int = 8, first_paraphrase: bool = False,
            out: str | Path | None = None, overwrite: bool = False):
    """Activations of ``prompts`` (question set, chat JSONL, judged table or a loaded prompt set; ``contrast``
    ``references`` | ``personas`` for labelled question prompts) in ``model`` at ``layers`` and ``positions``.
    Returns an :class:`~emprobe.probes.ActivationStore` (written to ``out`` when given; a store emprobe wrote
    there before is replaced only with ``overwrite``)."""
    from emprobe.validate import check_args

    check_args(model=model, prompts=prompts, adapter=adapter, batch_size=batch_size)
    if out is not None:
        from emprobe.outdir import check_out

        check_out(out, overwrite=overwrite)
    from emprobe.models import load_model
    from emprobe.probes import extract_activations, load_prompts

    lm = load_model(model, adapter=adapter)
    ps = load_prompts(prompts, contrast=contrast, first_paraphrase=first_paraphrase)
    store = extract_activations(lm, ps, layers, positions=positions, backend=backend, batch_size=batch_size)
    if out is not None:
        store.save(out, overwrite=overwrite)
    return store


def fit_direction(store: Any, *, method: str = "mean_diff", position: str | None = None,
                  layers: str | Sequence[int] | None = None, n_splits: int = 5, n_random: int = 20, seed: int = 0,
                  out: str | Path | None = None, overwrite: bool = False, **params: Any):
    """Fit a misalignment :class:`~emprobe.probes.Direction` per layer on a labelled activation store
    (``method``: ``mean_diff`` | ``persona`` | ``logistic`` | ``pca``); its grouped cross-validated AUROC per
    layer against random directions is in ``direction.metrics`` and picks ``direction.best_layer``. With ``out``
    the direction is saved there (a direction emprobe wrote before is replaced only with ``overwrite``)."""
    from emprobe.validate import check_args

    check_args(store=store, n_splits=n_splits, n_random=n_random, seed=seed)
    if out is not None:
        from emprobe.outdir import check_out

        check_out(out, overwrite=overwrite)
    from emprobe.probes import ActivationStore, fit_probe

    res = fit_probe(ActivationStore.load(store), method, position, layers, n_splits=n_splits, n_random=n_random,
                    seed=seed, **params)
    if out is not None:
        res.direction.save(out, overwrite=overwrite)
    return res.direction
