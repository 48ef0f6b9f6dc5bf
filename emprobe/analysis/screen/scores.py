"""Each training example's projection difference on a misalignment direction, persona-vectors style.

Chen et al. (arXiv 2507.21509, "data screening") score a training example ``(x_i, y_i)`` against the response
the *base* model gives to the same prompt on its own, ``y'_i``::

    ΔP_i = (ā_ℓ(x_i, y_i) − ā_ℓ(x_i, y'_i)) · v̂_ℓ

where ``ā_ℓ(x, y)`` is the base model's activation at layer ``ℓ`` (residual stream after decoder block ``ℓ``)
averaged over the response tokens (``response_mean``: the response's tokens, end-of-turn included, under the chat
template) and ``v̂_ℓ`` the unit misalignment direction. A large ``ΔP_i`` means the example pushes the model
further along the direction than what it would have said anyway. ``y'_i`` is generated greedily here, so the score
is deterministic. ``baseline`` may instead be a chat dataset whose row ``i`` answers the same prompt (e.g. the
aligned control ``builtin:risky-finance-aligned``): cheaper, but then ``ΔP`` measures the distance from that
answer, not from the base model's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from emprobe.errors import DataError

POSITION = "response_mean"


def baseline_responses(lm, ds, baseline: Any, max_new_tokens: int, batch_size: int) -> list[str]:
    """``y'_i`` for every example: the base model's greedy answer (``baseline="generate"``), or row ``i`` of a chat
    dataset with the same prompts."""
    from emprobe.data import load_chat_dataset
    from emprobe.models.generation import generate_chat

    if baseline == "generate":
        return generate_chat(lm, [ex.prompt_messages for ex in ds], max_new_tokens, 0.0, batch_size=batch_size)
    other = load_chat_dataset(baseline)
    if len(other) != len(ds):
        raise DataError(f"baseline {baseline}: {len(other)} conversations, the data has {len(ds)} (rows must pair up)")
    for i, (a, b) in enumerate(zip(ds, other)):
        if a.prompt_messages != b.prompt_messages:
            raise DataError(f"baseline {baseline}: row {i + 1} has a different prompt from the data's row {i + 1}")
    return [ex.response for ex in other]


def response_means(lm, ds, responses: list[str], layer: int, batch_size: int):
    """An :class:`~emprobe.probes.ActivationStore` of ``response_mean`` at ``layer`` for each prompt + response."""
    from emprobe.probes import PromptItem, PromptSet, extract

    items = [PromptItem(f"ex-{i:05d}", f"ex-{i:05d}", tuple(ex.prompt_messages), r) for i, (ex, r)
             in enumerate(zip(ds, responses))]
    return extract(lm, PromptSet(items, getattr(ds, "source", "data")), layers=[layer], positions=[POSITION],
                   batch_size=batch_size)


def projection_differences(lm, ds, direction, layer: int, baseline: Any = "generate", max_new_tokens: int = 96,
                           batch_size: int = 8) -> pd.DataFrame:
    """One row per example (in data order): ``index, projection_diff, proj_response, proj_baseline, rank`` (1 =
    the largest ``ΔP``), ``n_response_tokens``, ``prompt``, ``response``, ``baseline_response``."""
    base_answers = baseline_responses(lm, ds, baseline, max_new_tokens, batch_size)
    proj = {}
    n_tokens = None
    for side, responses in (("response", [ex.response for ex in ds]), ("baseline", base_answers)):
        store = response_means(lm, ds, responses, layer, batch_size)
        proj[side] = direction.project(store, layer=layer, position=POSITION).astype(float)
        if side == "response":
            n_tokens = [r["n_response_tokens"] for r in store.records]
    if not (np.isfinite(proj["response"]).all() and np.isfinite(proj["baseline"]).all()):
        raise DataError("non-finite projections (NaN/inf) on the direction")
    df = pd.DataFrame({"index": np.arange(len(ds)), "projection_diff": proj["response"] - proj["baseline"],
                       "proj_response": proj["response"], "proj_baseline": proj["baseline"],
                       "n_response_tokens": n_tokens, "prompt": [_last_user(ex) for ex in ds],
                       "response": [ex.response for ex in ds], "baseline_response": base_answers})
    order = np.argsort(-df.projection_diff.to_numpy(), kind="stable")
    df.loc[order, "rank"] = np.arange(1, len(df) + 1)
    return df.astype({"rank": int})


def _last_user(ex) -> str:
    return next((m["content"] for m in reversed(ex.prompt_messages) if m["role"] == "user"), "")
