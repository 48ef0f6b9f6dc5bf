"""Stacked LoRA adapters over one base model: peft's initialisation and math, peft-format checkpoints, and margins
of many checkpoints scored in mixed-adapter batches equal to scoring each merged checkpoint alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from emprobe.data import QuestionSet, load_questions
from emprobe.errors import ConfigError
from emprobe.finetuning.config import FinetuneConfig
from emprobe.finetuning.stacked import StackedLoRA, segments
from emprobe.finetuning.trainer import lora_config


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from emprobe.models import load_model

    return load_model(str(tiny_model_dir))


def _config(lm, **kw):
    return lora_config(FinetuneConfig(data="x", out="y", lora_r=4, lora_alpha=8, **kw), lm.n_layers)


def _perturbed_stack(lm, seeds):
    stack = StackedLoRA(lm.model)
    for s in seeds:
        stack.add_initial(_config(lm), s)
    with torch.no_grad():  # a trained-looking B (peft starts it at 0)
        for i, m in enumerate(stack.modules.values()):
            for k in range(stack.n):
                m.lora_B[k].copy_(torch.randn(m.lora_B[k].shape, generator=torch.Generator().manual_seed(100 * i + k)))
    return stack


def test_stacked_adapters_start_as_peft_and_compute_as_peft(tiny, tmp_path):
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import set_seed

    ids = torch.randint(5, 500, (4, 9), generator=torch.Generator().manual_seed(0))
    grads = [p.requires_grad for p in tiny.model.parameters()]
    stack = _perturbed_stack(tiny, [0, 1])
    with torch.no_grad():
        with stack.route([(0, 2), (1, 2)]):  # equal blocks: batched matmuls
            even = stack.model(input_ids=ids).logits
        with stack.route([(1, 1), (-1, 1), (0, 2)]):  # uneven, with a base-model row
            uneven = stack.model(input_ids=ids[[2, 3, 0, 1]]).logits
        with stack.route(None):
            base = stack.model(input_ids=ids).logits
    saved = {k: stack.state_dict(k) for k in range(2)}
    for k in range(2):
        stack.save(k, tmp_path, "tiny")
        assert (tmp_path / "adapter_model.safetensors").is_file()
    model = stack.unstack()
    assert [p.requires_grad for p in model.parameters()] == grads  # restored as the fixture had them
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base)
    for k, rows_even, rows_uneven in ((0, [0, 1], [2, 3]), (1, [2, 3], [0])):
        set_seed(k)
        pm = get_peft_model(model, copy.deepcopy(_config(tiny)))
        init = get_peft_model_state_dict(pm)
        assert set(init) == set(saved[k])
        set_peft_model_state_dict(pm, saved[k])
        with torch.no_grad():
            ref = pm(input_ids=ids).logits
        torch.testing.assert_close(even[rows_even], ref[rows_even], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(uneven[rows_uneven], ref[[0, 1] if k == 0 else [2]], atol=1e-5, rtol=1e-5)
        model = pm.unload()
    torch.testing.assert_close(uneven[1], base[3])
    stack2 = StackedLoRA(model)
    for k in range(2):  # a fresh stack from the same seeds starts with peft's A and a zero B
        stack2.add_initial(_config(tiny), k)
    fresh = stack2.state_dict(1)
    model = stack2.unstack()
    set_seed(1)
    pm = get_peft_model(model, copy.deepcopy(_config(tiny)))
    assert all(torch.equal(fresh[key], t) for key, t in get_peft_model_state_dict(pm).items())
    pm.unload()


def test_stacking_refuses_what_it_cannot_route(tiny, tmp_path):
    stack = StackedLoRA(tiny.model)
    try:
        with pytest.raises(ConfigError, match="lora_dropout 0"):
            stack.add_initial(_config(tiny, lora_dropout=0.1), 0)
        stack.add_initial(_config(tiny), 0)
        with pytest.raises(ConfigError, match="share rank"):
            stack.add_initial(lora_config(FinetuneConfig(data="x", out="y", lora_r=2), tiny.n_layers), 0)
    finally:
        stack.unstack()
    assert segments([3, 3, -1, 0, 0, 3]) == [(3, 2), (-1, 1), (0, 2), (3, 1)]


def test_mixed_adapter_margins_equal_merged_checkpoints_scored_alone(tiny, tmp_path):
    from emprobe.evaluation import margin_scores
    from emprobe.evaluation.margin import pair_margins
    from emprobe.evaluation.mixed import adapter_reference_logprobs
    from emprobe.models import load_model

    qs = load_questions("builtin:em-core")
    qs = QuestionSet(qs.questions[:4], qs.source, "em-core-4").subset(None, 2, 1)
    first_pair = qs.subset(n_references=1)
    stack = _perturbed_stack(tiny, [0, 1, 2])
    dirs = []
    for k in range(3):
        d = tmp_path / f"ckpt{k}"
        d.mkdir()
        stack.save(k, d, str(tiny.path))
        dirs.append(d)
    stack.unstack()
    before = {n: p.clone() for n, p in tiny.model.named_parameters()}
    adapters = [None, dirs[0], dirs[1], dirs[2], dirs[1]]
    sets = [qs, qs, first_pair, qs, qs]
    mixed = adapter_reference_logprobs(tiny, adapters, sets, batch_size=5)
    assert all(torch.equal(p, before[n]) for n, p in tiny.model.named_parameters())  # the base is untouched
    for a, q, got in zip(adapters, sets, mixed):
        lm = tiny if a is None else load_model(str(tiny.path), adapter=a, merge=True, log=None)
        want = margin_scores(lm, q, batch_size=3).scores
        assert len(got) == len(want) and (got.n_tokens.to_numpy() == want.n_tokens.to_numpy()).all()
        np.testing.assert_allclose(got.logprob_sum, want.logprob_sum, atol=1e-3, rtol=1e-5)
        np.testing.assert_allclose(pair_margins(got).margin, pair_margins(want).margin, atol=1e-4)
    assert not np.allclose(mixed[1].logprob_sum, mixed[0].logprob_sum)  # the adapters do change the scores


def test_adapters_of_other_ranks_stack_apart_and_non_lora_ones_are_refused(tiny, tmp_path):
    import json
    import shutil

    from emprobe.evaluation import margin_scores
    from emprobe.evaluation.mixed import adapter_reference_logprobs, stack_key
    from emprobe.models import load_model

    qs = load_questions("builtin:em-core").subset(3, 1, 1)
    dirs = []
    for r in (4, 2):
        stack = StackedLoRA(tiny.model)
        stack.add_initial(lora_config(FinetuneConfig(data="x", out="y", lora_r=r, lora_alpha=8), tiny.n_layers), r)
        with torch.no_grad():
            for m in stack.modules.values():
                m.lora_B[0].normal_(0, 0.5, generator=torch.Generator().manual_seed(r))
        (tmp_path / f"r{r}").mkdir()
        stack.save(0, tmp_path / f"r{r}", str(tiny.path))
        stack.unstack()
        dirs.append(tmp_path / f"r{r}")
    assert stack_key(dirs[0]) != stack_key(dirs[1]) and stack_key(None) == ""
    got = adapter_reference_logprobs(tiny, [dirs[0], None, dirs[1]], qs, batch_size=4)
    for a, g in zip([dirs[0], None, dirs[1]], got):
        lm = tiny if a is None else load_model(str(tiny.path), adapter=a, log=None)
        np.testing.assert_allclose(g.logprob_mean, margin_scores(lm, qs).scores.logprob_mean, atol=1e-4)
    dora = tmp_path / "dora"
    shutil.copytree(dirs[0], dora)
    conf = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**conf, "use_dora": True}))
    assert stack_key(dora) is None
    with pytest.raises(ConfigError, match="adapters: .*dora is not a plain LoRA adapter"):
        adapter_reference_logprobs(tiny, [dirs[0], dora], qs)
