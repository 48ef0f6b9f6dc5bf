"""bf16 / fp16 loading and device maps on CPU: activations stored as fp32, margins in fp32, within stated tolerances.

Measured on SmolLM2-135M-Instruct (8 reference prompts, layers 0/15/29; 4 questions x 2+2 references), bf16 vs fp32:
per-row relative L2 error of stored activations <= 0.023 (largest at layer 29), cosine >= 0.99978; per-reference
mean log-prob |diff| <= 0.029 nats/token; per-question margin |diff| <= 0.018 nats/token. The bounds below leave
about 2.5x room. (fp16 on CPU was 10x closer but ~13x slower, so fp16 is checked on the tiny model only.)
"""

from __future__ import annotations

import pytest
import torch

from emprobe.data import load_questions
from emprobe.evaluation.margin import margin_summary, reference_logprobs
from emprobe.models import load_model
from emprobe.probes import extract, load_prompts

LAYERS = [0, 15, 29]
BF16_ROW_REL_ERR = 0.06
BF16_MIN_COS = 0.999
BF16_LOGPROB_DIFF = 0.08  # nats / token
BF16_MARGIN_DIFF = 0.05  # nats / token


@pytest.fixture(scope="module")
def prompts():
    return load_prompts("builtin:em-core", contrast="references", limit=8)


@pytest.fixture(scope="module")
def questions():
    return load_questions("builtin:em-core").subset(4, 2)


def _quiet(*a):
    pass


def _extract(lm, prompts):
    return extract(lm, prompts, layers=LAYERS, positions="auto", batch_size=8)


@pytest.mark.slow
def test_bf16_extraction_and_margins_stay_close_to_fp32(smollm2, prompts, questions):
    bf = load_model("smollm2-135m-instruct", dtype="bf16", log=_quiet)
    assert next(bf.model.parameters()).dtype == torch.bfloat16 and bf.info()["dtype"] == "bfloat16"
    ref, got = _extract(smollm2, prompts), _extract(bf, prompts)
    assert got.manifest["model"]["dtype"] == "bfloat16"
    for p in ref.positions:
        a, b = got.tensors[p], ref.tensors[p]
        assert a.dtype == torch.float32  # stored as fp32 whatever the model dtype
        rel = ((a - b).norm(dim=-1) / b.norm(dim=-1)).max().item()
        cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).min().item()
        assert rel < BF16_ROW_REL_ERR and cos > BF16_MIN_COS, (p, rel, cos)
    r32, r16 = reference_logprobs(smollm2, questions), reference_logprobs(bf, questions)
    assert (r16.logprob_mean - r32.logprob_mean).abs().max() < BF16_LOGPROB_DIFF
    m32, m16 = margin_summary(r32), margin_summary(r16)
    assert (m16.margin - m32.margin).abs().max() < BF16_MARGIN_DIFF


def test_fp16_model_stores_fp32_activations(tiny_model_dir, prompts):
    lm = load_model(str(tiny_model_dir), dtype="fp16", log=_quiet)
    assert next(lm.model.parameters()).dtype == torch.float16 and lm.spec.dtype == "float16"
    st = extract(lm, prompts.head(3), layers="all", positions="last_prompt")
    assert st.tensors["last_prompt"].dtype == torch.float32
    ref = extract(load_model(str(tiny_model_dir), log=_quiet), prompts.head(3), layers="all", positions="last_prompt")
    assert torch.allclose(st.tensors["last_prompt"], ref.tensors["last_prompt"], rtol=0.02, atol=0.02)


@pytest.mark.slow
def test_device_auto_and_a_disk_offload_device_map_on_cpu(smollm2, prompts, questions):
    """``device="auto"`` (accelerate on a CPU-only machine) and a two-device map (layers 20-29 offloaded to
    disk: accelerate hooks stream their weights in at each forward) read the same activations and margins."""
    ref = _extract(smollm2, prompts)
    auto = load_model("smollm2-135m-instruct", device="auto", log=_quiet)
    assert auto.info()["device"] == "cpu"
    dmap = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "cpu", "lm_head": "cpu",
            **{f"model.layers.{i}": "cpu" if i < 20 else "disk" for i in range(30)}}
    split = load_model("smollm2-135m-instruct", device=dmap, log=_quiet)
    assert split.info()["device"].startswith("device_map over cpu, disk")
    assert split.model.model.layers[25].self_attn.q_proj.weight.device.type == "meta"  # really offloaded
    for lm in (auto, split):
        got = _extract(lm, prompts)
        for p in ref.positions:
            assert (got.tensors[p] - ref.tensors[p]).abs().max() < 1e-4, p
    m_ref = margin_summary(reference_logprobs(smollm2, questions))
    m_split = margin_summary(reference_logprobs(split, questions))
    assert (m_split.margin - m_ref.margin).abs().max() < 1e-4
