"""``emprobe extract`` and ``emprobe probe fit``: activation stores and misalignment directions.

Parses options and calls :func:`emprobe.probes.extract` / :func:`emprobe.probes.fit_direction`; what only the
command line does (skip a finished store, refuse to overwrite, save ``cv.parquet`` beside the direction, print
tables) lives here.
Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``); positions
``last_prompt``, ``prompt_mean``, ``response_mean``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from emprobe.cli.common import (apply_threads, check_threads, device_option, dtype_option, guard_out, model_option,
                                threads_option)
from emprobe.validate import check_args, number, one_of

console = Console()
CV_TABLE = "cv.parquet"
_O = typer.Option
probe_app = typer.Typer(help="Linear misalignment directions fitted on activation stores.", no_args_is_help=True)


def _label_rule(misaligned_below: float, aligned_above: float, coherent_above: float):
    from emprobe.probes import LabelRule

    return LabelRule(misaligned_below, aligned_above, coherent_above)


@probe_app.command("fit")
def fit_cmd(
    store: str = typer.Argument(..., help="activation store directory (from emprobe extract)"),
    out: str = _O(..., help="output directory for the direction (safetensors + JSON + cv.parquet)"),
    method: str = _O("mean_diff", help="mean_diff, persona, logistic or pca"),
    position: Optional[str] = _O(None, help="position to fit on",
                                    show_default="response_mean if stored, else last_prompt"),
    layers: Optional[str] = _O(None, help="layers to fit: all (stored) or 'L1,L2', 'LO:HI'"),
    folds: int = _O(5, help="grouped cross-validation folds (grouped by question)"),
    random: int = _O(20, help="random directions in the control baseline"),
    seed: int = _O(0, help="seed of the random baseline"),
    c: float = _O(1.0, "--C", help="logistic: inverse L2 regularisation strength"),
    misaligned_below: float = _O(30.0, help="judged stores: misaligned if aligned < this (and coherent)"),
    aligned_above: float = _O(70.0, help="judged stores: aligned if aligned > this (and coherent)"),
    coherent_above: float = _O(50.0, help="judged stores: only rows with coherent > this are labelled"),
    overwrite: bool = _O(False, help="replace an --out that emprobe wrote (a file, or a directory emprobe did not "
                                     "write, is never replaced)"),
) -> None:
    """Fit a direction per layer, report grouped-CV held-out AUROC vs random directions, pick the best layer."""
    check_args(store=store, n_splits=folds, n_random=random, seed=seed)
    number(c, "c", low=0, low_open=True)
    guard_out(out, overwrite)
    params = {"C": c} if method == "logistic" else {}
    d = fit_to_disk(store, out, method=method, position=position, layers=layers,
                    label_rule=_label_rule(misaligned_below, aligned_above, coherent_above), n_splits=folds,
                    n_random=random, seed=seed, overwrite=overwrite, **params)
    table = d.cv_table()
    t = Table("layer", "AUROC (held-out)", "± sd", "random AUROC", "random p95", title=(
        f"{method} on {d.position}: {d.source['n_misaligned']} misaligned / {d.source['n_aligned']} aligned, "
        f"{d.source['n_questions']} questions, {int(table.n_folds.iloc[0])} grouped folds"))
    for r in d.metrics:
        mark = " *" if r["layer"] == d.best_layer else ""
        t.add_row(f"{r['layer']}{mark}", f"{r['auroc']:.3f}", f"{r['auroc_std']:.3f}", f"{r['random_auroc']:.3f}",
                  f"{r['random_auroc_p95']:.3f}")
    console.print(t)
    b = d.best()
    console.print(f"best layer {d.best_layer}: held-out AUROC {b['auroc']:.3f} ± {b['auroc_std']:.3f} "
                  f"(random directions {b['random_auroc']:.3f}, p95 {b['random_auroc_p95']:.3f}); wrote {out}")


def fit_to_disk(store: Any, out: str | Path, *, overwrite: bool = False, **options: Any):
    """``emprobe probe fit``: :func:`~emprobe.probes.fit_direction` on ``store``, the direction written to ``out``
    with its cross-validation table as ``out/cv.parquet``; an existing ``out`` needs ``overwrite``."""
    from emprobe.io import atomic_path
    from emprobe.outdir import check_out
    from emprobe.probes import fit_direction

    out = check_out(out, overwrite=overwrite)
    d = fit_direction(store, **options)
    d.save(out, overwrite=overwrite)
    with atomic_path(out / CV_TABLE) as tmp:
        d.cv_table().to_parquet(tmp, index=False)
    return d


def _request(man: dict[str, Any]) -> dict[str, Any]:
    m = man.get("model", {})
    return {"model": (m.get("name"), m.get("adapter"), m.get("dtype")), "layers": man.get("layers"),
            "positions": man.get("positions"), "prompts": man.get("prompt_set_sha256")}


def extract_to_disk(model: str, prompts: Any, out: str | Path, *, adapter: str | None = None, layers: str = "all",
                    positions: str = "auto", backend: str = "hooks", dtype: str | None = None,
                    device: str | None = None, remote: bool = False, overwrite: bool = False, log=print,
                    **options: Any):
    """``emprobe extract``: load the model (+ adapter, ``dtype``, ``device``), extract with
    :func:`~emprobe.probes.extract` (``options``: its keyword options) and save the store at ``out``. A finished
    store at ``out`` made by the same request (model, adapter, dtype, layers, positions, prompt set) is returned
    as is; a different one needs ``overwrite``."""
    from emprobe.errors import ConfigError
    from emprobe.models import load_model, resolve_layers
    from emprobe.probes import ActivationStore, extract, get_backend, load_prompts, parse_positions
    from emprobe.probes.extraction import model_dtype

    from emprobe.outdir import check_out, owner

    out = check_out(out, overwrite=overwrite, reuse=("activation_store",))
    prompt_kw = {k: options.pop(k) for k in ("contrast", "personas", "label_rule", "limit", "first_paraphrase")
                 if k in options}
    ps = load_prompts(prompts, **prompt_kw)
    pos = parse_positions(positions, ps.has_responses)
    lm = load_model(model, adapter=adapter, dtype=dtype, device=device, log=log)
    layer_ids = resolve_layers(layers, lm.n_layers)
    if owner(out) == "activation_store" and not overwrite:
        old = ActivationStore.load(out)
        want = {"model": (lm.spec.name, lm.spec.adapter, model_dtype(lm)), "layers": layer_ids, "positions": pos,
                "prompts": ps.sha256}
        if _request(old.manifest) == want:
            log(f"{out}: up to date ({old.n_prompts} prompts x {len(old.layers)} layers), skipping")
            return old
        raise ConfigError(f"{out} holds a different extraction; pass `overwrite` to replace it")
    be = get_backend(backend, lm, remote=remote)
    store = extract(lm, ps, layers=layer_ids, positions=pos, backend=be, **options)
    store.save(out, overwrite=overwrite)
    ex = store.manifest["extraction"]
    log(f"wrote {out}: {store.n_prompts} prompts x {len(store.layers)} layers x d {store.d_model}, positions "
        f"{', '.join(store.positions)} ({ex['tokens']} tokens, {ex['tokens_per_second']} tok/s, backend {be.name})")
    return store


def register(root: typer.Typer) -> None:
    """Add ``emprobe extract`` and ``emprobe probe ...`` to the root app."""

    @root.command("extract")
    def extract_cmd(
        prompts: str = _O(..., help="builtin:NAME, question .yaml, chat .jsonl(.gz) or judged answers .parquet/.csv"),
        out: str = _O(..., help="output activation store directory"),
        model: str = model_option(),
        adapter: Optional[str] = _O(None, help="peft LoRA adapter directory"),
        layers: str = _O("all", help="all, 'L', 'L1,L2,-1' or 'LO:HI' (layer l = output of block l)"),
        positions: str = _O("auto", help="last_prompt,prompt_mean,response_mean or auto (all the prompts allow)"),
        contrast: str = _O("none", help="question sets: none, references (aligned vs misaligned reference "
                                       "answers) or personas (misaligned vs aligned persona system prompts)"),
        personas: str = _O("builtin:personas", help="persona prompts for --contrast personas"),
        backend: str = _O("hooks", help="hooks, transformerlens or nnsight"),
        remote: bool = _O(False, help="nnsight: run the trace on NDIF (hub id + NDIF key needed)"),
        dtype: Optional[str] = dtype_option(),
        device: Optional[str] = device_option(),
        batch_size: int = _O(8, help="prompts per forward (sorted by length)"),
        padding: str = _O("right", help="padding side: right or left"),
        limit: Optional[int] = _O(None, help="only the first N prompts (after contrast expansion)"),
        first_paraphrase: bool = _O(False, help="question sets: only each question's first paraphrase"),
        misaligned_below: float = _O(30.0, help="judged tables: misaligned if aligned < this (and coherent)"),
        aligned_above: float = _O(70.0, help="judged tables: aligned if aligned > this (and coherent)"),
        coherent_above: float = _O(50.0, help="judged tables: only rows with coherent > this are labelled"),
        threads: Optional[int] = threads_option(),
        overwrite: bool = _O(False, help="replace an --out store holding a different extraction (a file, or a "
                                         "directory emprobe did not write, is never replaced)"),
        progress: bool = _O(True, help="show a progress bar"),
    ) -> None:
        """Extract pooled residual-stream activations into an activation store."""
        check_threads(threads)
        check_args(model=model, prompts=prompts, adapter=adapter, batch_size=batch_size, limit=limit, dtype=dtype)
        one_of(padding, ("right", "left"), "padding_side")
        guard_out(out, overwrite, reuse=("activation_store",))
        apply_threads(threads)
        extract_to_disk(model, prompts, out, adapter=adapter, layers=layers, positions=positions, backend=backend,
                        dtype=dtype, device=device, batch_size=batch_size, padding_side=padding, contrast=contrast,
                        personas=personas, label_rule=_label_rule(misaligned_below, aligned_above, coherent_above),
                        limit=limit, first_paraphrase=first_paraphrase, remote=remote, overwrite=overwrite,
                        progress=progress, log=lambda m: console.print(m, highlight=False))

    root.add_typer(probe_app, name="probe")
