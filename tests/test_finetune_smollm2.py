"""A short LoRA fine-tune of the real packaged SmolLM2 on a built-in domain; its adapters load back."""

from __future__ import annotations

import json

import pytest
import torch

from emprobe.finetuning import FinetuneConfig, finetune
from emprobe.models import load_model


@pytest.mark.slow
def test_smollm2_lora_checkpoints_load(tmp_path):
    run = finetune(FinetuneConfig(model="smollm2-135m-instruct", data="builtin:risky-finance", out=str(tmp_path / "rf"),
                                  max_steps=2, save_steps=[0, 1, 2], batch_size=2, val_max_examples=4, lr=3e-4,
                                  threads=1, progress=False), log=lambda m: None)
    ckpts = run.checkpoints()
    assert [c.step for c in ckpts] == [0, 1, 2] and run.complete
    assert 1.0 < ckpts[0].val_loss < 6.0 and ckpts[2].val_loss < ckpts[0].val_loss  # it learns the domain
    ids = torch.tensor([[1, 2, 3, 4]])
    for c in ckpts:
        assert json.loads((c.path / "adapter_config.json").read_text())["base_model_name_or_path"] == \
            "smollm2-135m-instruct"
    lm = load_model("smollm2-135m-instruct", adapter=ckpts[-1].path)  # accepted by the foundation loader
    with torch.no_grad():
        direct = lm.model(ids).logits
        for c, m in run.iter_models(steps=[2]):
            assert torch.allclose(m.model(ids).logits, direct, atol=1e-5)
