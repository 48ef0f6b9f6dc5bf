"""``ep.diff`` on real models with planted changes: KL is exactly 0 between identical models and positive after a
planted change; the activation-difference lens recovers a token planted along its unembedding row; the verdict
rule on planted per-question tables (effect, no effect with many questions, a weak effect)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from emprobe.analysis.diff.kl import text_items, token_kl
from emprobe.analysis.diff.lens import activation_lens, top_tokens
from emprobe.analysis.diff.models import ModelSet
from emprobe.data import load_texts

TEXTS = list(load_texts("builtin:neutral-text").head(6))


def plant_adapter(model_dir, out, layer: int, vector: torch.Tensor | None):
    """A real peft LoRA adapter on block ``layer``'s ``mlp.down_proj`` whose only effect is adding ``vector`` to the
    residual stream after that block at every position (``lora_B`` weight 0, its bias = vector / scaling);
    ``vector=None`` gives an adapter that changes nothing."""
    import warnings

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    cfg = LoraConfig(r=1, lora_alpha=1, target_modules=["down_proj"], layers_to_transform=[layer],
                     lora_bias=vector is not None)
    with warnings.catch_warnings():  # peft warns that a 1-D lora_B bias cannot be merged / looks like a shard
        warnings.simplefilter("ignore")
        pm = get_peft_model(model, cfg)
        if vector is not None:
            mod = pm.base_model.model.model.layers[layer].mlp.down_proj
            with torch.no_grad():
                mod.lora_B["default"].bias.copy_(vector / mod.scaling["default"])
        pm.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from emprobe.models import load_model

    return load_model(str(tiny_model_dir), log=None)


def _token(lm, text: str) -> int:
    return lm.tokenizer(text, add_special_tokens=False)["input_ids"][0]


@pytest.fixture(scope="module")
def planted(tmp_path_factory, tiny_model_dir, tiny):
    root = tmp_path_factory.mktemp("plant")
    w_u = tiny.model.get_output_embeddings().weight.detach()
    up, down = w_u[_token(tiny, " banana")], w_u[_token(tiny, " castle")]
    return {"zero": plant_adapter(tiny_model_dir, root / "zero", 0, None),
            "banana": plant_adapter(tiny_model_dir, root / "banana", 0, 4 * up),
            "anti-castle": plant_adapter(tiny_model_dir, root / "castle", 0, -4 * down)}


def test_kl_is_zero_for_identical_models_and_positive_after_a_plant(tiny, tiny_model_dir, planted):
    from emprobe.models import load_model

    items = text_items(tiny.tokenizer, TEXTS, 24)
    with ModelSet(tiny, {"same": planted["zero"], "copy": load_model(str(tiny_model_dir), log=None),
                         "plant": planted["banana"]}) as ms:
        kl = token_kl(ms, ["same", "copy", "plant"], items, batch_size=4)
    assert all(len(a) == len(i.ids) - 1 for a, i in zip(kl["plant"], items))  # every token after the first
    assert all((a == 0).all() for a in kl["same"]) and all((a == 0).all() for a in kl["copy"])
    assert all((a > 1e-4).all() for a in kl["plant"])
    assert not any("lora" in n for n, _ in tiny.model.named_modules())  # the caller's base is restored


def test_lens_recovers_a_token_planted_along_its_unembedding_row(tiny, planted):
    with ModelSet(tiny, {"banana": planted["banana"], "anti": planted["anti-castle"],
                         "same": planted["zero"]}) as ms:
        lens = activation_lens(ms, ["banana", "anti", "same"], TEXTS, [0, 1], k=5, top_k=5)
    w_u = tiny.model.get_output_embeddings().weight.detach()
    assert top_tokens(lens, "banana", 0, n=1) == [repr(" banana")]
    assert top_tokens(lens, "anti", 0, "suppressed", n=1) == [repr(" castle")]
    row = lens[(lens.variant == "banana") & (lens.layer == 0)].iloc[0]
    assert row.delta_norm == pytest.approx(4 * float(w_u[_token(tiny, " banana")].norm()), rel=1e-4)  # δ = v exactly
    assert (lens[lens.variant == "same"].delta_norm == 0).all()


def test_diff_end_to_end_on_the_tiny_model(tiny, planted, tmp_path):
    import emprobe as ep

    res = ep.diff(tiny, planted["banana"], control=planted["zero"], n_questions=6, n_texts=5, max_new_tokens=8,
                  max_text_tokens=16, top_k=3, n_boot=200)
    assert res.mean_kl("control", "text") == 0 and res.mean_kl("tuned", "text") > 0
    assert set(res.per_question.columns) >= {"question_id", "kl_tuned", "kl_control", "em_rise"}
    assert len(res.per_question) == 6 and (res.per_question.kl_control == 0).all()
    assert res.verdict().verdict == "inconclusive"  # 6 questions: the CI cannot tell
    assert any("' banana'" in f for f in res.findings())
    out = res.save(tmp_path / "diff")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"]["verdict"] == "inconclusive" and summary["kl_control_text"] == 0
    files = {p.name for p in out.iterdir()}
    assert {"table.parquet", "kl.parquet", "lens.parquet", "answers.parquet", "plot.png"} <= files


def _result(per_q: pd.DataFrame, n_boot: int = 1000):
    from emprobe.analysis.diff.compute import rho_stats
    from emprobe.analysis.diff.result import DiffResult

    empty = pd.DataFrame()
    return DiffResult(kl=empty, per_question=per_q, lens=empty, answers=empty, stats=rho_stats(per_q, n_boot, 0),
                      sesoi=0.2, lens_tokens=5, n_layers=2)


def _planted_table(n: int, strength: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rise = rng.normal(size=n)
    return pd.DataFrame({"question_id": [f"q{i}" for i in range(n)], "em_rise": rise,
                         "kl_tuned": strength * rise + rng.normal(size=n), "kl_control": rng.normal(size=n)})


def test_diff_verdict_on_planted_tables():
    assert _result(_planted_table(40, 3.0, 0)).verdict().verdict == "supported"
    assert _result(_planted_table(3000, 0.0, 1)).verdict().verdict == "not supported"
    assert _result(_planted_table(12, 0.3, 3)).verdict().verdict == "inconclusive"  # 27 of 30 seeds are
    no_control = _planted_table(40, 3.0, 0).drop(columns="kl_control")
    v = _result(no_control).verdict()
    assert v.verdict == "inconclusive" and "no aligned-control run" in v.reason


def test_diff_rejects_bad_input(tiny, planted):
    import emprobe as ep
    from emprobe.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match="unknown layer 7"):
        ep.diff(tiny, planted["zero"], layers="7", n_questions=2, n_texts=2, max_new_tokens=4)
    with pytest.raises(DataError, match="rises table lacks columns"):
        ep.diff(tiny, planted["zero"], rises=pd.DataFrame({"question_id": ["x"]}), n_questions=2, n_texts=2,
                max_new_tokens=4)
    with pytest.raises(ConfigError, match="`sesoi` must be > 0"):
        ep.diff(tiny, planted["zero"], sesoi=0)
