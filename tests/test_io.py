"""Atomic writes: a failure mid-write leaves neither a partial file nor temporary debris."""

from __future__ import annotations

import pytest

from emprobe.io import atomic_dir, atomic_path, content_hash, manifest, write_json


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_old_content_on_failure(tmp_path):
    target = write_json(tmp_path / "m.json", {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{broken")
            raise RuntimeError("crash")
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    assert oct(target.stat().st_mode & 0o077) != "0o0"  # readable like an ordinary file


def test_atomic_dir_replace_and_failure(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
    with pytest.raises(FileExistsError):
        with atomic_dir(target) as d:
            (d / "a").write_text("2")
    with pytest.raises(RuntimeError):
        with atomic_dir(target, overwrite=True) as d:
            (d / "a").write_text("3")
            raise RuntimeError("crash")
    assert (target / "a").read_text() == "1"
    with atomic_dir(target, overwrite=True) as d:
        (d / "a").write_text("4")
    assert (target / "a").read_text() == "4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_hash_and_manifest():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    m = manifest("test", model="x")
    assert m["kind"] == "test" and m["model"] == "x" and m["emprobe_version"]
