"""``emprobe data list|check``: built-in data and validation of user files."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Built-in data sets and validation of chat JSONL / question YAML files.", no_args_is_help=True)
console = Console()


@app.command("list")
def list_cmd() -> None:
    """List built-in data (address them as builtin:NAME)."""
    from emprobe.data import BUILTINS

    t = Table("name", "kind", "description")
    t.columns[0].no_wrap = True
    for e in BUILTINS.values():
        t.add_row(f"builtin:{e.name}", e.kind, e.description)
    console.print(t)


@app.command("check")
def check_cmd(source: str = typer.Argument(..., help="builtin:NAME, a chat .jsonl(.gz) or a question .yaml")) -> None:
    """Validate a data file and print what it holds (errors name the file and line)."""
    from emprobe.data import builtin_entry, is_builtin, load_chat_dataset, load_personas, load_questions, load_texts

    kind = builtin_entry(source).kind if is_builtin(source) else (
        "questions" if source.endswith((".yaml", ".yml")) else "text" if source.endswith(".txt") else "chat")
    if kind == "questions":
        qs = load_questions(source)
        n_ref = sum(bool(q.aligned_references and q.misaligned_references) for q in qs)
        console.print(f"{source}: {len(qs)} questions, {len(qs.prompts())} prompts, {n_ref} with references, "
                      f"sha256 {qs.sha256[:12]}")
    elif kind == "text":
        ts = load_texts(source)
        console.print(f"{source}: {len(ts)} texts, sha256 {ts.sha256[:12]}")
    elif kind == "personas":
        p = load_personas(source)
        console.print(f"{source}: {len(p.misaligned)} misaligned / {len(p.aligned)} aligned persona prompts")
    else:
        ds = load_chat_dataset(source)
        console.print(f"{source}: {len(ds)} conversations, sha256 {ds.sha256[:12]}")


def register(root: typer.Typer) -> None:
    """Add ``emprobe data ...`` to the root app."""
    root.add_typer(app, name="data")
