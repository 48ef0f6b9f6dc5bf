"""``emprobe finetune ...`` (one run), ``emprobe finetune sweep SWEEP.yaml`` and ``emprobe finetune show RUN``.

Every option maps 1:1 onto a :class:`~emprobe.finetune.FinetuneConfig` field; options left out keep the
config's defaults (or the values of ``--config FILE.yaml``). Data-parallel: launch the same command with
``torchrun --nproc_per_node N $(which emprobe) finetune ...`` (or ``python -m emprobe.finetune ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(
    help="Narrow fine-tuning (LoRA or full) that saves checkpoints along the trajectory.\n\n"
         "emprobe finetune --model SPEC --data DATA --out RUN_DIR [options]  trains one run;\n"
         "emprobe finetune sweep SWEEP.yaml  runs a grid; emprobe finetune show RUN_DIR  lists checkpoints.",
    invoke_without_command=True, no_args_is_help=True,
)

_O = typer.Option


@app.callback()
def finetune_cmd(
    ctx: typer.Context,
    model: Optional[str] = _O(None, help="base model: built-in alias, hub id or local directory"),
    data: Optional[str] = _O(None, help="chat JSONL(.gz) path or builtin:NAME"),
    out: Optional[str] = _O(None, help="run directory"),
    config: Optional[Path] = _O(None, help="YAML file of FinetuneConfig fields (options given here win)"),
    full: Optional[bool] = _O(None, "--full/--lora", help="full fine-tune instead of LoRA"),
    lora_r: Optional[int] = _O(None, help="LoRA rank [16]"),
    lora_alpha: Optional[float] = _O(None, help="LoRA alpha [32]"),
    lora_dropout: Optional[float] = _O(None, help="LoRA dropout [0]"),
    targets: Optional[str] = _O(None, help="LoRA target modules: all-linear or names like q_proj,v_proj"),
    layers: Optional[str] = _O(None, help="restrict LoRA to these decoder blocks: all, 0:10, 0,5,-1"),
    rslora: Optional[bool] = _O(None, "--rslora/--no-rslora", help="rank-stabilised LoRA scaling"),
    lr: Optional[float] = _O(None, help="peak learning rate [3e-4]"),
    schedule: Optional[str] = _O(None, help="constant, linear, cosine, cosine-with-restarts, warmup-stable-decay "
                                            "[linear]"),
    warmup_steps: Optional[int] = _O(None, help="linear warmup steps [0]"),
    num_cycles: Optional[int] = _O(None, help="cosine-with-restarts: number of cycles [2]"),
    decay_fraction: Optional[float] = _O(None, help="warmup-stable-decay: share of steps in the decay [0.2]"),
    min_lr_ratio: Optional[float] = _O(None, help="warmup-stable-decay: final lr / peak lr [0]"),
    epochs: Optional[float] = _O(None, help="epochs (ignored with --max-steps) [1]"),
    max_steps: Optional[int] = _O(None, help="optimizer steps (overrides --epochs)"),
    batch_size: Optional[int] = _O(None, help="examples per step per process [8]"),
    grad_accum: Optional[int] = _O(None, help="gradient accumulation steps [1]"),
    max_length: Optional[int] = _O(None, help="max tokens per example; responses are truncated, prompts never "
                                              "[512]"),
    weight_decay: Optional[float] = _O(None, help="AdamW weight decay [0]"),
    max_grad_norm: Optional[float] = _O(None, help="gradient clipping norm [1]"),
    seed: Optional[int] = _O(None, help="seed of LoRA init, data order and dropout [0]"),
    save_steps: Optional[str] = _O(None, help="checkpoint steps, e.g. 0,5,10,25,50"),
    save_every: Optional[int] = _O(None, help="checkpoint every N steps"),
    save_log_spaced: Optional[int] = _O(None, help="K log-spaced checkpoints incl. step 0 (default 6 when no "
                                                   "--save-* is given)"),
    val_fraction: Optional[float] = _O(None, help="held-out share of the data for the validation loss [0.1]"),
    val_max_examples: Optional[int] = _O(None, help="cap on held-out examples evaluated per checkpoint [32]"),
    val_seed: Optional[int] = _O(None, help="seed of the held-out split (shared across --seed) [0]"),
    dtype: Optional[str] = _O(None, help="float32, bfloat16, float16 [float32]"),
    device: Optional[str] = _O(None, help="auto, cpu, cuda [auto]"),
    chat_template: Optional[str] = _O(None, help="chat template file or Jinja string"),
    threads: Optional[int] = _O(None, help="torch CPU threads per process"),
    resume: bool = _O(False, "--resume", help="continue from the last complete checkpoint (only --out needed)"),
    overwrite: bool = _O(False, "--overwrite", help="delete a non-empty --out first"),
    progress: bool = _O(True, "--progress/--no-progress", help="progress bar"),
    keep_state: bool = _O(False, "--keep-state", help="keep the optimizer state of the last checkpoint"),
) -> None:
    """Fine-tune MODEL on DATA and write checkpoints to RUN_DIR (see `emprobe finetune --help`)."""
    if ctx.invoked_subcommand is not None:
        return
    from emprobe.finetune import FinetuneConfig, finetune, load_run
    from emprobe.finetune.dist import is_main

    given: dict[str, Any] = {k: v for k, v in ctx.params.items() if v is not None and k != "config"}
    base: dict[str, Any] = {}
    if config is not None:
        base = _read_yaml(config)
    elif resume and data is None and out and (Path(out) / "run.json").is_file():
        base = load_run(out).settings  # `--out RUN --resume` continues with the run's own settings
    cfg = FinetuneConfig.from_dict({**base, **given})
    run = finetune(cfg)
    if is_main():
        typer.echo(f"{run.path}: {len(run.checkpoints())} checkpoints, status {run.manifest.get('status')}")


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    from emprobe.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping of FinetuneConfig fields")
    return d


@app.command("sweep")
def sweep_cmd(
    sweep_file: Path = typer.Argument(..., help="sweep YAML: out, base (shared settings), grid (lists)"),
    out: Optional[str] = _O(None, help="sweep directory (overrides the file's out)"),
    threads: Optional[int] = _O(None, help="torch CPU threads per process"),
    progress: bool = _O(True, "--progress/--no-progress"),
    dry_run: bool = _O(False, "--dry-run", help="list the runs and whether they are complete; train nothing"),
) -> None:
    """Run a grid of fine-tunes into one directory, skipping complete runs and resuming interrupted ones."""
    from emprobe.finetune.sweep import Sweep, run_sweep

    sweep = Sweep.load(sweep_file, out=out)
    results = run_sweep(sweep, threads=threads, progress=progress, dry_run=dry_run, log=typer.echo)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    typer.echo(f"{sweep.out}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


@app.command("show")
def show_cmd(run_dir: Path = typer.Argument(..., help="a run directory")) -> None:
    """List a run's checkpoints with their training and validation losses."""
    from rich.console import Console
    from rich.table import Table

    from emprobe.finetune import load_run

    run = load_run(run_dir)
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    t = Table("step", "train_loss", "val_loss", "lr", "checkpoint",
              title=f"{run.name}: {run.model_spec['name']} on {run.manifest['data']['name']} "
                    f"({run.manifest.get('status')}, {run.manifest.get('total_steps')} steps)")
    for c in run.checkpoints():
        lr = c.info.get("learning_rate")
        t.add_row(str(c.step), fmt(c.train_loss), fmt(c.val_loss), "-" if lr is None else f"{lr:.2e}",
                  str(c.path.relative_to(run.path)))
    Console().print(t)
    typer.echo(f"run directory: {run.path}")


def register(root: typer.Typer) -> None:
    """Add ``emprobe finetune`` (with ``sweep`` and ``show``) to the root app."""
    root.add_typer(app, name="finetune")
