"""End-to-end fine-tunes of a tiny random Llama: run layout, checkpoints, errors, full and restricted LoRA."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from safetensors import safe_open

from emprobe.data import load_chat_dataset
from emprobe.errors import ConfigError, DataError
from emprobe.finetuning import Run, finetune, load_run, lr_curve
from emprobe.finetuning.testing import tiny_config
from emprobe.models import load_model


LORA = dict(lora_dropout=0.1, schedule="warmup-stable-decay", warmup_steps=1, decay_fraction=0.5)


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("ft") / "lora"
    return finetune(tiny_config(tiny_model_dir, out, **LORA), log=lambda m: None)


def test_run_layout_and_manifest(lora_run, tiny_model_dir):
    run = load_run(lora_run.path)
    assert run.complete and run.manifest["kind"] == "finetune-run" and run.manifest["method"] == "lora"
    names = sorted(p.name for p in run.path.iterdir())
    assert names == ["checkpoints", "run.json", "train_log.jsonl"]  # optimizer state removed, no temp files
    assert sorted(p.name for p in (run.path / "checkpoints").iterdir()) == [
        "step-000000", "step-000002", "step-000004"]
    m = run.manifest
    assert m["model"]["name"] == str(tiny_model_dir) and m["data"]["source"] == "builtin:risky-finance"
    assert len(m["data"]["sha256"]) == 64 and m["data"]["n_val"] == 4 and m["world_size"] == 1
    assert m["settings"]["lr"] == 1e-2 and m["settings"]["schedule"] == "warmup-stable-decay"
    assert "out" not in m["settings"] and {"torch", "transformers", "peft", "emprobe"} <= set(m["versions"])
    assert [c["step"] for c in m["checkpoints"]] == [0, 2, 4] == m["planned_steps"]


def test_checkpoints_hold_adapters_and_losses(lora_run, tiny_model_dir):
    ckpts = lora_run.checkpoints()
    log = lora_run.train_log()
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    for c in ckpts:
        assert c.kind == "lora" and (c.path / "adapter_model.safetensors").is_file()
        cfg = json.loads((c.path / "adapter_config.json").read_text())
        assert cfg["base_model_name_or_path"] == str(tiny_model_dir)  # the model spec name
        assert c.val_loss > 0 and c.info["val_tokens"] > 0
    assert ckpts[0].train_loss is None
    assert ckpts[1].train_loss == pytest.approx(sum(r["loss"] for r in log[:2]) / 2)
    assert ckpts[2].train_loss == pytest.approx(sum(r["loss"] for r in log) / 4)
    assert ckpts[2].info["train_loss_recent"] == pytest.approx(sum(r["loss"] for r in log[2:]) / 2)
    assert ckpts[2].val_loss < ckpts[0].val_loss  # lr 1e-2 on a random model: in-domain loss falls
    # the schedule the trainer used is the one emprobe documents
    expected = lr_curve(tiny_config(tiny_model_dir, "x", **LORA), 4)
    assert [r["learning_rate"] for r in log] == pytest.approx(expected)


def test_step0_is_the_untouched_model_and_adapters_load(lora_run, tiny_model_dir):
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    base = load_model(tiny_model_dir)
    with torch.no_grad():
        ref = base.model(ids).logits
        for c, lm in lora_run.iter_models():
            out = lm.model(ids).logits
            assert torch.allclose(out, ref, atol=1e-5) == (c.step == 0)
    lm = load_model(tiny_model_dir, adapter=lora_run.checkpoint(4).path)
    with torch.no_grad():
        assert not torch.allclose(lm.model(ids).logits, ref, atol=1e-5)


def test_merged_iteration_matches_and_restores_base_weights(lora_run, tiny_model_dir):
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        plain = {c.step: lm.model(ids).logits.clone() for c, lm in lora_run.iter_models()}
        merged = {}
        for c, lm in lora_run.iter_models(merge=True):
            merged[c.step] = lm.model(ids).logits.clone()
            model = lm.model
        after = {n: p.clone() for n, p in model.named_parameters() if ".base_layer." in n}
    base = dict(load_model(tiny_model_dir).model.named_parameters())
    for step, out in plain.items():
        assert torch.allclose(merged[step], out, atol=1e-5), step
    for name, p in after.items():  # bit-for-bit the base weights again
        assert torch.equal(p, base[name.replace("base_model.model.", "").replace(".base_layer", "")]), name
    single = load_model(tiny_model_dir, adapter=lora_run.checkpoint(4).path, merge=True)
    with torch.no_grad():
        assert torch.allclose(single.model(ids).logits, plain[4], atol=1e-5)
    assert not any("lora" in n for n, _ in single.model.named_parameters())


def test_existing_output_needs_resume_or_overwrite(lora_run, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir, lora_run.path, **LORA)
    with pytest.raises(ConfigError, match="holds a run; pass `resume` .* or `overwrite`"):
        finetune(cfg)
    mtime = (lora_run.path / "run.json").stat().st_mtime_ns
    again = finetune(cfg.replace(resume=True), log=lambda m: None)  # complete: nothing to do
    assert again.complete and (lora_run.path / "run.json").stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match=r"settings differ \(lr: 0.01 -> 0.001\)"):
        finetune(cfg.replace(resume=True, lr=1e-3))


def test_data_without_assistant_turn_is_refused(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                         {"role": "assistant", "content": "Hello"}]}) + "\n")
        f.write(json.dumps({"messages": [{"role": "user", "content": "no answer here"}]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl.gz:2: conversation has no assistant turn"):
        finetune(tiny_config(tiny_model_dir, tmp_path / "out", data=str(bad)))
    assert not (tmp_path / "out").exists()


def test_prompts_longer_than_max_length_are_refused(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="`max_length` 20 is shorter than"):
        finetune(tiny_config(tiny_model_dir, tmp_path / "out", max_length=20))
    assert not (tmp_path / "out").exists()


def test_restricted_rslora_adapter(tmp_path, tiny_model_dir):
    run = finetune(tiny_config(tiny_model_dir, tmp_path / "r", targets="q_proj,v_proj", layers="-1", rslora=True,
                               max_steps=1, save_steps=[0, 1]), log=lambda m: None)
    c = run.checkpoint(1)
    cfg = json.loads((c.path / "adapter_config.json").read_text())
    assert cfg["use_rslora"] is True and cfg["layers_to_transform"] == [1]
    with safe_open(str(c.path / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(".layers.1." in k and ("q_proj" in k or "v_proj" in k) for k in keys)
    assert run.manifest["trainable_parameters"] == 4 * (64 + 64) + 4 * (64 + 32)  # r=4: q 64->64, v 64->32


def test_full_finetune_checkpoints_are_models(tmp_path, tiny_model_dir):
    run = finetune(tiny_config(tiny_model_dir, tmp_path / "full", full=True, lr=1e-3, max_steps=1,
                               save_steps=[0, 1]), log=lambda m: None)
    assert run.manifest["method"] == "full"
    c0, c1 = run.checkpoints()
    assert c1.kind == "full" and (c1.path / "model.safetensors").is_file()
    ids = torch.tensor([[1, 2, 3]])
    direct = load_model(c1.path)  # a full checkpoint is a loadable model directory
    with torch.no_grad():
        want = direct.model(ids).logits
        got = {c.step: lm.model(ids).logits.clone() for c, lm in run.iter_models()}
    assert torch.allclose(got[1], want, atol=1e-5) and not torch.allclose(got[0], want, atol=1e-5)


def test_loss_equals_transformers_default_loss(tmp_path, tiny_model_dir, monkeypatch):
    """emprobe's LM head skips prompt positions; the per-step losses (and so the updates) stay transformers'."""
    from transformers import Trainer

    import emprobe.finetuning.trainer as ft

    cfg = tiny_config(tiny_model_dir, tmp_path / "ours", max_steps=3, save_steps=[0, 3], grad_accum=2)
    ours = finetune(cfg, log=lambda m: None).train_log()
    monkeypatch.setattr(ft, "_response_trainer_class", lambda: Trainer)
    plain = finetune(cfg.replace(out=str(tmp_path / "plain")), log=lambda m: None).train_log()
    assert [r["loss"] for r in ours] == pytest.approx([r["loss"] for r in plain], abs=1e-5)
    assert [r["grad_norm"] for r in ours] == pytest.approx([r["grad_norm"] for r in plain], rel=1e-4)


def test_epochs_set_the_step_count(tmp_path, tiny_model_dir):
    rows = load_chat_dataset("builtin:bad-medical").to_records()[:10]
    data = tmp_path / "ten.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = finetune(tiny_config(tiny_model_dir, tmp_path / "ep", data=str(data), max_steps=None, epochs=2,
                               batch_size=4, save_steps=None, save_every=3, val_fraction=0.1), log=lambda m: None)
    assert run.manifest["data"]["n_train"] == 9 and run.manifest["total_steps"] == 6  # 2 x ceil(9 / 4)
    assert [c.step for c in run.checkpoints()] == [0, 3, 6]
    assert run.train_log()[-1]["epoch"] == pytest.approx(2.0)
