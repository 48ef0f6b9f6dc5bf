"""The study's cached stage pipeline: reuse, force, invalidation downstream, no marker after a failure."""

from __future__ import annotations

import pytest

from emprobe.io import read_json
from emprobe.studies.pipeline import MARKER, Pipeline, Stage, fmt_seconds


def _stages(calls: list, params: dict | None = None, fail: str | None = None):
    def make(name):
        def fn(d):
            calls.append(name)
            if name == fail:
                (d / "partial.txt").write_text("half")
                raise RuntimeError(f"{name} broke")
            (d / "out.txt").write_text(name)
            return {"findings": [f"{name} ran"], "numbers": {"x": len(calls)}}
        return fn

    p = params or {}
    return [Stage("a", "first", make("a"), 1, p.get("a", {})),
            Stage("b", "second", make("b"), 1, p.get("b", {}), ("a",)),
            Stage("c", "third", make("c"), 1, {}, ("b",))]


def test_reuse_then_force(tmp_path):
    calls, log = [], []
    first = Pipeline(tmp_path, log=log.append).run(_stages(calls))
    assert calls == ["a", "b", "c"] and first["c"]["findings"] == ["c ran"]
    assert read_json(tmp_path / "b" / MARKER)["section"] == first["b"]
    again = Pipeline(tmp_path, log=log.append)
    assert again.run(_stages(calls)) == first and calls == ["a", "b", "c"]  # nothing recomputed
    assert all(t["cached"] for t in again.timing.values())
    assert any("reused" in line for line in log)
    Pipeline(tmp_path, force=True, log=None).run(_stages(calls))
    assert calls[3:] == ["a", "b", "c"]


def test_changed_params_rerun_downstream_only(tmp_path):
    calls = []
    Pipeline(tmp_path, log=None).run(_stages(calls))
    calls.clear()
    Pipeline(tmp_path, log=None).run(_stages(calls, {"b": {"k": 2}}))
    assert calls == ["b", "c"]  # a is reused; c depends on b's new token
    calls.clear()
    Pipeline(tmp_path, force={"a"}, log=None).run(_stages(calls))
    assert calls == ["a", "b", "c"]


def test_failed_stage_leaves_no_marker_and_reruns(tmp_path):
    calls = []
    with pytest.raises(RuntimeError, match="b broke"):
        Pipeline(tmp_path, log=None).run(_stages(calls, fail="b"))
    assert not (tmp_path / "b" / MARKER).exists()
    calls.clear()
    Pipeline(tmp_path, log=None).run(_stages(calls))
    assert calls == ["b", "c"] and not (tmp_path / "b" / "partial.txt").exists()


def test_fmt_seconds():
    assert fmt_seconds(42.4) == "42s" and fmt_seconds(65) == "1m05s" and fmt_seconds(-3) == "0s"


def test_study_result_round_trips_summary_json_and_renders(tmp_path):
    from emprobe.studies import StudyResult

    v = {"id": "Claim 1", "stage": "dynamics", "claim": "no schedule is better aligned", "verdict": "inconclusive",
         "number": "gap +0.01", "control": "controls", "uncertainty": "CI", "reason": "one schedule <only>",
         "tested": "gaps at matched loss within ±SESOI", "sesoi": "25% of the EM-specific rise"}
    summary = {"emprobe_version": "0", "model": "tiny", "preset": "fast", "settings": {"training": {"steps": 4}},
               "setup": {"n_questions": 8}, "verdicts": [v], "timing": {"total_seconds": 3.0, "stages": {}},
               "section_order": ["margins", "dynamics"],
               "sections": {"dynamics": {"title": "Claim 1", "findings": ["d"], "numbers": {"x": 1.0}, "plots": []},
                            "margins": {"title": "Margins", "findings": ["m first", "m second"], "numbers": {},
                                        "plots": []}}}
    res = StudyResult.from_dict(summary, tmp_path)
    assert res.to_dict() == summary and list(res.sections) == ["margins", "dynamics"]
    assert res.findings() == ["Claim 1 (no schedule is better aligned): inconclusive — gap +0.01 (one schedule <only>)"
                              " [SESOI: 25% of the EM-specific rise]", "Margins: m first", "Claim 1: d"]
    assert "one schedule &lt;only&gt;" in res._repr_html_() and "#fef7e0" in res._repr_html_()
    res.save()
    again = StudyResult.load(tmp_path)
    assert again.to_dict() == summary and res.report() == tmp_path / "report.html"
    assert 'id="verdicts"' in res.report(html_text=True)
    with pytest.raises(KeyError, match="this study has margins, dynamics"):
        res.section("patch")
