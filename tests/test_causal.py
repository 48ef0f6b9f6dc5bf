"""Patching, steering and ablation (``ep.patch`` / ``ep.steer`` / ``ep.ablate``) on a tiny Llama with a random LoRA.

Known answers on the real mechanics: self-patching changes nothing, α = 0 is the clean margin, ablation leaves
no component along the direction, hook patching matches an independent TransformerLens patch, a planted
fine-tune that is pure steering along ``v`` is undone by ablating ``v`` (beyond every random direction), and a
direction identical to a random control, or a patch control identical to the real patch, is flagged. The
findings / verdict logic is tested on planted numbers both ways (control wins / effect wins / wrong sign).
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from emprobe.analysis.ablate import AblateResult, ablate
from emprobe.analysis.patch import PatchResult, patch
from emprobe.analysis.steer import SteerResult, steer
from emprobe.analysis.causal import mean_margin, random_like
from emprobe.data import load_questions
from emprobe.models import decoder_layers, load_model
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
    return base, tuned, load_questions("builtin:em-core").subset(4, 1), adapter  # 4 questions x 1 pair


def _no_hooks(lm) -> bool:
    return all(not b._forward_hooks for b in decoder_layers(lm.model))


# ---- patch ---------------------------------------------------------------------------------------
def test_self_patch_is_a_no_op_and_controls_exist(pair):
    base, tuned, qs, _ = pair
    res = patch(base, tuned, qs, layers=[0, 1], spans=("last_prompt",), n_questions=None, batch_size=4)
    table = res.table
    assert isinstance(res, PatchResult) and res.margin_base != pytest.approx(res.margin_tuned)
    assert set(table.direction) == {"base→tuned", "tuned→base"} and set(table.control) == {False, True}
    assert table.fraction_restored.notna().all() and len(table) == 2 * 2 * 2
    # patching a model with its own activations changes nothing (the control, another item's, may)
    same = patch(tuned, tuned, qs, layers=[1], spans=["prompt"], n_questions=None, batch_size=4)
    assert np.isnan(same.table.fraction_restored).all()  # no gap to restore
    real = same.table[~same.table.control]
    assert real.margin.to_numpy() == pytest.approx(np.full(len(real), res.margin_tuned), abs=1e-5)
    assert np.isfinite(same.table.margin).all()


def test_patch_loads_an_adapter_dir_and_saves(pair, tiny_model_dir, tmp_path):
    base, tuned, qs, adapter = pair
    res = patch(str(tiny_model_dir), str(adapter), qs, layers="1", spans=("last_prompt",), n_questions=2,
                directions=("base→tuned",), batch_size=4)
    loaded = patch(base, tuned, qs, layers="1", spans=("last_prompt",), n_questions=2, directions=("base→tuned",),
                   batch_size=4)
    pd.testing.assert_frame_equal(res.table, loaded.table)
    assert res.meta["adapter"] == str(adapter) and res.n_questions == 2
    out = res.save(tmp_path / "p")
    summary = json.loads((out / "summary.json").read_text())
    for key in ("findings", "control", "uncertainty", "margin_base", "margin_tuned", "n_questions", "n_references",
                "gap_se", "layers", "spans", "model", "adapter", "verdict", "fraction_restored", "control_fraction"):
        assert key in summary, key
    assert summary["layers"] == [1] and (out / "table.parquet").is_file() and (out / "plot.png").is_file()


def test_patch_control_identical_to_the_real_patch_is_flagged(pair):
    """batch_size=1: the control's 'another item' is the item itself, so the control restores exactly as much."""
    base, tuned, qs, _ = pair
    res = patch(base, tuned, qs, layers=[0], spans=("prompt",), n_questions=2, directions=("base→tuned",),
                batch_size=1)
    n = res.numbers()
    assert n["control_fraction"] == pytest.approx(n["fraction_restored"], abs=1e-9) and n["control_beats_effect"]
    flags = res.findings()[: 2 if not n["gap_established"] else 1]  # the gap caveat, when due, comes first
    assert flags[-1].startswith("The control beats the effect")
    assert res.verdict().verdict in ("not supported", "inconclusive")


def test_hook_patching_matches_transformerlens(pair):
    from transformer_lens.model_bridge import TransformerBridge

    base, tuned, qs, _ = pair
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


def _patch_result(real: float, lo: float, hi: float, ctrl: float, gap_se: float = 0.01) -> PatchResult:
    rows = [{"direction": "base→tuned", "layer": layer, "span": "last_prompt", "control": c,
             "margin": 0.0, "fraction_restored": v, "ci_low": a, "ci_high": b}
            for layer, vals in ((3, (real, lo, hi, ctrl)), (6, (real / 2, lo / 2, hi / 2, ctrl / 2)))
            for c, (v, a, b) in ((False, vals[:3]), (True, (vals[3], np.nan, np.nan)))]
    return PatchResult(pd.DataFrame(rows), -0.20, 0.10, gap_se, 48, 192)


def test_patch_findings_control_beats_effect_planted():
    res = _patch_result(0.17, 0.05, 0.30, ctrl=0.42)  # the issue-14 case: control 0.42 vs real 0.17
    first = res.findings()[0]
    assert first.startswith("The control beats the effect") and "0.42" in first and "0.17" in first
    assert "layer 3" in first
    v = res.verdict()
    assert v.verdict == "not supported" and "layer 3" in v.claim and "0.42" in v.control and "[0.05, 0.30]" in v.uncertainty
    overlap = _patch_result(0.30, 0.10, 0.50, ctrl=0.20)  # control below the real value but inside its CI
    assert overlap.findings()[0].startswith("The control beats the effect") and "inside" in overlap.findings()[0]
    assert overlap.verdict().verdict == "inconclusive"


def test_patch_findings_effect_beats_control_planted():
    res = _patch_result(0.80, 0.60, 0.95, ctrl=0.10)
    assert res.findings()[0].startswith("The fine-tune moves the mean margin")
    assert not any("control beats" in f for f in res.findings())
    assert res.verdict().verdict == "supported" and res.numbers()["best_layer"] == 3
    weak = _patch_result(0.80, 0.60, 0.95, ctrl=0.10, gap_se=0.5)  # gap 0.30 is not > 2 SE
    assert weak.findings()[0].startswith("The fine-tune's gap is not established")
    assert weak.verdict().verdict == "inconclusive"


# ---- steer ---------------------------------------------------------------------------------------
def test_steer_alpha_zero_is_clean_and_random_controls(pair):
    base, _, qs, _ = pair
    d = Direction("mean_diff", [0, 1], torch.randn(2, base.d_model), "last_prompt", best_layer=1)
    res = steer(base, d, qs, layer=1, alphas=[0.0, 4.0], n_random=5, n_questions=None, n_samples=0, batch_size=4)
    table = res.table
    clean, _ = mean_margin(base, qs, None, 4)
    assert table[table.alpha == 0].margin.to_numpy() == pytest.approx(np.full(6, clean), abs=1e-6)
    assert (table.kind == "random").sum() == 10
    rnd = table[table.kind == "random"].vector_norm
    assert rnd.to_numpy() == pytest.approx(np.full(10, float(d.vector(1).norm())), rel=1e-5)
    assert table[(table.kind == "direction") & (table.alpha == 4.0)].margin.iloc[0] != pytest.approx(clean)
    assert isinstance(res, SteerResult) and len(res.findings()) >= 2 and res.verdict() is not None


def test_direction_steer_context_manager(pair):
    base, _, qs, _ = pair
    d = Direction("mean_diff", [0, 1], torch.randn(2, base.d_model), "last_prompt", best_layer=1)
    clean, _ = mean_margin(base, qs, None, 4)
    with d.steer(base, alpha=0.0):
        assert not _no_hooks(base)
        assert mean_margin(base, qs, None, 4)[0] == pytest.approx(clean, abs=1e-6)
    with d.steer(base, alpha=8.0, layer=0):
        steered = mean_margin(base, qs, None, 4)[0]
    assert steered != pytest.approx(clean, abs=1e-4)
    assert _no_hooks(base) and mean_margin(base, qs, None, 4)[0] == pytest.approx(clean, abs=1e-6)  # restored


def _steer_result(direction_margins, random_high) -> SteerResult:
    alphas = [-8.0, -4.0, 0.0, 4.0, 8.0]
    rows = [{"kind": "direction", "seed": 0, "alpha": a, "layer": 5, "margin": m, "vector_norm": 1.0}
            for a, m in zip(alphas, direction_margins)]
    rows += [{"kind": "random", "seed": i, "alpha": 8.0, "layer": 5, "margin": m, "vector_norm": 1.0}
             for i, m in enumerate(random_high)]
    return SteerResult(pd.DataFrame(rows), 5, True, "mean_diff", 5)


def test_steer_findings_both_ways_planted():
    rand = [-0.12, -0.10, -0.11, -0.09, -0.13]
    good = _steer_result([-0.3, -0.2, -0.1, 0.0, 0.1], rand)
    assert good.findings()[0].startswith("Steering along the mean_diff direction")
    assert good.verdict().verdict == "supported" and good.numbers()["beyond_random_band"]
    inside = _steer_result([-0.14, -0.13, -0.12, -0.11, -0.10], rand)  # monotonic but within the band at α=8
    assert inside.findings()[0].startswith("The control beats the effect") and "[-0.130, -0.090]" in inside.findings()[0]
    assert inside.verdict().verdict == "not supported"
    wrong = _steer_result([0.1, 0.0, -0.1, -0.2, -0.3], rand)
    assert wrong.findings()[0].startswith("The effect has the wrong sign") and wrong.verdict().verdict == "not supported"
    bumpy = _steer_result([-0.3, -0.1, -0.2, 0.0, 0.1], rand)
    assert bumpy.findings()[0].startswith("The effect is not monotonic") and bumpy.verdict().verdict == "inconclusive"


# ---- ablate --------------------------------------------------------------------------------------
def test_ablation_removes_the_component_and_restores(pair):
    _, tuned, qs, _ = pair
    d = Direction("mean_diff", [0, 1], torch.randn(2, tuned.d_model), "last_prompt", best_layer=1)
    chat = tuned.chat
    ids, n_prompt = chat.prompt_response_ids(qs[0].messages(0), qs[0].aligned_references[0])
    (b,) = make_batches([Encoded(tuple(ids), n_prompt)], 1, 0, "right")
    lp_clean, clean_acts = scored_forward(tuned.model, b, capture=[1])
    with d.ablate(tuned):
        _, acts = scored_forward(tuned.model, b, capture=[0, 1])
    for layer in (0, 1):
        assert (acts[layer] @ d.vector(layer)).abs().max() < 1e-4
    assert (clean_acts[1] @ d.vector(1)).abs().max() > 1e-2
    assert _no_hooks(tuned)
    lp_after, after = scored_forward(tuned.model, b, capture=[1])  # the model is restored afterwards
    torch.testing.assert_close(lp_after, lp_clean)
    torch.testing.assert_close(after[1], clean_acts[1])
    with intervene(tuned.model, {}):  # an empty context changes nothing
        lp, _ = scored_forward(tuned.model, b)
    assert torch.isfinite(lp).all()


def _steered_copy(base, v: torch.Tensor, alpha: float):
    """A planted 'fine-tune': the base model with ``alpha·v`` added after block 0 (a permanent hook)."""
    model = copy.deepcopy(base.model)
    decoder_layers(model)[0].register_forward_hook(lambda m, a, out: (out[0] + alpha * v, *out[1:])
                                                   if isinstance(out, tuple) else out + alpha * v)
    return dataclasses.replace(base, model=model)


def test_ablate_undoes_a_planted_steering_finetune(pair):
    base, _, qs, _ = pair
    torch.manual_seed(1)
    v = torch.randn(base.d_model)
    v = v / v.norm()
    clean = mean_margin(base, qs, None, 4)[0]
    alpha = max((8.0, -8.0), key=lambda a: mean_margin(_steered_copy(base, v, a), qs, None, 4)[0] - clean)
    planted = _steered_copy(base, v, alpha)
    d = Direction("planted", [0, 1], torch.stack([v, v]), "last_prompt", best_layer=0)
    res = ablate(base, planted, d, qs, heldout=qs, n_random=5, random_in_domain=False, n_questions=None, n_samples=0,
                 batch_size=4)
    n = res.numbers()
    assert isinstance(res, AblateResult) and n["rise"] > 0
    assert n["fraction_removed"] > 0.5 and n["fraction_removed"] > n["random_fraction_max"]
    assert not n["control_beats_effect"] and not n["wrong_sign"]
    assert res.findings()[0].startswith("The fine-tune moves the off-domain mean margin")
    assert res.verdict().verdict == "supported"
    # the known answer the other way: a direction that IS one of the random controls cannot beat them
    r0 = random_like(v, 1, 0)[0]  # what ablate draws first for a unit direction with seed 0
    same = Direction("random-like", [0, 1], torch.stack([r0, r0]), "last_prompt", best_layer=0)
    res2 = ablate(base, planted, same, qs, heldout=None, n_random=5, n_questions=None, n_samples=0, batch_size=4)
    n2 = res2.numbers()
    assert n2["control_beats_effect"] and n2["random_fraction_max"] >= n2["fraction_removed"] - 1e-6
    assert "The control beats the effect" in " ".join(res2.findings()[:2])
    assert res2.verdict().verdict == "not supported"


def _ablate_result(ablated: float, randoms: list[float]) -> AblateResult:
    rows = [{"kind": "none", "seed": 0, "off_domain_margin": 0.20, "in_domain_margin": 0.5},
            {"kind": "direction", "seed": 0, "off_domain_margin": ablated, "in_domain_margin": 0.4}]
    rows += [{"kind": "random", "seed": i, "off_domain_margin": m, "in_domain_margin": 0.5} for i, m in enumerate(randoms)]
    return AblateResult.build(pd.DataFrame(rows), 0.0, "mean_diff", len(randoms))


def test_ablate_findings_both_ways_planted(tmp_path):
    rand = [0.201, 0.202, 0.199, 0.203, 0.2015]
    wrong = _ablate_result(0.246, rand)  # the issue-14 case: ablation raises the margin (−0.23 of the rise)
    first = wrong.findings()[0]
    assert first.startswith("The effect has the wrong sign") and "-0.23" in first
    assert wrong.numbers()["wrong_sign"] and wrong.verdict().verdict == "not supported"
    good = _ablate_result(0.05, rand)
    assert good.numbers()["fraction_removed"] == pytest.approx(0.75)
    assert good.findings()[0].startswith("The fine-tune moves") and good.verdict().verdict == "supported"
    beaten = _ablate_result(0.15, [0.2, 0.2, 0.05, 0.2, 0.2])  # one random direction removes 0.75 > 0.25
    assert beaten.findings()[0].startswith("The control beats the effect")
    out = good.save(tmp_path / "a")
    s = json.loads((out / "summary.json").read_text())
    assert len(s["random_fraction_removed"]) == 5 and s["fraction_removed"] == pytest.approx(0.75)
    for key in ("margin_base", "margin_tuned", "margin_ablated", "in_domain_margin_tuned", "in_domain_margin_ablated"):
        assert key in s


# ---- CLI -----------------------------------------------------------------------------------------
def test_steer_cli_bad_alpha_is_one_line(tmp_path, capsys):
    from emprobe.cli import main

    with pytest.raises(SystemExit) as e:  # main() turns emprobe errors into one line and exit code 2
        main(["steer", "--direction", str(tmp_path), "--alpha", "a,b", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip().count("\n") == 0, err
    assert "--alpha" in err and "'a'" in err and not (tmp_path / "o").exists()
