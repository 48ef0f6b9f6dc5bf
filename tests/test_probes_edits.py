"""Edits through the backend interface: steering, directional ablation and patching written once run on the hooks,
nnsight and TransformerLens backends alike (full forwards and reads), and ``ActivationStore[pos, layer]``."""

from __future__ import annotations

import pytest
import torch

from emprobe.errors import ConfigError
from emprobe.probes import extract, get_backend, load_prompts
from emprobe.probes.interventions import add_vector, project_out, replace_where, scored_forward
from emprobe.probes.tokens import encode, make_batches


def _batch(lm, n: int = 3):
    ps = load_prompts("builtin:em-core", contrast="references", limit=n)
    chat = lm.require_chat()
    enc = [encode(chat, it.messages, it.response) for it in ps]
    return make_batches(enc, n, lm.tokenizer.pad_token_id or 0, "right")[0]


def _edits(lm, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    v, r = torch.randn(lm.d_model, generator=g), torch.randn(lm.d_model, generator=g)
    mid = lm.n_layers // 2
    return {"steer": {mid: add_vector(v, 4.0)},
            "ablate": {layer: project_out(r) for layer in range(lm.n_layers)},
            "both": {mid - 1: project_out(r), mid: [add_vector(v, -2.0), project_out(v)]}}


def test_nnsight_steering_and_ablation_equal_hooks_on_smollm2(smollm2):
    b = _batch(smollm2)
    hooks, nn = get_backend("hooks", smollm2), get_backend("nnsight", smollm2)
    real = b.mask("all")
    clean = scored_forward(hooks, b)[0]
    for name, edits in _edits(smollm2).items():
        lp_h, cap_h = scored_forward(hooks, b, edits, capture=[3, 20])
        lp_n, cap_n = scored_forward(nn, b, edits, capture=[3, 20])
        assert (lp_h - lp_n).abs().max() < 1e-4, name                   # response log-probs under the edit
        assert (lp_h - clean).abs().max() > 1e-3, name                   # ... which really changed them
        for layer in (3, 20):
            assert (cap_h[layer] - cap_n[layer])[real].abs().max() < 1e-4, (name, layer)
        reads = [be.read(b, [2, 15, 29], ["last_prompt", "response_mean"], edits) for be in (hooks, nn)]
        for p in reads[0]:
            assert (reads[0][p] - reads[1][p]).abs().max() < 1e-4, (name, p)
    assert (scored_forward(smollm2.model, b, _edits(smollm2)["steer"])[0] - scored_forward(
        hooks, b, _edits(smollm2)["steer"])[0]).abs().max() < 1e-6  # a module means forward hooks, as before


def test_transformerlens_edits_equal_hooks(tiny_model_dir):
    from emprobe.models import load_model

    lm = load_model(str(tiny_model_dir), log=None)  # its own copy: booting a bridge switches it to eager attention
    b = _batch(lm)
    tl = get_backend("transformerlens", lm)
    hooks = get_backend("hooks", lm)
    for name, edits in _edits(lm, seed=1).items():
        lp_h, cap_h = scored_forward(hooks, b, edits, capture=[0])
        lp_t, cap_t = scored_forward(tl, b, edits, capture=[0])
        assert (lp_h - lp_t).abs().max() < 1e-4, name
        assert (cap_h[0] - cap_t[0])[b.mask("all")].abs().max() < 1e-4, name
        r_h, r_t = (be.read(b, [0, 1], ["prompt_mean"], edits) for be in (hooks, tl))
        assert (r_h["prompt_mean"] - r_t["prompt_mean"]).abs().max() < 1e-4, name
    patched = {1: replace_where(torch.zeros(b.size, b.width, lm.d_model), b.mask("last_prompt"))}
    assert (scored_forward(hooks, b, patched)[0] - scored_forward(tl, b, patched)[0]).abs().max() < 1e-4
    with pytest.raises(ConfigError, match="unknown layer 9"):
        tl.logits(b, {9: add_vector(torch.zeros(lm.d_model))})


def test_store_indexing_like_a_tl_cache(tiny_model_dir):
    from emprobe.models import load_model

    lm = load_model(str(tiny_model_dir), log=None)
    store = extract(lm, "builtin:em-core", contrast="references", limit=6, positions="last_prompt,response_mean")
    assert store["last_prompt", 1].shape == (6, lm.d_model)
    assert torch.equal(store["response_mean", 0], store.get("response_mean", 0))
    assert store["last_prompt", [0, 1]].shape == (6, 2, lm.d_model) and store["last_prompt"].shape == (6, 2, lm.d_model)
    assert torch.equal(store["last_prompt", -1], store["last_prompt", 1])  # negative = from the model's last layer
    with pytest.raises(ConfigError, match="holds 2 positions"):
        store[1]
    one = extract(lm, "builtin:em-core", limit=4, positions="last_prompt", layers="1")
    assert torch.equal(one[1], one["last_prompt", 1])
    with pytest.raises(ConfigError, match="layer 0 is not in this store"):
        one[0]
