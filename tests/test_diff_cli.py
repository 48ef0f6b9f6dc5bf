"""``emprobe diff`` end to end on SmolLM2 with a planted change: a real peft adapter adds a vector along the
unembedding row of ' ocean' to the residual stream after block 15; the lens must put ' ocean' first there, the KL
must be positive for it and exactly 0 for an adapter that changes nothing (the control)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from emprobe.cli import main
from test_diff import plant_adapter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, smollm2):
    root = tmp_path_factory.mktemp("smol-plant")
    w_u = smollm2.model.get_output_embeddings().weight.detach()
    t = smollm2.tokenizer(" ocean", add_special_tokens=False)["input_ids"][0]
    return (plant_adapter(smollm2.path, root / "ocean", 15, 8 * w_u[t] / w_u[t].norm()),
            plant_adapter(smollm2.path, root / "zero", 15, None))


def test_diff_cli_on_smollm2(adapters, tmp_path):
    ocean, zero = adapters
    out = tmp_path / "diff"
    main(["diff", "--tuned", str(ocean), "--control", str(zero), "--n-questions", "6", "--n-texts", "8",
          "--max-new-tokens", "12", "--max-text-tokens", "24", "--layers", "14:17", "--top-k", "3",
          "--n-boot", "300", "--out", str(out), "--threads", "1"])
    s = json.loads((out / "summary.json").read_text())
    assert s["verdict"]["verdict"] == "inconclusive" and s["control"].startswith("the aligned-data control")
    assert s["kl_control_responses"] == 0 and s["kl_control_text"] == 0
    assert s["kl_tuned_responses"] > 0 and s["kl_tuned_text"] > 0
    lens = pd.read_parquet(out / "lens.parquet")
    first = lens[(lens.variant == "tuned") & (lens.layer == 15) & (lens.side == "promoted") & (lens["rank"] == 0)]
    assert first.token.tolist() == [" ocean"]
    assert lens[(lens.variant == "tuned") & (lens.layer == 14)].delta_norm.max() == 0  # before the plant: no change
    assert s["lens_layer"] == 15 and "' ocean'" in s["lens_promoted"]
    kl = pd.read_parquet(out / "kl.parquet")
    assert set(kl.source) == {"responses", "text"} and kl.position.max() >= 20
