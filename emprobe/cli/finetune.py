"""``emprobe finetune ...`` (one run), ``emprobe finetune sweep SWEEP.yaml`` and ``emprobe finetune show RUN``.

The options of ``emprobe finetune`` are generated from :class:`~emprobe.finetuning.FinetuneConfig`: one option
per field (``--lora-r`` for ``lora_r``), its type and its default read from the dataclass, so the CLI and
the config cannot drift apart (``tests/test_finetune_cli.py`` checks every field is reachable). Options left
out keep the config's defaults (or the values of ``--config FILE.yaml``). Data-parallel: launch the same
command with ``torchrun --nproc_per_node N $(which emprobe) finetune ...`` (or ``torchrun ... -m emprobe
finetune ...``).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any, Optional

import typer

from emprobe.cli.common import default_threads, device_option, dtype_option, threads_option
from emprobe.finetuning.config import FinetuneConfig

app = typer.Typer(
    help="Narrow fine-tuning (LoRA or full) that saves checkpoints along the trajectory.\n\n"
         "emprobe finetune --model SPEC --data DATA --out RUN_DIR [options]  trains one run;\n"
         "emprobe finetune sweep SWEEP.yaml  runs a grid; emprobe finetune show RUN_DIR  lists checkpoints.",
    invoke_without_command=True, no_args_is_help=True,
)

_O = typer.Option

#: What each FinetuneConfig field means (the default is appended from the dataclass, never typed here).
FIELD_HELP: dict[str, str] = {
    "model": "base model: built-in alias, hub id or local directory",
    "data": "chat JSONL(.gz) path or builtin:NAME",
    "out": "run directory",
    "full": "full fine-tune instead of LoRA",
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA alpha",
    "lora_dropout": "LoRA dropout",
    "targets": "LoRA target modules: all-linear or names like q_proj,v_proj",
    "layers": "restrict LoRA to these decoder blocks: all, 0:10, 0,5,-1",
    "rslora": "rank-stabilised LoRA scaling",
    "lr": "peak learning rate",
    "schedule": "constant, linear, cosine, cosine-with-restarts or warmup-stable-decay",
    "warmup_steps": "linear warmup steps",
    "num_cycles": "cosine-with-restarts: number of cycles",
    "decay_fraction": "warmup-stable-decay: share of steps in the decay",
    "min_lr_ratio": "warmup-stable-decay: final lr / peak lr",
    "epochs": "epochs (ignored with --max-steps)",
    "max_steps": "optimizer steps (overrides --epochs)",
    "batch_size": "examples per step per process",
    "grad_accum": "gradient accumulation steps",
    "max_length": "max tokens per example; responses are truncated, prompts never",
    "weight_decay": "AdamW weight decay",
    "max_grad_norm": "gradient clipping norm",
    "optim": "transformers optimizer name",
    "seed": "seed of LoRA init, data order and dropout",
    "save_steps": "checkpoint steps, e.g. 0,5,10,25,50",
    "save_every": "checkpoint every N steps",
    "save_log_spaced": "K log-spaced checkpoints incl. step 0 (6 when no --save-* is given)",
    "val_fraction": "held-out share of the data for the validation loss",
    "val_max_examples": "cap on held-out examples evaluated per checkpoint",
    "val_seed": "seed of the held-out split (shared across --seed)",
    "val_ci": "target 95% CI half-width of the validation loss (nats/token): validate on the fewest held-out "
              "examples that reach it (at least 8, at most --val-max-examples); none: all of them",
    "dtype": "weights dtype: float32 | bfloat16 | float16 (fp32 / bf16 / fp16 too)",
    "device": "auto, cpu or an accelerator like cuda",
    "chat_template": "chat template file or Jinja string",
    "kl_to_base": "mitigation: β of β·KL(base ‖ tuned) on --kl-data's response positions (LoRA only; 0 = off)",
    "kl_data": "mitigation: off-domain chat set for --kl-to-base (builtin:NAME or JSONL)",
    "kl_batch_size": "mitigation: --kl-data conversations per micro-batch (none = --batch-size)",
    "interleave": "mitigation: chat dataset mixed into every batch (builtin:NAME or JSONL)",
    "interleave_fraction": "mitigation: share of every batch drawn from --interleave",
    "inoculation_prompt": "mitigation: system prompt added to the training conversations only",
    "steer_during_training": "mitigation: Direction directory; add --steer-alpha x its raw vector in training only",
    "steer_alpha": "mitigation: α for --steer-during-training (1 = the whole mean difference)",
    "ablate_during_training": "mitigation: Direction directory; project it out in training forwards only",
    "direction_layer": "mitigation: layer of the training-time edits (none = the direction's best layer)",
    "threads": "torch CPU threads per process (the shared --threads option's own help is shown)",
    "resume": "continue from the last complete checkpoint (only --out needed)",
    "overwrite": "replace an --out that emprobe wrote (a file, or a directory emprobe did not write, is never "
                 "replaced)",
    "progress": "progress bar",
    "keep_state": "keep the optimizer state of the last checkpoint",
}
#: flag spellings that differ from --NAME/--no-NAME
FLAG_NAMES = {"full": "--full/--lora"}
#: fields that are not command-line options (``extra`` holds free-form settings from a --config file)
NOT_OPTIONS = ("extra",)
#: options whose definition is shared with the other verbs (cli/common.py)
SHARED = {"threads": threads_option, "dtype": dtype_option, "device": device_option}


def _scalar(tp: Any) -> type:
    """The option type of a field type: ``int | None`` -> int; lists (``save_steps``) are typed as text."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    base = typing.get_origin(args[0]) or args[0]
    return str if base in (list, tuple, dict) else base


def _default_text(value: Any) -> str:
    return "none" if value is None else ",".join(map(str, value)) if isinstance(value, list) else str(value)


def config_options() -> list[inspect.Parameter]:
    """One keyword parameter (a typer option defaulting to ``None`` = "not given") per FinetuneConfig field."""
    hints = typing.get_type_hints(FinetuneConfig)
    params = []
    for f in dataclasses.fields(FinetuneConfig):
        if f.name in NOT_OPTIONS:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        shown = {"help": FIELD_HELP[f.name], "show_default": _default_text(default)}  # the dataclass's default
        tp = _scalar(hints[f.name])
        if f.name in SHARED:
            opt = SHARED[f.name]()
            if f.name != "threads":  # the shared --threads help says its default ($EMPROBE_THREADS or every core)
                for k, v in shown.items():
                    setattr(opt, k, v)
        elif tp is bool:
            name = f.name.replace("_", "-")
            opt = _O(None, FLAG_NAMES.get(f.name, f"--{name}/--no-{name}"), **shown)
        else:
            opt = _O(None, f"--{f.name.replace('_', '-')}", **shown)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=Optional[tp]))
    return params


def finetune_cmd(ctx: typer.Context, config: Optional[Path] = None, **options: Any) -> None:
    """Fine-tune MODEL on DATA and write checkpoints to RUN_DIR (see `emprobe finetune --help`)."""
    if ctx.invoked_subcommand is not None:
        return
    from emprobe.finetuning import load_run
    from emprobe.finetuning.dist import is_main
    from emprobe.finetuning.rundir import check_run_out, plan_run_dir
    from emprobe.validate import check_args

    given: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    if "threads" not in given and default_threads():
        given["threads"] = default_threads()
    base: dict[str, Any] = {}
    out = given.get("out")
    if config is not None:
        base = _read_yaml(config)
    elif given.get("resume") and "data" not in given and out:
        check_run_out(out, resume=True)  # a directory that is not a run: nothing to resume
        if (Path(out) / "run.json").is_file():
            base = load_run(out).settings  # `--out RUN --resume` continues with the run's own settings
    cfg = FinetuneConfig.from_dict({**base, **given}).validate()
    check_args(model=cfg.model, data=cfg.data)
    if is_main():
        plan_run_dir(cfg)  # the output policy, before torch and the model load
    from emprobe.finetuning import finetune

    run = finetune(cfg)
    if is_main():
        typer.echo(f"{run.path}: {len(run.checkpoints())} checkpoints, status {run.manifest.get('status')}")


_PARAMS = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
           inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                             default=_O(None, help="YAML file of FinetuneConfig fields (options given here win)")),
           *config_options()]
finetune_cmd.__signature__ = inspect.Signature(_PARAMS)  # type: ignore[attr-defined]
finetune_cmd.__annotations__ = {p.name: p.annotation for p in _PARAMS}
app.callback()(finetune_cmd)


def _read_yaml(path: Path) -> dict[str, Any]:
    from emprobe.errors import ConfigError
    from emprobe.io import read_yaml

    d = read_yaml(path, "config file") or {}
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping of FinetuneConfig fields, got a YAML {type(d).__name__}")
    return d


@app.command("sweep")
def sweep_cmd(
    sweep_file: Path = typer.Argument(..., help="sweep YAML: out, base (shared settings), grid (lists)"),
    out: Optional[str] = _O(None, help="sweep directory (overrides the file's out)"),
    threads: Optional[int] = threads_option(),
    progress: bool = _O(True, "--progress/--no-progress"),
    dry_run: bool = _O(False, "--dry-run", help="list the runs and whether they are complete; train nothing"),
    executor: str = _O("local", "--executor", help="local: runs side by side on this machine, the threads split "
                                                  "between them; ray: one Ray task per run (shared filesystem)"),
    ray_address: str = _O("auto", "--ray-address", help="with --executor ray: auto (the cluster `ray start` "
                                                        "joined here) or HOST:PORT"),
) -> None:
    """Run a grid of fine-tunes into one directory, skipping complete runs and resuming interrupted ones."""
    from emprobe.finetuning.executors import get_executor
    from emprobe.finetuning.sweep import Sweep, run_sweep

    sweep = Sweep.load(sweep_file, out=out)
    ex = get_executor(executor, threads=threads or default_threads(),
                      **({"address": ray_address} if executor == "ray" else {}))
    results = run_sweep(sweep, threads=threads or default_threads(), progress=progress, dry_run=dry_run,
                        log=typer.echo, executor=ex)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    typer.echo(f"{sweep.out}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


@app.command("show")
def show_cmd(run_dir: Path = typer.Argument(..., help="a run directory")) -> None:
    """List a run's checkpoints with their training and validation losses."""
    from rich.console import Console
    from rich.table import Table

    from emprobe.finetuning import load_run

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
