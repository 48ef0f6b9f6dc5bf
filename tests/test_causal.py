"""Patching, steering and ablation (``ep.patch`` / ``ep.steer`` / ``ep.ablate``) on real mechanics: a tiny Llama with
a random LoRA, and the packaged SmolLM2 for one cross-fitted steer.

Known answers: self-patching changes nothing, the patch control never gets the item's own prompt back, hook
patching matches an independent TransformerLens patch, α = 0 is the clean margin, ablation leaves no component
along the direction, a planted fine-tune that is pure steering along ``v`` is undone by ablating ``v`` in a
difference-in-differences beyond ≥ 19 variance-matched controls (and the base model's own discrimination is not
credited), and a direction fit on the causal questions is refused. The verdict logic on planted numbers is in
``test_causal_verdicts.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from emprobe.analysis.ablate import AblateResult, ablate
from emprobe.analysis.causal import mean_margin
from emprobe.analysis.patch import PatchResult, patch
from emprobe.analysis.patch.sweep import derangement
from emprobe.analysis.steer import SteerResult, steer
from emprobe.data import QuestionSet, load_questions
from emprobe.errors import ConfigError
from emprobe.models import decoder_layers, load_model
from emprobe.probes import Direction, fit_direction
from emprobe.probes.interventions import intervene, replace_where, scored_forward
from emprobe.probes.tokens import Encoded, make_batches

CAUSAL, FIT = slice(0, 8), slice(8, 20)  # em-core questions scored by the causal checks / used to fit directions


def _qs(sl: slice, n_references: int = 1) -> QuestionSet:
    qs = load_questions("builtin:em-core").subset(None, n_references)
    return QuestionSet(qs.questions[sl], qs.source, qs.name)


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
    return base, tuned, _qs(slice(0, 4)), adapter  # 4 questions x 1 pair


@pytest.fixture(scope="module")
def fitted(pair, tmp_path_factory):
    """A cross-fit mean-diff direction of the tiny base model (fit on questions disjoint from the causal ones) and
    its labelled store on disk (the controls are drawn from it)."""
    from emprobe.probes import extract

    base = pair[0]
    store = extract(base, _qs(FIT, 2), contrast="references", positions=["response_mean"], first_paraphrase=True,
                    out=tmp_path_factory.mktemp("refs") / "store")
    return fit_direction(store, method="mean_diff", position="response_mean", n_splits=3, n_random=5), store


def _no_hooks(lm) -> bool:
    return all(not b._forward_hooks for b in decoder_layers(lm.model))


# ---- patch ---------------------------------------------------------------------------------------
def test_self_patch_is_a_no_op_and_controls_exist(pair):
    base, tuned, qs, _ = pair
    res = patch(base, tuned, qs, layers=[0, 1], spans=("last_prompt",), n_questions=None, batch_size=8)
    table = res.table
    assert isinstance(res, PatchResult) and res.numbers()["margin_base"] != pytest.approx(res.numbers()["margin_tuned"])
    assert set(table.direction) == {"base→tuned", "tuned→base"} and set(table.control) == {False, True}
    assert table.margin.notna().all() and len(table) == 2 * 2 * 2 * 4  # cells x questions
    assert sorted(res.clean.half.value_counts()) == [2, 2]  # the two halves the cells are chosen on
    # patching a model with its own activations changes nothing (the control, another question's, does)
    same = patch(tuned, tuned, qs, layers=[1], spans=["prompt"], n_questions=None, directions=("base→tuned",),
                 batch_size=3)  # one model under both names, over several batches: the replay keeps them apart
    real = same.table[~same.table.control].set_index("question_id").margin
    clean = same.clean.set_index("question_id").margin_tuned
    assert real.to_numpy() == pytest.approx(clean.loc[real.index].to_numpy(), abs=1e-5)
    assert same.verdict().verdict == "inconclusive"  # no gap to restore
    ctrl = same.table[same.table.control].set_index("question_id").margin
    assert np.abs(ctrl.loc[real.index].to_numpy() - real.to_numpy()).max() > 1e-6


def test_patch_control_never_gets_its_own_prompt(pair):
    qids = [f"q{i}" for i in range(7)]
    for seed in range(50):
        m = derangement(qids, seed)
        assert sorted(m) == qids and sorted(m.values()) == qids and all(m[q] != q for q in qids)
    base, tuned, qs, _ = pair
    # batch_size=1 used to make "another item" the item itself; the control is now drawn across questions
    res = patch(base, tuned, qs, layers=[0], spans=("prompt",), n_questions=2, directions=("base→tuned",),
                batch_size=1)
    t = res.table.pivot_table(index="question_id", columns="control", values="margin")
    assert (t[True] - t[False]).abs().min() > 1e-4


def test_patch_loads_an_adapter_dir_and_saves(pair, tiny_model_dir, tmp_path):
    base, tuned, qs, adapter = pair
    res = patch(str(tiny_model_dir), str(adapter), qs, layers="1", spans=("last_prompt",), n_questions=3,
                directions=("base→tuned",), batch_size=8)
    loaded = patch(base, tuned, qs, layers="1", spans=("last_prompt",), n_questions=3, directions=("base→tuned",),
                   batch_size=8)
    pd.testing.assert_frame_equal(res.table, loaded.table)
    assert res.meta["adapter"] == str(adapter) and res.n_questions == 3
    out = res.save(tmp_path / "p")
    summary = json.loads((out / "summary.json").read_text())
    for key in ("findings", "control", "uncertainty", "margin_base", "margin_tuned", "n_questions", "gap",
                "gap_ci_low", "sesoi", "layers", "spans", "model", "adapter", "verdict", "effect", "effect_ci_low",
                "excess", "fraction_restored", "control_fraction", "cells"):
        assert key in summary, key
    assert summary["layers"] == [1] and (out / "table.parquet").is_file() and (out / "plot.png").is_file()
    with pytest.raises(ConfigError, match="at least 2 questions"):
        patch(base, tuned, qs, layers="1", n_questions=1)


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


# ---- steer ---------------------------------------------------------------------------------------
def test_steer_alpha_zero_is_clean_and_controls_are_variance_matched(pair, fitted):
    base, _, qs, _ = pair
    d, _ = fitted
    res = steer(base, d, qs, layer=1, alphas=[0.0, 4.0], n_questions=None, n_samples=0, batch_size=8)
    t = res.table
    clean = mean_margin(base, qs, None, 4)[1]
    real0 = t[(t.kind == "direction") & (t.alpha == 0)].set_index("question_id").margin
    assert real0.to_numpy() == pytest.approx(clean.loc[real0.index].to_numpy(), abs=1e-6)
    ctrl = t[t.kind != "direction"]
    assert ctrl[["kind", "seed"]].drop_duplicates().kind.value_counts().to_dict() == {"covariance": 10, "shuffled": 10}
    assert (ctrl.alpha == 4.0).all() and ctrl.vector_norm.to_numpy() == pytest.approx(np.ones(len(ctrl)), abs=1e-5)
    n = res.numbers()
    assert isinstance(res, SteerResult) and res.meta["provenance"] == "disjoint" and n["n_controls"] == 20
    assert np.isfinite([n["effect"], n["effect_ci_low"], n["excess"], n["rank_p"]]).all()
    assert res.verdict().verdict in ("supported", "not supported", "inconclusive") and len(res.findings()) >= 2
    raw = steer(base, d, qs, layer=1, alphas=[0.0, 1.0], unit=False, n_random=10, n_shuffled=9, n_questions=2,
                n_samples=0, batch_size=8)  # raw vectors: every control has the direction's own norm
    assert raw.table.vector_norm.to_numpy() == pytest.approx(np.full(len(raw.table), float(d.vector(1, False).norm())),
                                                             rel=1e-4)


def test_steer_refuses_a_direction_fit_on_the_causal_questions(pair, fitted):
    base, _, _, _ = pair
    d, store = fitted
    own = _qs(slice(8, 11))  # questions the direction was fit on
    with pytest.raises(ConfigError, match="fit on 3 of the 3 causal questions"):
        steer(base, d, own, alphas=[0.0, 4.0], n_questions=None, n_samples=0)
    with pytest.warns(UserWarning, match="circular"):
        res = steer(base, d, own, alphas=[0.0, 4.0], allow_overlap=True, n_questions=None, n_samples=0, batch_size=8)
    assert res.verdict().verdict == "inconclusive" and res.findings()[0].startswith("The direction was fit on")
    with pytest.raises(ConfigError, match="at least 19 control directions"):
        steer(base, d, _qs(CAUSAL), n_random=5, n_shuffled=5)
    bare = Direction("mean_diff", d.layers, d.raw, d.position, best_layer=d.best_layer)  # no provenance, no store
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ConfigError, match="activations is required"):
        warnings.simplefilter("always")
        steer(base, bare, _qs(CAUSAL), n_samples=0)
    assert any("records no fit questions" in str(w.message) for w in caught)


def test_cross_fitted_steer_on_smollm2(smollm2, tmp_path):
    from emprobe.probes import extract

    fit_qs = _qs(slice(8, 14), 2)
    store = extract(smollm2, fit_qs, contrast="references", positions=["response_mean"], layers=[6, 12],
                    first_paraphrase=True, out=tmp_path / "refs")
    d = fit_direction(store, method="mean_diff", position="response_mean", n_splits=3, n_random=5)
    assert d.fit_question_ids == sorted(q.id for q in fit_qs)
    res = steer(smollm2, d, _qs(slice(0, 2)), layer=12, alphas=[0.0, 2.0], unit=False, n_random=10, n_shuffled=9,
                n_questions=None, n_samples=0, batch_size=8)  # the controls come from the direction's own store
    n = res.numbers()
    assert res.meta["provenance"] == "disjoint" and n["n_controls"] == 19 and n["n_questions"] == 2
    assert n["rank_p"] == pytest.approx((1 + n["n_beating"]) / 20)
    assert np.isfinite([n["effect"], n["effect_ci_low"], n["effect_ci_high"], n["control_mean"]]).all()
    assert res.verdict().verdict in ("supported", "not supported", "inconclusive")

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


def test_ablate_undoes_a_planted_steering_finetune_as_a_difference_in_differences(pair, fitted):
    base, _, _, _ = pair
    d, store = fitted
    qs = _qs(CAUSAL)
    v = d.vector(0)
    clean = mean_margin(base, qs, None, 4)[0]
    alpha = max((12.0, -12.0), key=lambda a: mean_margin(_steered_copy(base, v, a), qs, None, 4)[0] - clean)
    planted = _steered_copy(base, v, alpha)  # a 'fine-tune' that is pure steering along v at layer 0
    res = ablate(base, planted, d, qs, heldout=_qs(slice(0, 2)), n_questions=None, n_samples=0, batch_size=8)
    n = res.numbers()
    assert isinstance(res, AblateResult) and res.meta["provenance"] == "disjoint" and n["n_controls"] == 20
    # ablating v at layer 0 removes the planted shift and the base model's own component alike: per question the
    # difference-in-differences is the whole gap (the known answer), and no variance-matched control does as much
    gaps = res._gaps()
    assert gaps.loc[("direction", 0)].to_numpy() == pytest.approx(np.zeros(len(qs)), abs=1e-5)
    assert n["effect"] == pytest.approx(n["gap"], abs=1e-5) and n["fraction_removed"] == pytest.approx(1.0, abs=1e-3)
    assert n["gap"] > 0 and n["rank_p"] == pytest.approx(1 / 21) and n["excess"] > 0
    # a random tiny model moves some questions the other way, so the gap's CI decides between these two
    assert res.verdict().verdict == ("supported" if n["gap_established"] and n["excess_ci_low"] > 0 else "inconclusive")
    assert np.isfinite(n["in_domain_margin_ablated"])
    # another model as the reference (the aligned control's role): whatever it adds along v is ablated too
    ctl = ablate(base, planted, d, _qs(slice(0, 4)), reference=_steered_copy(base, v, -alpha), activations=store,
                 heldout=None, n_random=10, n_shuffled=9, n_questions=None, n_samples=0, batch_size=8)
    c = ctl.numbers()
    assert c["n_controls"] == 19 and c["effect"] == pytest.approx(c["gap"], abs=1e-5) and c["gap"] != 0


def test_ablating_in_an_untuned_model_removes_nothing(pair, fitted):
    """The old metric credited an ablation with removing the base model's own discrimination; a
    difference-in-differences of a model against itself is exactly 0, and with no gap the verdict is inconclusive."""
    base, _, _, _ = pair
    d, _ = fitted
    res = ablate(base, base, d, _qs(slice(0, 3)), heldout=None, n_random=10, n_shuffled=9, n_questions=None,
                 n_samples=0, batch_size=8)
    n = res.numbers()
    assert n["margin_tuned_ablated"] != pytest.approx(n["margin_tuned"], abs=1e-4)  # the ablation does move margins
    assert n["effect"] == pytest.approx(0.0, abs=1e-6) and n["gap"] == pytest.approx(0.0, abs=1e-6)
    assert res.verdict().verdict == "inconclusive" and "no fine-tune gap" in res.verdict().reason

# ---- CLI -----------------------------------------------------------------------------------------
def test_steer_cli_bad_alpha_is_one_line(tmp_path, capsys):
    from emprobe.cli import main

    with pytest.raises(SystemExit) as e:  # main() turns emprobe errors into one line and exit code 2
        main(["steer", "--direction", str(tmp_path), "--alpha", "a,b", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip().count("\n") == 0, err
    assert "--alpha" in err and "'a'" in err and not (tmp_path / "o").exists()


def test_steer_cli_reads_the_controls_from_the_directions_store(pair, fitted, tiny_model_dir, tmp_path, capsys):
    from emprobe.cli import main

    d, _ = fitted
    d.save(tmp_path / "direction")  # its source records the store it was fit on (the controls come from there)
    main(["steer", "--model", str(tiny_model_dir), "--direction", str(tmp_path / "direction"), "--alpha", "0,4",
          "--n-questions", "2", "--n-random", "10", "--n-shuffled", "9", "--sesoi", "0.02", "--n-samples", "0",
          "--out", str(tmp_path / "s")])
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert s["n_controls"] == 19 and s["sesoi"] == 0.02 and s["provenance"] == "disjoint" and "rank_p" in s
    assert "variance-matched controls" in " ".join(capsys.readouterr().out.lower().split())
    with pytest.raises(SystemExit) as e:  # too few controls: one line, nothing written
        main(["steer", "--model", str(tiny_model_dir), "--direction", str(tmp_path / "direction"), "--n-random", "5",
              "--n-shuffled", "5", "--out", str(tmp_path / "s2")])
    assert e.value.code == 2 and "at least 19 control directions" in capsys.readouterr().err
    assert not (tmp_path / "s2").exists()
