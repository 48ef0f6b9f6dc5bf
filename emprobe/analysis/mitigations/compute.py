"""``ep.mitigations``: training-time mitigations of EM compared on one bench, at matched in-domain loss.

For every mitigation (the runs of one option set, e.g. ``kl``) and the unmitigated ``reference`` runs (``none``) of
the same dataset: the share of the reference's EM-specific rise (off-domain margin minus the aligned-data control's)
that the mitigation removes at the lowest in-domain loss both reach (:mod:`emprobe.analysis.mitigations.effects`),
the in-domain validation loss it costs at the end of training, and the in-domain held-out margin it costs; each
mitigation gets a verdict under the shared rule (:mod:`emprobe.analysis.stats.verdict`) with the SESOI declared up
front (default: 25 % of the rise removed).

**Claim 1's positive control**: claim 1's test (:func:`emprobe.analysis.dynamics.dynamics`) is run once more with the
best mitigation's runs added as one more "schedule". A mitigation that reaches a better-aligned point at matched
loss should make the test say "not supported": that is what shows the test can fail.

Input: run directories (scored here on ``questions``; each run's mitigation read from its ``run.json``) or a long
table, one row per (run, checkpoint, question): ``run``, ``mitigation``, ``step``, ``val_loss``, ``question_id``,
``margin``; optional ``unit`` (what pairs runs across mitigations; default the ``seed`` column, else one unit),
``data`` (or ``dataset``), ``control`` (aligned-data control runs), ``schedule``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from emprobe.analysis.mitigations.effects import (
    Paired, Trajectory, per_unit, shared_level, summarise, trajectories, unit_difference,
)
from emprobe.analysis.mitigations.result import MitigationsResult
from emprobe.analysis.stats.verdict import Effect, decide
from emprobe.errors import ConfigError

REQUIRED = ("run", "mitigation", "step", "val_loss", "question_id", "margin")


def _normalise(df: pd.DataFrame, name: str = "table") -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"mitigations {name} lacks columns {missing}")
    if df.empty:
        raise ConfigError(f"mitigations {name} is empty")
    if not np.all(np.isfinite(df[["val_loss", "margin"]].to_numpy(float))):
        raise ConfigError(f"NaN or inf in the mitigations {name}'s val_loss / margin")
    out = df.assign(run=df.run.astype(str), mitigation=df.mitigation.astype(str),
                    question_id=df.question_id.astype(str))
    if "data" not in out.columns:
        out["data"] = out["dataset"].astype(str) if "dataset" in out.columns else "?"
    if "unit" not in out.columns:
        out["unit"] = out["seed"].astype(str) if "seed" in out.columns else "0"
    out["unit"] = out.unit.astype(str)
    out["control"] = out["control"].astype(bool) if "control" in out.columns else False
    return out


def _from_runs(runs, questions, control_runs, batch_size: int, merge: bool) -> pd.DataFrame:
    from emprobe.analysis.dynamics.compute import is_aligned_control
    from emprobe.analysis.margins import margins, resolve_runs
    from emprobe.finetuning.mitigations import mitigation_label

    found = resolve_runs(runs)
    long = margins(found, questions, batch_size=batch_size, merge=merge, cache=True).loss_margins()
    info = {r.name: (mitigation_label(r.settings), str(r.settings.get("seed", 0))) for r in found}
    controls = ({getattr(r, "name", None) or str(r).rstrip("/").split("/")[-1] for r in control_runs}
                if control_runs is not None else {n for n, d in zip(long.run, long.data) if is_aligned_control(d)})
    long = long.assign(mitigation=long.run.map(lambda n: info[n][0]), unit=long.run.map(lambda n: info[n][1]),
                       control=long.run.isin(controls))
    return long.assign(data=long.data.map(_control_twin(long)))


def _control_twin(long: pd.DataFrame) -> dict[str, str]:
    """Each training-data source -> the dataset it belongs to: a control's data (``X-aligned``) belongs to ``X``, or to
    the only non-control dataset there is."""
    import re

    narrow = sorted(set(long[~long.control].data))
    out = {d: d for d in narrow}
    for d in sorted(set(long[long.control].data)):
        twin = [n for n in narrow if re.sub(r"[-_]aligned(?=(\.|$))", "", d) == n]
        if not twin and len(narrow) != 1:
            raise ConfigError(f"cannot tell which dataset the control data {d} belongs to (datasets: {narrow}); "
                              "pass a table with a data column")
        out[d] = (twin or narrow)[0]
    return out


def _compare(ref: list[Trajectory], mit: list[Trajectory], ctl: list[Trajectory], base: np.ndarray,
             n_boot: int, level: float, rng: np.random.Generator) -> dict[str, Any]:
    """The matched-loss comparison of one mitigation with the reference (see the effects module)."""
    level_loss = shared_level(ref + mit)
    if level_loss is None:
        return {"loss_level": np.nan}
    ref_at, mit_at = [t.at_loss(level_loss) for t in ref], [t.at_loss(level_loss) for t in mit]

    def control_at(step: float) -> np.ndarray:
        return np.mean([c.at_step(step) for c in ctl], axis=0) if ctl else base

    rise = [m - control_at(step) for m, step in ref_at]
    p = Paired.build(per_unit(ref, [m for m, _ in ref_at]), per_unit(mit, [m for m, _ in mit_at]), per_unit(ref, rise))
    return {"loss_level": level_loss, "step_reference": float(np.mean([s for _, s in ref_at])),
            "step_mitigation": float(np.mean([s for _, s in mit_at])), "n_units": len(p.x), "paired": p.paired,
            **summarise(p, n_boot, level, rng)}


def _heldout(heldout: pd.DataFrame, ref: list[str], mit: list[str], units: dict[str, str], n_boot: int,
             level: float, rng: np.random.Generator) -> dict[str, Any]:
    """In-domain held-out margin cost: reference − mitigation at the last checkpoint, as a share of the reference's
    in-domain rise (last checkpoint − step 0)."""
    h = heldout[heldout.run.isin(ref + mit)]
    if h.empty or not set(ref) & set(h.run) or not set(mit) & set(h.run):
        return {}
    qs = sorted(set.intersection(*[set(g.question_id) for _, g in h.groupby("run")]))
    wide = {r: g.groupby(["step", "question_id"]).margin.mean().unstack()[qs] for r, g in h.groupby("run")}
    last = {r: w.loc[w.index.max()].to_numpy(float) for r, w in wide.items()}
    base = {r: w.loc[w.index.min()].to_numpy(float) for r, w in wide.items()}
    pick = lambda names, f: {u: np.mean([f(r) for r in names if r in wide and units[r] == u], axis=0)  # noqa: E731
                             for u in sorted({units[r] for r in names if r in wide})}
    p = Paired.build(pick(ref, last.get), pick(mit, last.get), pick(ref, lambda r: last[r] - base[r]))
    return {**summarise(p, n_boot, level, rng, prefix="heldout_"), "heldout_n_questions": len(qs)}


def _decide(row: dict[str, Any], sesoi: float, level: float) -> tuple[str, str]:
    if not np.isfinite(row.get("loss_level", np.nan)):
        d = decide(Effect(np.nan, np.nan, np.nan), sesoi, cannot_test="its runs and the reference's share no "
                   "in-domain loss range")
        return d.verdict, d.reason
    rise = Effect(row["rise"], row["rise_ci_low"], row["rise_ci_high"])
    no_em = None if rise.ci_low > 0 else (f"no EM-specific rise is established for the reference at val loss "
                                          f"{row['loss_level']:.3f} ({rise.text()})")
    d = decide(Effect(row["fraction"], row["fraction_ci_low"], row["fraction_ci_high"], level), sesoi,
               cannot_test=no_em, units="of the rise", fmt="+.2f")
    return d.verdict, d.reason


def _effects(long: pd.DataFrame, heldout: pd.DataFrame | None, reference: str, sesoi: float, alpha: float,
             n_boot: int, seed: int) -> pd.DataFrame:
    rows, rng = [], np.random.default_rng(seed)
    names = sorted(set(long[~long.control].mitigation) - {reference})
    if not names:
        raise ConfigError(f"no mitigation to compare with the reference {reference!r} (mitigations: "
                          f"{sorted(set(long[~long.control].mitigation))})")
    level = 1 - alpha / len(names)  # Bonferroni over the mitigations compared
    for data, g in long.groupby("data", sort=True):
        qs = sorted(set.intersection(*[set(r.question_id) for _, r in g.groupby("run")]))
        non, ctl = g[~g.control], trajectories(g[g.control], qs)
        ref = trajectories(non[non.mitigation == reference], qs)
        if not ref:
            raise ConfigError(f"dataset {data!r} has no {reference!r} run to compare the mitigations with")
        base = np.mean([t.margins[0] for t in ref], axis=0)
        final = {t.run: float(t.loss[-1]) for t in trajectories(non, qs)}
        units = dict(zip(non.run, non.unit))
        for name in names:
            mit = trajectories(non[non.mitigation == name], qs)
            if not mit:
                continue
            row = {"data": data, "mitigation": name, "n_runs": len(mit), "n_questions": len(qs),
                   "ci_level": level, "has_control": bool(ctl), **_compare(ref, mit, ctl, base, n_boot, level, rng)}
            last = [per_unit(runs, [final[t.run] for t in runs]) for runs in (ref, mit)]
            cost = unit_difference(*last)
            row.update(dict(zip(("loss_cost", "loss_cost_ci_low", "loss_cost_ci_high"), cost)),
                       val_loss_reference=float(np.mean([final[t.run] for t in ref])),
                       val_loss_mitigation=float(np.mean([final[t.run] for t in mit])))
            if heldout is not None:
                row.update(_heldout(heldout, [t.run for t in ref], [t.run for t in mit], units, n_boot, level, rng))
            row["verdict"], row["reason"] = _decide(row, sesoi, level)
            rows.append(row)
    return pd.DataFrame(rows)


def _curves(long: pd.DataFrame) -> pd.DataFrame:
    """Per (data, mitigation, run, step): in-domain val loss and the mean off-domain margin (controls included)."""
    g = long.groupby(["data", "mitigation", "control", "run", "unit", "step"], sort=True)
    return g.agg(val_loss=("val_loss", "first"), margin=("margin", "mean")).reset_index()


def positive_control(long: pd.DataFrame, effects: pd.DataFrame, reference: str, claim1: pd.DataFrame | None,
                     **claim1_kw: Any):
    """Claim 1's test with the best mitigation's runs added as one more schedule: ``(best, DynamicsResult)``.

    Best = the supported mitigation with the largest fraction removed, else the largest estimate (``None`` when no
    mitigation could be compared). ``claim1``: claim 1's own checkpoint table (default: the reference runs, each
    under its ``schedule``, with the aligned-data control runs). The test keeps the EM rise, and so the SESOI, that
    claim 1's own runs declare: the added runs enter the matched-loss comparison only, not the pool that establishes
    EM (a mitigation that removes EM would otherwise shrink the very rise its gap is measured against)."""
    from dataclasses import replace

    from emprobe.analysis.dynamics import dynamics

    ok = effects[np.isfinite(effects.fraction.astype(float))] if "fraction" in effects else effects.iloc[0:0]
    if ok.empty:
        return None, None
    ranked = ok.assign(s=ok.verdict.eq("supported")).sort_values(["s", "fraction"], ascending=False)
    best = str(ranked.mitigation.iloc[0])
    base = claim1 if claim1 is not None else long[(long.mitigation == reference) | long.control]
    base = base.assign(schedule=base["schedule"].astype(str) if "schedule" in base.columns else reference)
    added = long[(long.mitigation == best) & ~long.control]
    added = added.assign(run=added.run.astype(str), schedule=f"{best} (mitigation)")
    cols = ["run", "schedule", "data", "step", "val_loss", "question_id", "margin", "control"]
    base = _normalise(base.assign(mitigation=reference))[cols]
    own = dynamics(base, **claim1_kw)
    both = dynamics(pd.concat([base, _normalise(added)[cols]], ignore_index=True), **claim1_kw)
    return best, replace(both, rises=own.rises)


def mitigations(runs_or_table, *, reference: str = "none", heldout: pd.DataFrame | None = None,
                claim1: pd.DataFrame | None = None, control_runs: Sequence | None = None,
                questions: Any = "builtin:em-core", heldout_questions: Any = None, sesoi: float = 0.25,
                alpha: float = 0.05, n_boot: int = 2000, seed: int = 0, claim1_kw: dict | None = None,
                batch_size: int = 8, merge: bool = False) -> MitigationsResult:
    """Compare training-time mitigations with the unmitigated ``reference`` runs at matched in-domain loss.

    ``runs_or_table``: run directories / a sweep directory (scored on ``questions``; a run's mitigation is the
    ``+``-joined options its ``run.json`` enables, ``none`` without any) or a long table (module docstring).
    ``heldout``: in-domain held-out margins (``run, step, question_id, margin``; step 0 and the last step) or,
    for runs, ``heldout_questions`` to score them. ``sesoi``: the smallest fraction of the EM-specific rise removed
    that counts (declared before looking; default 0.25). CIs are Bonferroni-corrected over the mitigations.
    ``claim1``: claim 1's checkpoint table for the positive control (default: the reference runs);
    ``claim1_kw``: options of :func:`~emprobe.analysis.dynamics.dynamics` (``min_gap``, ``n_permutations``, ...).
    """
    from emprobe.validate import describe, number, path_arg

    number(sesoi, "sesoi", low=0, high=1, low_open=True, high_open=True)  # a fraction of the rise
    if not isinstance(runs_or_table, (pd.DataFrame, list, tuple)):
        path_arg(runs_or_table, "runs_or_table", "sweep or run directory", ("Run",))
    elif not len(runs_or_table):
        raise ConfigError(f"`runs_or_table` is empty ({describe(runs_or_table)}); give runs or a long table")
    meta: dict[str, Any] = {"reference": reference}
    if isinstance(runs_or_table, pd.DataFrame):
        long = _normalise(runs_or_table)
    else:
        long = _normalise(_from_runs(runs_or_table, questions, control_runs, batch_size, merge))
        meta["runs"] = sorted(set(long.run))
        if heldout is None and heldout_questions is not None:
            from emprobe.analysis.margins import margins

            heldout = margins(runs_or_table, heldout_questions, batch_size=batch_size, cache=True).loss_margins()
    if heldout is not None:
        heldout = heldout.assign(run=heldout.run.astype(str), question_id=heldout.question_id.astype(str))
    effects = _effects(long, heldout, reference, sesoi, alpha, n_boot, seed)
    best, control = positive_control(long, effects, reference, claim1, **{"seed": seed, **(claim1_kw or {})})
    return MitigationsResult(effects=effects, curves=_curves(long), sesoi=sesoi, reference=reference, best=best,
                             positive_control=control, meta=meta)
