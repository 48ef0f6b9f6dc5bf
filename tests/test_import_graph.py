"""The stages' import order, checked on the source (AST): no module of ``emprobe/`` imports — at module level or
inside a function — a module of a later stage, and no two modules import each other in a cycle.

Order (a module may import its own stage and the ones before it)::

    errors, io, outdir, result, verbosity, sequences, lazy  <  models, data, validate  <  finetuning  <  evaluation  <  probes
      <  analysis  <  report  <  studies  <  cli, emprobe/__init__, __main__

``from emprobe import __version__`` reads the version constant and counts as the lowest stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "emprobe"

ORDER = [("errors", "io", "result", "verbosity", "sequences", "outdir", "lazy"), ("models", "data", "validate"),
         ("finetuning",), ("evaluation",), ("probes",), ("analysis",), ("report",), ("studies",), ("cli", "", "__main__")]
RANK = {name: i for i, names in enumerate(ORDER) for name in names}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import statement in ``path`` (relative imports resolved)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == root.name]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != root.name:
                continue
            if base == root.name and all(a.name == "__version__" for a in node.names):
                continue  # the version constant
            for a in node.names:
                sub = f"{base}.{a.name}"
                exists = (root.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                    (root.parent / Path(*sub.split("."))).is_dir()
                out.append((node.lineno, sub if exists else base))
    return out


def stage_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def graph(root: Path = ROOT) -> dict[str, list[tuple[int, str]]]:
    return {module_name(p, root): imports(p, root) for p in sorted(root.rglob("*.py"))}


def back_edges(root: Path = ROOT) -> list[str]:
    """Every import of a later stage (or of a module the order does not place), as ``module:line -> target``."""
    bad = []
    for mod, edges in graph(root).items():
        for line, target in edges:
            src, dst = stage_of(mod), stage_of(target)
            if src not in RANK or dst not in RANK:
                bad.append(f"{mod}:{line} -> {target} (not placed in the stage order)")
            elif RANK[dst] > RANK[src]:
                bad.append(f"{mod}:{line} -> {target} (stage {dst!r} comes after {src!r})")
    return bad


def cycles(root: Path = ROOT) -> list[list[str]]:
    """Cycles between modules (package ``__init__`` re-exports aside: a package importing its own submodules)."""
    g = graph(root)
    edges = {m: {t for _, t in e if t in g and t != m and not m.startswith(t + ".") and not t.startswith(m + ".")}
             for m, e in g.items()}
    found, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                found.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return found


def test_no_module_imports_a_later_stage():
    assert back_edges() == []


def test_no_import_cycles():
    assert cycles() == []


def test_the_check_sees_imports_inside_functions_and_cycles(tmp_path):
    pkg = tmp_path / "emprobe"
    for sub in ("models", "studies", "finetuning"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("__version__ = '0'\n")
    (pkg / "models" / "load.py").write_text("from emprobe import __version__\n\ndef f():\n"
                                            "    from emprobe.studies import runner\n")
    (pkg / "studies" / "runner.py").write_text("from ..models import load\n")
    (pkg / "finetuning" / "a.py").write_text("def f():\n    from emprobe.finetuning import b\n")
    (pkg / "finetuning" / "b.py").write_text("from emprobe.finetuning.a import f\n")
    assert back_edges(pkg) == ["emprobe.models.load:4 -> emprobe.studies.runner (stage 'studies' comes after "
                               "'models')"]
    assert [c for c in cycles(pkg) if "emprobe.finetuning.a" in c]
    assert ["emprobe.models.load", "emprobe.studies.runner", "emprobe.models.load"] in cycles(pkg)
