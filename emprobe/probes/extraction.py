"""``extract``: prompts in, an :class:`ActivationStore` out — the one extraction verb (``ep.extract``).

Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``, HF
``hidden_states[l + 1]`` except the last layer, where HF's last hidden state is after the final norm).
Positions: ``last_prompt`` (last token of the templated prompt incl. the generation header),
``prompt_mean``, ``response_mean`` (see :mod:`emprobe.probes.tokens`).

Items are tokenized with the model's chat template, sorted by length (longest first) into padded
batches, run through a backend that keeps only the requested layers and positions and stops after the
last requested layer, and scattered back into the original order.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

from emprobe.errors import DataError
from emprobe.models import fingerprint, resolve_layers
from emprobe.probes.backends import ActivationBackend, get_backend
from emprobe.probes.sources import LabelRule, PromptItem, PromptSet, load_prompts
from emprobe.probes.store import ActivationStore, new_manifest
from emprobe.probes.tokens import encode, make_batches, parse_positions


def model_record(lm, **overrides: Any) -> dict[str, Any]:
    """What a store records about its model: name, path, adapter, revision, dtype, fingerprint."""
    rec = {"name": lm.spec.name, "path": lm.path, "adapter": lm.spec.adapter, "revision": lm.spec.revision,
           "dtype": model_dtype(lm), "fingerprint": fingerprint(lm.model)}
    rec.update({k: v for k, v in overrides.items() if v is not None})
    return rec


def model_dtype(lm) -> str:
    """``"float32"``-style name of the loaded weights' dtype."""
    return str(next(lm.model.parameters()).dtype).removeprefix("torch.")


def _record(item, n_prompt: int, n_tokens: int) -> dict[str, Any]:
    rec = item.to_record()
    rec.update(n_prompt_tokens=n_prompt, n_response_tokens=n_tokens - n_prompt)
    return rec


def _check_finite(got: dict[str, torch.Tensor], uids: list[str], layers: list[int]) -> None:
    """Fail on the first batch holding NaN/inf, naming the prompt, layer and position."""
    for p, t in got.items():
        if not bool(torch.isfinite(t).all()):
            row, col = (int(x) for x in (~torch.isfinite(t)).nonzero()[0][:2])
            raise DataError(f"non-finite activations (NaN/inf) at layer {layers[col]}, position {p}, prompt "
                            f"{uids[row]!r} (try `dtype` float32)")


def extract(model: Any, prompts: Any, *, layers: str | Sequence[int] | None = "all",
            positions: str | Sequence[str] | None = "auto", contrast: str | None = None,
            personas: str = "builtin:personas", label_rule: LabelRule | None = None, limit: int | None = None,
            first_paraphrase: bool = False, adapter: str | Path | None = None,
            backend: str | ActivationBackend = "hooks", batch_size: int = 8, padding_side: str = "right",
            progress: bool = False, model_info: dict[str, Any] | None = None,
            out: str | Path | None = None, overwrite: bool = False) -> ActivationStore:
    """Activations of ``prompts`` in ``model`` at ``layers`` and ``positions``: an :class:`ActivationStore`.

    ``model``: a :class:`~emprobe.models.LoadedModel` (e.g. one yielded by ``Run.iter_models``), an alias, hub
    id or directory (loaded with ``adapter``). ``prompts``: a question set, chat JSONL, judged answers table,
    ``builtin:NAME``, a list of :class:`PromptItem` or a loaded :class:`PromptSet` / question set / chat
    dataset; ``contrast`` (``references`` | ``personas``) labels question prompts, ``label_rule`` judged ones,
    ``limit`` keeps the first items. ``layers``: ``"all"``, ``"0,5,-1"``, ``"10:20"`` or a list (layer ``l`` = output of block
    ``l``); ``positions``: ``"auto"`` (all the prompts allow) or names; ``backend``: ``hooks`` |
    ``transformerlens`` | ``nnsight`` or an instance (reuse one across checkpoints); ``model_info`` overrides
    fields of the recorded model (e.g. ``adapter``/``step`` when the adapter was switched in place). With
    ``out`` the store is also written there (a store emprobe wrote there before is replaced only with
    ``overwrite``; anything else at ``out`` is refused before any work).
    """
    from emprobe.validate import check_args

    check_args(model=model, adapter=adapter, batch_size=batch_size, limit=limit)  # swapped arguments name `model`
    if out is not None:
        from emprobe.outdir import check_out

        check_out(out, overwrite=overwrite)
    from emprobe.models import load_model

    lm = load_model(model, adapter=adapter, log=None)
    if isinstance(prompts, (list, tuple)) and all(isinstance(p, PromptItem) for p in prompts):
        prompts = PromptSet(list(prompts))  # a plain list of items (an empty one fails as an empty prompt set)
    ps = load_prompts(prompts, contrast=contrast, personas=personas, label_rule=label_rule, limit=limit,
                      first_paraphrase=first_paraphrase)
    chat = lm.require_chat()
    layer_ids = resolve_layers(layers, lm.n_layers)
    pos = parse_positions(positions, ps.has_responses)
    be = get_backend(backend, lm)
    encoded = [encode(chat, it.messages, it.response) for it in ps]
    for it, e in zip(ps, encoded):
        if it.response is not None and "response_mean" in pos and e.n_response < 1:
            raise DataError(f"prompt {it.uid!r}: the response has no tokens")
    t0 = time.perf_counter()
    tensors, n_padded = _forward(lm, ps, encoded, layer_ids, pos, be, batch_size, padding_side, progress)
    seconds = time.perf_counter() - t0
    n_real = sum(len(e.ids) for e in encoded)
    man = new_manifest(
        model=model_record(lm, **(model_info or {})), layers=layer_ids, positions=pos,
        prompts={"source": ps.source, "contrast": ps.contrast, "n": len(ps), "has_responses": ps.has_responses,
                 **ps.info},
        prompt_set_sha256=ps.sha256, prompt_ids=[it.uid for it in ps], tensors=tensors, d_model=lm.d_model,
        backend=be.name,
        extraction={"batch_size": batch_size, "padding_side": padding_side, "sorted_by_length": True,
                    "tokens": n_real, "padded_tokens": n_padded, "seconds": round(seconds, 3),
                    "tokens_per_second": round(n_real / max(seconds, 1e-9), 1)})
    store = ActivationStore(tensors, layer_ids, [_record(it, e.n_prompt, len(e.ids)) for it, e in zip(ps, encoded)],
                            man)
    if out is not None:
        store.save(out, overwrite=overwrite)
    return store


@torch.no_grad()
def _forward(lm, ps: PromptSet, encoded: list, layer_ids: list[int], pos: list[str], be: ActivationBackend,
             batch_size: int, padding_side: str, progress: bool) -> tuple[dict[str, torch.Tensor], int]:
    """``{position: [n_prompts, n_layers, d_model]}`` in the prompts' order, and the padded token count."""
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.tokenizer.eos_token_id
    batches = make_batches(encoded, batch_size, pad_id, padding_side)
    out = {p: torch.empty(len(ps), len(layer_ids), lm.d_model) for p in pos}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ps), desc=f"extract ({be.name})", unit="prompt")
    for b in batches:
        got = be.read(b, layer_ids, pos)
        _check_finite(got, [ps[i].uid for i in b.index], layer_ids)
        idx = torch.tensor(b.index)
        for p in pos:
            out[p][idx] = got[p]
        if bar is not None:
            bar.update(b.size)
    if bar is not None:
        bar.close()
    return out, sum(b.size * b.width for b in batches)
