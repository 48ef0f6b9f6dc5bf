"""``ep.screen``: rank training examples by their projection difference on a misalignment direction, and test
the ranking causally by retraining without the top-ranked ones.

1. **Screen** (:mod:`~emprobe.analysis.screen.scores`): each example's ``ΔP_i`` — the base model's response-mean
   activation of the example's response minus that of the base model's own answer to the same prompt, projected
   on the unit direction at ``layer`` (Chen et al., arXiv 2507.21509) — and its rank.
2. **Retrain** (``retrain=K``, :mod:`~emprobe.analysis.screen.retrain`): the template ``run`` retrained without
   the top-K examples and, as the control, without K random examples (``n_random`` ≥ 3 draws); each arm's
   EM-specific rise per question (its margin minus the aligned ``control`` run's). The claim "removing the
   top-K screened examples removes more of the EM-specific rise than removing K random ones" is decided on
   ``fraction removed (top) − fraction removed (random)`` with a bootstrap CI over questions and random draws,
   under the shared rule (:mod:`emprobe.analysis.stats.verdict`) with a SESOI of ``sesoi`` (default 0.1: ten
   percentage points of the rise), declared before looking. Without EM to remove (the full run's EM-specific
   rise has a CI including 0) the verdict is inconclusive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from emprobe.analysis.args import check_screen
from emprobe.analysis.screen.result import ScreenResult
from emprobe.analysis.screen.retrain import (
    CONTROL, FULL, arm_margins, em_rises, fraction_stats, n_remove, removal_sets, retrain_configs, train_arms,
    write_subsets,
)
from emprobe.analysis.screen.scores import projection_differences
from emprobe.errors import ConfigError, DataError


def screen(direction: Any, data: Any = None, *, model: Any = None, layer: int | None = None,
           baseline: Any = "generate", max_new_tokens: int = 96, run: Any = None, control: Any = None,
           retrain: int | float | None = None, n_random: int = 3, questions: Any = "builtin:em-core",
           n_questions: int | None = None, out: str | Path | None = None, executor: str = "local",
           threads: int | None = None, max_parallel: int | None = None, sesoi: float = 0.1, n_boot: int = 2000,
           batch_size: int = 8, seed: int = 0, log: Callable[[str], Any] | None = print) -> ScreenResult:
    """Screen ``data`` with ``direction`` and, with ``retrain``, test the screening causally (module docstring).

    ``direction``: a :class:`~emprobe.probes.Direction` or its directory, fitted on the base model; ``layer``:
    where to project (default its best layer; layer ``l`` = residual stream after decoder block ``l``).
    ``data`` / ``model``: the chat data and the base model (default: the ``run``'s). ``baseline``: ``"generate"``
    (the base model's greedy answer to each prompt, the paper's recipe, up to ``max_new_tokens``) or a chat
    dataset whose rows answer the same prompts. ``run``: the fine-tuning run on the full data (its settings are the
    retrain recipe, its last checkpoint the full-data arm); ``control``: its aligned-data control run;
    ``retrain``: K to remove (a count, or a fraction such as 0.1); ``n_random``: random draws (≥ 3);
    ``questions``: off-domain questions for the EM-specific rise (first ``n_questions``); ``out``: where the
    filtered data (``OUT/data``) and retrain runs (``OUT/runs``) go; ``executor``/``threads``/``max_parallel``:
    how the retrains run side by side.
    """
    from emprobe.data import load_chat_dataset
    from emprobe.finetuning import Run
    from emprobe.models import load_model
    from emprobe.probes import Direction

    check_screen(direction=direction, data=data, model=model, layer=layer, baseline=baseline, run=run,
                 control=control, retrain=retrain, n_random=n_random, questions=questions, n_questions=n_questions,
                 out=out, executor=executor, max_parallel=max_parallel, sesoi=sesoi, n_boot=n_boot,
                 batch_size=batch_size, max_new_tokens=max_new_tokens)
    tmpl = Run.load(run) if run is not None else None
    ds = load_chat_dataset(data if data is not None else tmpl.settings["data"])
    if retrain is not None:
        _check_retrain(tmpl, ds, retrain)
    d = Direction.load(direction)
    lm = load_model(model if model is not None else _run_base(tmpl))
    _check_fits(d, lm)
    layer = d.best_layer if layer is None else int(layer)
    if layer is None:
        raise ConfigError("the direction has no best layer: pass `layer`")
    scores = projection_differences(lm, ds, d, layer, baseline, max_new_tokens, batch_size)
    meta = {"model": lm.spec.name, "data": str(getattr(ds, "source", data)), "direction": str(d.path or d.method),
            "layer": layer, "baseline": str(baseline)}
    common = dict(scores=scores, layer=layer, sesoi=sesoi, baseline=str(baseline), meta=meta)
    if retrain is None:
        return ScreenResult(**common)
    return ScreenResult(**common, **_retrain_test(
        lm, ds, scores, tmpl, Run.load(control), n_remove(retrain, len(ds)), Path(out), meta,
        dict(n_random=n_random, questions=questions, n_questions=n_questions, executor=executor, threads=threads,
             max_parallel=max_parallel, n_boot=n_boot, batch_size=batch_size, seed=seed, log=log)))


def _retrain_test(lm, ds, scores, tmpl, control, k: int, out: Path, meta: dict, o: dict) -> dict:
    """Retrain without the top-K and K random examples, score every arm; the retrain fields of a ScreenResult."""
    from emprobe.data import QuestionSet, load_questions

    from emprobe.io import claim_dir

    removed = removal_sets(scores, k, o["n_random"], o["seed"])
    claim_dir(out, "screen_retrain", reuse=("screen_retrain",))
    cfgs = retrain_configs(tmpl, write_subsets(ds, removed, out / "data"), out / "runs")
    seconds = train_arms(cfgs, o["executor"], o["threads"], o["max_parallel"], o["log"])
    qs = load_questions(o["questions"]).with_references()
    qs = QuestionSet(qs.questions[:o["n_questions"] or None], qs.source, qs.name)
    arms = {FULL: tmpl.path, CONTROL: control.path, **{a: c.out for a, c in cfgs.items()}}
    margins = arm_margins(lm, arms, qs, o["batch_size"])
    meta.update(run=str(tmpl.path), control=str(control.path), out=str(out), questions=qs.name,
                train_seconds={a: round(s, 1) for a, s in seconds.items()})
    return dict(k=k, removed={a: [int(i) for i in idx] for a, idx in removed.items()}, margins=margins,
                stats=fraction_stats(em_rises(margins), o["n_boot"], o["seed"]))


def _check_retrain(tmpl, ds, retrain) -> None:
    """Fail before any work when K is off or the data is not the run's (the rest: :func:`check_screen`)."""
    n_remove(retrain, len(ds))
    trained = tmpl.manifest.get("data", {}).get("sha256")
    if trained and trained != ds.sha256:
        raise ConfigError(f"data {ds.source} is not the data the run {tmpl.path} was trained on (its sha256 differs): "
                          "the retrain test compares runs on the same data minus some examples")


def _check_fits(d, lm) -> None:
    """Refuse a direction fitted on another model (its recorded architecture, depth or width differ)."""
    from emprobe.models.arch import fingerprint

    was = (d.source.get("model") or {}).get("fingerprint") or {"d_model": d.d_model}
    now = fingerprint(lm.model)
    keys = [k for k in ("architecture", "n_layers", "d_model") if k in was and was[k] != now[k]]
    diff = [f"{k} {was[k]} vs {now[k]}" for k in keys]
    if diff:
        name = (d.source.get("model") or {}).get("name", "another model")
        raise DataError(f"`direction` {d.path or ''} was fitted on {name}, not on `model` {lm.spec.name} "
                        f"({', '.join(diff)}); fit the direction on the base model")


def _run_base(run) -> Any:
    if run is None:
        raise ConfigError("screen needs the base model (model=) or a run (run=) that names it")
    from emprobe.models import ModelSpec

    return ModelSpec(**run.model_spec)
