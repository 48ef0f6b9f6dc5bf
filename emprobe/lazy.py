"""Names that load on first use: a package lists ``{public name: submodule}`` and gets its ``__getattr__`` /
``__dir__`` from :func:`lazy_names`, so importing it (e.g. for the command line's help) pulls in no heavy
dependency until a name is really used."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_names(package: str, names: dict[str, str], namespace: dict[str, Any]
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``names`` live in its submodules; a loaded name is
    cached in the package's ``namespace`` (its ``globals()``)."""
    public = sorted(names)

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return public

    return getattr_, dir_
