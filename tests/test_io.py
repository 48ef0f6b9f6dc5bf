"""Atomic writes: a failure mid-write leaves neither a partial file nor temporary debris."""

from __future__ import annotations

import pytest

from emprobe.errors import DataError, OutputError
from emprobe.io import atomic_dir, atomic_path, content_hash, manifest, read_json, safetensors_header, write_json
from emprobe.io import claim_dir
from emprobe.outdir import check_out, owner


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
        write_json(d / "manifest.json", manifest("test"))  # emprobe's own output: replaceable with overwrite
    with pytest.raises(OutputError, match="pass `overwrite`"):
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


def _tree(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_atomic_dir_never_replaces_a_file_or_a_foreign_directory(tmp_path):
    """The output policy: a file or a directory emprobe did not write survives byte for byte, overwrite or not."""
    (tmp_path / "v.txt").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "n.txt").write_text("x")
    before = _tree(tmp_path)
    for target in (tmp_path / "v.txt", tmp_path / "d"):
        for overwrite in (False, True):
            with pytest.raises(OutputError, match="existing file|did not write"):
                with atomic_dir(target, overwrite=overwrite) as d:
                    (d / "a").write_text("new")
    assert _tree(tmp_path) == before


def test_check_out_rules(tmp_path):
    """New, empty: fine; emprobe's own: reuse (by kind) or overwrite; unwritable parents: one line, nothing made."""
    assert check_out(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty")
    mine = claim_dir(tmp_path / "mine", "study")
    (mine / "stage").mkdir()
    assert owner(mine) == "study" and owner(tmp_path / "empty") is None
    check_out(mine, reuse=("study",))
    check_out(mine, overwrite=True)
    with pytest.raises(OutputError, match=r"holds emprobe output \(study\), not score_table"):
        check_out(mine, reuse=("score_table",))
    with pytest.raises(OutputError, match="choose another `out`$"):
        check_out(mine, overwrite=None)
    with pytest.raises(OutputError, match="cannot write in /proc"):
        check_out("/proc/x/y")
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        check_out(tmp_path / "f" / "sub")
    with pytest.raises(OutputError, match="`out` must be a path, got int"):
        check_out(3)


def test_atomic_writes_remove_the_parents_they_created(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a" / "b" / "f.json") as tmp:
            tmp.write_text("x")
            raise RuntimeError("crash")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "c" / "d") as d:
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_read_json_and_safetensors_header_integrity(tmp_path):
    import torch
    from safetensors.torch import save_file

    (tmp_path / "t.json").write_text('{"a": [1, 2')
    with pytest.raises(DataError, match="invalid JSON .* truncated"):
        read_json(tmp_path / "t.json")
    f = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(4, 3), "y": torch.ones(2)}, str(f))
    assert set(safetensors_header(f)) >= {"x", "y"}
    data = f.read_bytes()
    for name, blob in (("trunc", data[:-5]), ("junk", b"not a safetensors file at all"), ("empty", b""),
                       ("longer", data + b"\0\0")):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(DataError, match="corrupt or truncated"):
            safetensors_header(tmp_path / name)


def test_hash_and_manifest():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    m = manifest("test", model="x")
    assert m["kind"] == "test" and m["model"] == "x" and m["emprobe_version"]
