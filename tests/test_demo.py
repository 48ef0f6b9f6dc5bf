"""``emprobe demo --fast`` end to end on the packaged SmolLM2, started the way a user's script would (a plain
``python script.py`` calling ``ep.demo`` without a ``__main__`` guard): every section of summary.json holds real
numbers, the verdicts open report.html, the page is self-contained, and a CLI rerun reuses every stage."""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SECTIONS = {"finetune", "margins", "directions", "track", "priors", "dynamics", "overlap", "diff", "patch", "steer",
            "ablate", "samples", "explain"}


def test_demo_fast_from_a_plain_script_then_the_cli_reuses_it(tmp_path, smollm2, capsys):
    from emprobe.cli import main

    out = tmp_path / "demo"
    script = tmp_path / "my_demo.py"  # no `if __name__ == "__main__":` guard, as in a quick user script
    script.write_text(f"import emprobe as ep\nep.demo(fast=True, out={str(out)!r}, threads=2)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"\[2/14\] fine-tune.*est\. ", proc.stdout) and "report.html" in proc.stdout
    assert "Loading weights" not in proc.stdout + proc.stderr  # library progress bars stay quiet
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["section_order"]) == SECTIONS == set(summary["sections"])
    for name, sec in summary["sections"].items():
        assert sec["findings"] and all(re.search(r"\d", f) for f in sec["findings"]), name
        nums = sec["numbers"]
        assert nums and all(v is None or (isinstance(v, (int, float)) and math.isfinite(v))
                            for v in nums.values()), (name, nums)
        assert sec["control"].strip() and sec["uncertainty"].strip(), name
        for p in sec["plots"]:
            assert (out / p).is_file() and (out / p).stat().st_size > 1000, (name, p)
    m = summary["sections"]["margins"]["numbers"]
    assert m["n_questions"] == 8 and m["rise_ci_low"] <= m["rise"] <= m["rise_ci_high"] and m["n_pairs"] == 2
    assert summary["sections"]["finetune"]["numbers"]["steps"] == 4
    assert {v["id"] for v in summary["verdicts"]} == {"Claim 1", "Claim 2", "Claim 3"}
    _check_causal_sections(summary, out)
    rows = summary["sections"]["samples"]["rows"]
    assert len(rows) == 2 and all(r["base"] and r["misaligned"] and r["control"] for r in rows)
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 10
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert page.index('id="verdicts"') < page.index('id="finetune"')
    for sec in summary["sections"].values():
        assert html.escape(sec["title"]) in page

    # a rerun from the CLI reuses every stage and rewrites the same findings
    main(["demo", "--fast", "--out", str(out), "--threads", "2"])
    assert "reused" in capsys.readouterr().out
    again = json.loads((out / "summary.json").read_text())
    assert all(t["cached"] for t in again["timing"]["stages"].values())
    assert again["sections"] == summary["sections"]


def _check_causal_sections(summary: dict, out) -> None:
    """The causal checks in a study: a direction fit on questions disjoint from the causal set, ≥ 19
    variance-matched controls with a rank p, ablation as a difference-in-differences against the aligned-data
    control (CI and rank p in the report), steering against its controls with a SESOI tied to the rise, and
    explain with its stacked prior refit from the prior features and a control-run factor."""
    from emprobe.data import load_questions_yaml
    from emprobe.probes import Direction

    causal = set(load_questions_yaml(out / "margins" / "causal.yaml").ids)
    fit = set(Direction.load(out / "directions" / "mean_diff").fit_question_ids)
    assert causal and fit and not causal & fit
    ab, st = summary["sections"]["ablate"], summary["sections"]["steer"]
    for sec in (ab, st):
        n = sec["numbers"]
        assert n["n_controls"] >= 19 and n["n_questions"] == len(causal) and sec["labels"]["provenance"] == "disjoint"
        assert n["rank_p"] is not None and 1 / (1 + n["n_controls"]) <= n["rank_p"] <= 1
        assert "rank p" in sec["verdict"]["control"]
    did = next(f for f in ab["findings"] if "difference-in-differences" in f)
    assert "aligned-data control" in did and re.search(r"95% CI \[[-+]\d", did)
    assert ab["numbers"]["effect_ci_low"] <= ab["numbers"]["effect"] <= ab["numbers"]["effect_ci_high"]
    assert any("of the EM-specific rise" in f for f in st["findings"])
    ex = summary["sections"]["explain"]["numbers"]
    assert "p_holm_prior_prediction" in ex and "p_holm_control_shift_alignment" in ex
