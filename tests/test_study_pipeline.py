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
