"""Activation extraction with the default (hooks) backend: padding, positions, early stop, store, errors."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from emprobe.errors import ConfigError, DataError
from emprobe.models import decoder_layers, load_model
from emprobe.probes import ActivationStore, PromptSet, extract, load_prompts
from emprobe.probes.backends import get_backend
from emprobe.probes.interventions import add_vector, intervene, replace_where
from emprobe.probes.tokens import encode, make_batches
from probes_support import run_cli


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir), log=lambda *a: None)


@pytest.fixture(scope="module")
def chat_items():
    """Five real conversations of different lengths (prompt + response)."""
    return load_prompts("builtin:risky-finance", limit=5)


def _full_sequence(lm, item, layers):
    """Reference: an unbatched forward keeping every position of every requested block output."""
    e = encode(lm.require_chat(), item.messages, item.response)
    seen = {}
    hs = [decoder_layers(lm.model)[layer].register_forward_hook(
        lambda m, a, o, layer=layer: seen.__setitem__(layer, o[0] if isinstance(o, tuple) else o)) for layer in layers]
    with torch.no_grad():
        lm.model(torch.tensor([e.ids]))
    for h in hs:
        h.remove()
    n = e.n_prompt
    return {"last_prompt": torch.stack([seen[la][0, n - 1] for la in layers]),
            "prompt_mean": torch.stack([seen[la][0, :n].mean(0) for la in layers]),
            "response_mean": torch.stack([seen[la][0, n:].mean(0) for la in layers])}


@pytest.mark.parametrize("side", ["right", "left"])
def test_batched_padding_matches_unbatched_forward(smollm2, chat_items, side):
    layers = [0, 14, 29]
    store = extract(smollm2, chat_items, layers=layers, positions="auto", batch_size=5, padding_side=side)
    lens = {len(encode(smollm2.chat, it.messages, it.response).ids) for it in chat_items}
    assert len(lens) > 1, "the prompts must differ in length for padding to matter"
    assert store.positions == ["last_prompt", "prompt_mean", "response_mean"]
    for i, it in enumerate(chat_items):
        want = _full_sequence(smollm2, it, layers)
        for p in store.positions:
            got = store.tensors[p][i]
            scale = want[p].abs().max()
            assert (got - want[p]).abs().max() / scale < 1e-5, (side, p, it.uid)


def test_right_padding_gather_is_not_column_minus_one(smollm2, chat_items):
    """Guard against the classic bug: with right padding the last column is padding for shorter rows."""
    enc = [encode(smollm2.chat, it.messages, None) for it in chat_items]
    b = make_batches(enc, 5, smollm2.tokenizer.pad_token_id, "right")[0]
    short = int(torch.argmin(b.n_prompt))
    assert b.n_prompt[short] < b.width
    assert b.input_ids[short, b.start[short] + b.n_prompt[short] - 1] == enc[b.index[short]].ids[-1]


def test_stops_after_last_requested_layer(smollm2, chat_items):
    calls = {"later_block": 0, "lm_head": 0}
    blocks = decoder_layers(smollm2.model)
    h1 = blocks[6].register_forward_hook(lambda *a: calls.__setitem__("later_block", calls["later_block"] + 1))
    h2 = smollm2.model.lm_head.register_forward_hook(lambda *a: calls.__setitem__("lm_head", calls["lm_head"] + 1))
    try:
        store = extract(smollm2, chat_items.head(2), layers="0,5", positions="last_prompt", batch_size=2)
        assert calls == {"later_block": 0, "lm_head": 0}
        store_last = extract(smollm2, chat_items.head(2), layers="-1", positions="last_prompt", batch_size=2)
        assert calls["lm_head"] == 0  # even the last layer never reaches the final norm / head
    finally:
        h1.remove()
        h2.remove()
    assert store.layers == [0, 5] and store_last.layers == [29]
    assert all(not b._forward_hooks for b in blocks[:8])  # our hooks are gone


def test_interventions_add_and_replace(tiny, chat_items):
    items = chat_items.head(2)
    enc = [encode(tiny.chat, it.messages, it.response) for it in items]
    batch = make_batches(enc, 2, tiny.tokenizer.pad_token_id, "left")[0]
    be = get_backend("hooks", tiny)
    base = be.read(batch, [0, 1], ["last_prompt", "response_mean"])
    v = torch.randn(tiny.d_model)
    with intervene(tiny.model, {0: add_vector(v, 2.0)}):  # reads inside intervene see its edits
        added = be.read(batch, [0, 1], ["last_prompt", "response_mean"])
    torch.testing.assert_close(added["last_prompt"][:, 0], base["last_prompt"][:, 0] + 2 * v)
    torch.testing.assert_close(added["response_mean"][:, 0], base["response_mean"][:, 0] + 2 * v)
    assert (added["last_prompt"][:, 1] - base["last_prompt"][:, 1]).abs().max() > 1e-3  # flows downstream
    values = v.expand(batch.size, batch.width, -1)
    with intervene(tiny.model, {0: replace_where(values, batch.mask("last_prompt"))}):
        rep = be.read(batch, [0], ["last_prompt", "response_mean"])
    torch.testing.assert_close(rep["last_prompt"][:, 0], v.expand(2, -1))
    torch.testing.assert_close(rep["response_mean"][:, 0], base["response_mean"][:, 0])  # other span untouched
    torch.testing.assert_close(be.read(batch, [0, 1], ["last_prompt"])["last_prompt"], base["last_prompt"])  # gone


def test_store_roundtrip_and_labelled_access(tiny, tmp_path):
    ps = load_prompts("builtin:em-core", contrast="references", limit=12)
    store = extract(tiny, ps, layers="all", positions="last_prompt,response_mean", batch_size=4)
    store.save(tmp_path / "s")
    back = ActivationStore.load(tmp_path / "s")
    assert back.layers == [0, 1] and back.positions == ["last_prompt", "response_mean"]
    for p in back.positions:
        assert torch.equal(back.tensors[p], store.tensors[p])
    m = back.manifest
    assert m["model"]["name"] == str(tiny.spec.name) and m["model"]["adapter"] is None
    assert m["prompt_ids"] == [it.uid for it in ps] == back.uids
    assert m["prompt_set_sha256"] == ps.sha256 and m["emprobe_version"] and m["model"]["dtype"] == "float32"
    assert back.get("response_mean", -1).shape == (12, tiny.d_model)
    assert list(back.labels) == [it.label for it in ps] and list(back.groups) == [it.question_id for it in ps]
    with pytest.raises(ConfigError, match="stored layers"):
        back.get("last_prompt", 5)
    with pytest.raises(ConfigError, match=r"holds emprobe output \(activation_store\); pass `overwrite`"):
        store.save(tmp_path / "s")
    (tmp_path / "s" / "prompts.jsonl").unlink()
    with pytest.raises(DataError, match="no prompts.jsonl"):
        ActivationStore.load(tmp_path / "s")


def test_store_compatibility_refuses_mixing(tiny, smollm2):
    a = load_prompts("builtin:em-core", limit=3)
    b = load_prompts("builtin:em-core", limit=4)
    s_tiny = extract(tiny, a, layers="0", positions="last_prompt")
    s_tiny_b = extract(tiny, b, layers="0", positions="last_prompt")
    s_small = extract(smollm2, a, layers="0", positions="last_prompt")
    with pytest.raises(DataError, match="different models"):
        s_tiny.check_compatible(s_small)
    with pytest.raises(DataError, match="different prompt sets"):
        s_tiny.check_compatible(s_tiny_b)
    s_tiny.check_compatible(s_tiny_b, same_prompts=False)
    adapted = extract(tiny, a, layers="0", positions="last_prompt", model_info={"adapter": "ckpt/step-000025"})
    s_tiny.check_compatible(adapted)  # same base, same prompts: a checkpoint comparison is allowed
    with pytest.raises(DataError, match="different adapters"):
        s_tiny.check_compatible(adapted, same_adapter=True)


def test_extraction_errors(tiny, smollm2):
    prompts_only = load_prompts("builtin:em-core", limit=2)
    with pytest.raises(ConfigError, match=r"valid layers are 0\.\.29"):
        extract(smollm2, prompts_only, layers="30")
    with pytest.raises(ConfigError, match="response_mean needs responses"):
        extract(tiny, prompts_only, layers="0", positions="response_mean")
    with pytest.raises(ConfigError, match="unknown position"):
        extract(tiny, prompts_only, layers="0", positions="last_token")
    with pytest.raises(DataError, match="empty"):
        extract(tiny, PromptSet([]), layers="0")
    broken = dataclasses.replace(tiny, model=copy.deepcopy(tiny.model))
    with torch.no_grad():
        decoder_layers(broken.model)[1].mlp.down_proj.weight[0, 0] = float("nan")
    with pytest.raises(DataError, match=r"non-finite activations .* layer 1"):
        extract(broken, prompts_only, layers="all", positions="last_prompt")


def test_extract_command_skips_finished_work(tiny_model_dir, tmp_path):
    from emprobe.cli.probes import extract_to_disk

    logs: list[str] = []
    kw = dict(layers="all", positions="last_prompt", limit=3, progress=False, log=logs.append)
    first = extract_to_disk(str(tiny_model_dir), "builtin:em-core", tmp_path / "st", **kw)
    again = extract_to_disk(str(tiny_model_dir), "builtin:em-core", tmp_path / "st", **kw)
    assert "up to date" in logs[-1] and again.sha256 == first.sha256
    with pytest.raises(ConfigError, match="different extraction"):
        extract_to_disk(str(tiny_model_dir), "builtin:em-core", tmp_path / "st", **{**kw, "layers": "0"})
    third = extract_to_disk(str(tiny_model_dir), "builtin:em-core", tmp_path / "st", overwrite=True, **{**kw, "layers": "0"})
    assert third.layers == [0] and ActivationStore.load(tmp_path / "st").layers == [0]


def test_cli_extract_and_error_line(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "cli_store"
    assert run_cli(["extract", "--model", str(tiny_model_dir), "--prompts", "builtin:risky-finance", "--limit", "4",
                    "--layers", "0,1", "--out", str(out), "--no-progress", "--batch-size", "3",
                    "--padding", "left"]) == 0
    st = ActivationStore.load(out)
    assert st.positions == ["last_prompt", "prompt_mean", "response_mean"] and st.n_prompts == 4
    assert st.manifest["extraction"]["padding_side"] == "left"
    assert run_cli(["extract", "--model", str(tiny_model_dir), "--prompts", "builtin:em-core", "--layers", "7",
                    "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # earlier lines: transformers' loading bar
    assert err.startswith("error: unknown layer 7 in --layers: valid layers are 0..1")


def test_extract_takes_a_plain_list_of_items(tiny_model_dir):
    from emprobe.models import load_model

    lm = load_model(str(tiny_model_dir), log=None)
    ps = load_prompts("builtin:em-core", limit=3)
    a = extract(lm, list(ps), layers="0", positions="last_prompt")
    b = extract(lm, ps, layers="0", positions="last_prompt")
    assert torch.equal(a["last_prompt", 0], b["last_prompt", 0]) and a.uids == b.uids
