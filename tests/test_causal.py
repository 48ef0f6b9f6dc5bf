"""Patching, steering and ablation mechanics on a tiny Llama with a random LoRA adapter.

Checks known answers (self-patching changes nothing, α=0 is the clean margin, ablation leaves no component
along the direction) and that emprobe's hook patching matches an independent TransformerLens patch.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from emprobe.analysis.causal import ablation_edits, mean_margin, patch_table, steer_table
from emprobe.data import QuestionSet, load_questions
from emprobe.models import load_model
from emprobe.probes import Direction
from emprobe.probes.interventions import intervene, replace_where, scored_forward
from emprobe.probes.tokens import Encoded, make_batches


@pytest.fixture(scope="module")
def pair(tiny_model_dir, tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = load_model(str(tiny_model_dir))
    peft = get_peft_model(copy.deepcopy(base.model), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                                                 init_lora_weights=False))
    adapter = tmp_path_factory.mktemp("adapter") / "a"
    peft.save_pretrained(adapter)
    tuned = load_model(str(tiny_model_dir), adapter=adapter)
    qs = load_questions("builtin:em-core")
    return base, tuned, QuestionSet(qs.questions[:4], qs.source, qs.name)


def test_self_patch_is_a_no_op_and_controls_exist(pair):
    base, tuned, qs = pair
    table, ref = patch_table(base, tuned, qs, [0, 1], batch_size=4)
    assert ref["margin_base"] != pytest.approx(ref["margin_tuned"])
    assert set(table.direction) == {"base→tuned", "tuned→base"} and set(table.control) == {False, True}
    assert table.fraction_restored.notna().all()
    # patching a model with its own activations changes nothing
    same, _ = patch_table(tuned, tuned, qs, [1], spans=["prompt"], batch_size=4)
    assert np.isnan(same.fraction_restored).all()  # no gap to restore
    assert same.margin.to_numpy() == pytest.approx(np.full(len(same), ref["margin_tuned"]), abs=1e-5)


def test_hook_patching_matches_transformerlens(pair):
    from transformer_lens.model_bridge import TransformerBridge

    base, tuned, qs = pair
    chat = tuned.chat
    ids, n_prompt = chat.prompt_response_ids(qs[0].messages(0), qs[0].misaligned_references[0])
    (b,) = make_batches([Encoded(tuple(ids), n_prompt)], 1, 0, "right")
    layer = 0
    _, base_acts = scored_forward(base.model, b, capture=[layer])
    lp_hooks, _ = scored_forward(tuned.model, b, {layer: replace_where(base_acts[layer], b.mask("prompt"))})

    merged = copy.deepcopy(tuned.model).merge_and_unload()
    tl_base = TransformerBridge.boot_transformers(base.path, hf_model=copy.deepcopy(base.model),
                                                  tokenizer=base.tokenizer, device="cpu")
    tl_tuned = TransformerBridge.boot_transformers(base.path, hf_model=merged, tokenizer=base.tokenizer, device="cpu")
    toks = torch.tensor([ids])
    _, cache = tl_base.run_with_cache(toks, names_filter=lambda n: n == f"blocks.{layer}.hook_resid_post")
    src = cache[f"blocks.{layer}.hook_resid_post"]

    def put(resid, hook):
        resid[:, :n_prompt] = src[:, :n_prompt]
        return resid

    logits = tl_tuned.run_with_hooks(toks, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", put)])
    lp = torch.log_softmax(logits[0, n_prompt - 1:-1].float(), -1).gather(1, toks[0, n_prompt:, None]).mean()
    assert float(lp_hooks[0]) == pytest.approx(float(lp), abs=1e-4)


def test_steer_alpha_zero_is_clean_and_random_controls(pair):
    base, _, qs = pair
    d = Direction("mean_diff", [0, 1], torch.randn(2, base.d_model), "last_prompt", best_layer=1)
    table = steer_table(base, d, 1, [0.0, 4.0], qs, n_random=5, batch_size=4)
    clean, _ = mean_margin(base, qs, None, 4)
    assert table[table.alpha == 0].margin.to_numpy() == pytest.approx(np.full(6, clean), abs=1e-6)
    assert (table.kind == "random").sum() == 10
    rnd = table[table.kind == "random"].vector_norm
    assert rnd.to_numpy() == pytest.approx(np.full(10, float(d.vector(1).norm())), rel=1e-5)
    assert table[(table.kind == "direction") & (table.alpha == 4.0)].margin.iloc[0] != pytest.approx(clean)


def test_ablation_removes_the_component(pair):
    _, tuned, qs = pair
    d = Direction("mean_diff", [0, 1], torch.randn(2, tuned.d_model), "last_prompt", best_layer=1)
    chat = tuned.chat
    ids, n_prompt = chat.prompt_response_ids(qs[0].messages(0), qs[0].aligned_references[0])
    (b,) = make_batches([Encoded(tuple(ids), n_prompt)], 1, 0, "right")
    _, acts = scored_forward(tuned.model, b, ablation_edits(d, tuned.n_layers), capture=[0, 1])
    for layer in (0, 1):
        r = d.vector(layer)
        assert (acts[layer] @ r).abs().max() < 1e-4
    _, clean_acts = scored_forward(tuned.model, b, capture=[1])
    assert (clean_acts[1] @ d.vector(1)).abs().max() > 1e-2
    with intervene(tuned.model, {}):  # an empty context changes nothing
        lp, _ = scored_forward(tuned.model, b)
    assert torch.isfinite(lp).all()
