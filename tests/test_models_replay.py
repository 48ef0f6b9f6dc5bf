"""Replaying recorded block outputs (``emprobe.models.replay``): an edit at layer ``l`` scored with blocks ``0..l``
skipped gives the full forward's log-probs (SmolLM2 and Gemma), and a replay that does not line up with its
recording fails with one line instead of scoring the wrong rows."""

from __future__ import annotations

import pytest
import torch

from emprobe.errors import ConfigError, ModelError
from emprobe.models.replay import record, replay
from emprobe.probes import load_prompts
from emprobe.probes.interventions import add_vector, replace_where, scored_forward
from emprobe.probes.tokens import encode, make_batches


def _batches(lm, n: int = 5, size: int = 3):
    ps = load_prompts("builtin:em-core", contrast="references", limit=n)
    chat = lm.require_chat()
    enc = [encode(chat, it.messages, it.response) for it in ps]
    return make_batches(enc, size, lm.tokenizer.pad_token_id or 0, "right")


@pytest.mark.parametrize("name", ["smollm2", "gemma"])
def test_replayed_prefix_gives_the_full_forward_under_an_edit(name, request):
    lm = request.getfixturevalue(name)
    batches = _batches(lm)
    layer = lm.n_layers // 2
    v = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0))
    with record(lm.model, [layer, 2]) as rec:
        clean = [scored_forward(lm.model, b)[0] for b in batches]
    assert [len(rec[layer]), len(rec[2])] == [len(batches)] * 2
    for edit in (add_vector(v, 6.0), add_vector(v, -3.0)):
        full = torch.cat([scored_forward(lm.model, b, {layer: edit})[0] for b in batches])
        with replay(lm.model, rec, layer):
            fast = torch.cat([scored_forward(lm.model, b, {layer: edit})[0] for b in batches])
        assert (full - torch.cat(clean)).abs().max() > 1e-3          # the edit really moves the log-probs
        assert (fast - full).abs().max() < 1e-5                        # ... and the replay gives the same
    # one batch recorded alone: a patch at layer 2 replayed from that batch's outputs
    b = batches[1]
    with record(lm.model, [2]) as one:
        scored_forward(lm.model, b)
    values, mask = torch.zeros_like(one[2][0]), torch.zeros(one[2][0].shape[:2], dtype=torch.bool)
    mask[:, 1] = True
    full = scored_forward(lm.model, b, {2: replace_where(values, mask)})[0]
    with replay(lm.model, one, 2):
        fast = scored_forward(lm.model, b, {2: replace_where(values, mask)})[0]
    assert (fast - full).abs().max() < 1e-5
    # the blocks run again after the context
    assert (scored_forward(lm.model, batches[0])[0] - clean[0]).abs().max() < 1e-6


def test_a_replay_that_does_not_line_up_fails(smollm2):
    batches = _batches(smollm2)
    with record(smollm2.model, [3]) as rec:
        scored_forward(smollm2.model, batches[0])
    with pytest.raises(ModelError, match="shape"), replay(smollm2.model, rec, 3):
        scored_forward(smollm2.model, batches[1])                     # another batch than the recorded one
    with pytest.raises(ModelError, match="more forwards"), replay(smollm2.model, rec, 3):
        for _ in range(2):
            scored_forward(smollm2.model, batches[0])
    with pytest.raises(ModelError, match="0 forwards where 1"), replay(smollm2.model, rec, 3):
        pass
    with pytest.raises(ModelError, match="not recorded"), replay(smollm2.model, rec, 4):
        pass
    with pytest.raises(ConfigError, match="unknown layer"), record(smollm2.model, [smollm2.n_layers]):
        pass
    assert "forward" not in vars(smollm2.model.model.layers[0])      # every block's own forward is back
