"""``emprobe demo --fast`` end to end on the packaged SmolLM2: every section of summary.json holds real numbers,
report.html is self-contained, and a rerun reuses every stage."""

from __future__ import annotations

import html
import json
import math
import re

import pytest

from emprobe.errors import ConfigError
from emprobe.report import DemoConfig

pytestmark = pytest.mark.slow

SECTIONS = {"finetune", "margins", "directions", "track", "priors", "dynamics", "overlap", "patch", "steer", "ablate",
            "samples"}


def test_config_presets_and_own_steps():
    fast = DemoConfig(fast=True).resolved()
    assert fast.steps == 4 and fast.save_steps == [0, 2, 4]
    own = DemoConfig(steps=12).resolved()
    assert own.save_steps[0] == 0 and own.save_steps[-1] == 12 and len(own.save_steps) >= 3
    with pytest.raises(ConfigError, match="checkpoints"):
        DemoConfig(steps=4, save_steps=[0, 4]).resolved()


def test_demo_fast_end_to_end(tmp_path, smollm2, capsys):
    from emprobe.cli import main

    out = tmp_path / "demo"
    main(["demo", "--fast", "--out", str(out), "--threads", "2"])
    progress = capsys.readouterr().out
    assert re.search(r"\[2/12\] fine-tune.*est\. ", progress) and "report.html" in progress
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["section_order"]) == SECTIONS == set(summary["sections"])
    for name, sec in summary["sections"].items():
        assert sec["findings"] and all(re.search(r"\d", f) for f in sec["findings"]), name
        nums = sec["numbers"]
        assert nums and all(isinstance(v, (int, float)) and math.isfinite(v) for v in nums.values()), (name, nums)
        assert sec["control"].strip() and sec["uncertainty"].strip(), name
        for p in sec["plots"]:
            assert (out / p).is_file() and (out / p).stat().st_size > 1000, (name, p)
    m = summary["sections"]["margins"]["numbers"]
    assert m["n_questions"] == 8 and m["rise_ci_low"] <= m["rise"] <= m["rise_ci_high"]
    assert summary["sections"]["finetune"]["numbers"]["steps"] == 4
    rows = summary["sections"]["samples"]["rows"]
    assert len(rows) == 2 and all(r["base"] and r["misaligned"] and r["control"] for r in rows)
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 10
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    for sec in summary["sections"].values():
        assert html.escape(sec["title"]) in page

    # a rerun reuses every stage and rewrites the same findings
    main(["demo", "--fast", "--out", str(out), "--threads", "2"])
    again = json.loads((out / "summary.json").read_text())
    assert all(t["cached"] for t in again["timing"]["stages"].values())
    assert again["sections"] == summary["sections"]
