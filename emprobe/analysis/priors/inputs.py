"""Inputs of ``priors``: per-question targets, per-pair tables, feature stores named by their model's kind.

- :func:`load_target` — a per-question target from a score table, a judged answers table, or a DataFrame;
- :func:`pair_margins` — per-(question, reference pair) margins of a margin score table (the reliability input);
- :func:`per_question` — any per-question input (Series, DataFrame, long per-pair table, file) as a Series;
- :func:`feature_stores` — activation stores named by the kind of model they come from (``pre-trained`` /
  ``instruct``, read from the model, never assumed);
- :func:`question_features` — ``[n_questions, n_layers * d]`` per-question activations.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emprobe.errors import ConfigError, DataError

#: value columns recognised in per-question DataFrames, in order of preference
VALUE_COLUMNS = ("target", "value", "rise", "change", "margin", "base_margin", "em_rate")


def load_target(source: Any, baseline: Any = None, thresholds=None) -> pd.DataFrame:
    """Per-question target ``[question_id, target, target_kind]`` (higher = more misaligned).

    ``source``: an ``emprobe eval`` score table directory (margin → ``margin``; judge → ``em_rate``), a
    judged answers table (CSV/parquet with ``question_id``, ``aligned``, ``coherent`` → EM rate under
    ``thresholds``, default aligned < 30 and coherent > 50), or a DataFrame (``question_id`` and a value
    column; a long table with a ``pair`` column is averaged per question). With ``baseline`` (same kinds),
    the target is the difference after − before.
    """
    if isinstance(source, (pd.DataFrame, pd.Series)):
        kind = str(source["target_kind"].iloc[0]) if isinstance(source, pd.DataFrame) and "target_kind" in source \
            else "target"
        df = per_question(source, "target").rename("target").reset_index().assign(target_kind=kind)
    else:
        df = _target_from_file(Path(source), thresholds)
    df = df.dropna(subset=["target"])
    if baseline is not None:
        base = load_target(baseline, None, thresholds).set_index("question_id")["target"]
        df = df[df.question_id.isin(base.index)].copy()
        df["target"] = df["target"].to_numpy() - base.loc[df.question_id].to_numpy()
        df["target_kind"] = df["target_kind"] + "_rise"
    if df.empty:
        raise DataError(f"{source if not isinstance(source, pd.DataFrame) else 'target table'}: "
                        "no question has a target score")
    return df.reset_index(drop=True)


def _target_from_file(path: Path, thresholds) -> pd.DataFrame:
    from emprobe.evaluation import EMThresholds, em_summary
    from emprobe.evaluation.tables import ScoreTable
    from emprobe.io import read_table

    if path.is_dir():
        table = ScoreTable.load(path)
        col = "margin" if "margin" in table.summary.columns else "em_rate"
        if col not in table.summary.columns:
            raise DataError(f"{path}: score table summary has neither 'margin' nor 'em_rate'")
        keep = ["question_id", col] + (["category"] if "category" in table.summary.columns else [])
        return table.summary[keep].rename(columns={col: "target"}).assign(target_kind=col)
    if not path.is_file():
        raise DataError(f"{path}: no such score table or judged answers file")
    raw = read_table(path, "judged answers table")
    missing = {"question_id", "aligned", "coherent"} - set(raw.columns)
    if missing:
        raise DataError(f"{path}: judged answers table lacks columns {sorted(missing)}")
    summ = em_summary(raw, thresholds or EMThresholds())
    return summ[["question_id", "em_rate"]].rename(columns={"em_rate": "target"}).assign(target_kind="em_rate")


def pair_margins(source: Any, baseline: Any = None) -> pd.DataFrame:
    """``[question_id, pair, value]``: margin per reference pair (misaligned reference i − aligned reference i,
    log-probs averaged over paraphrases) of a margin score table; with ``baseline``, after − before."""
    from emprobe.evaluation.tables import ScoreTable

    table = source if isinstance(source, ScoreTable) else ScoreTable.load(source)
    s = table.scores
    if not {"question_id", "kind", "reference_index", "logprob_mean"} <= set(s.columns):
        raise DataError(f"{source}: not a margin score table (no per-reference log-probs)")
    ref = s.groupby(["question_id", "kind", "reference_index"]).logprob_mean.mean().unstack("kind")
    out = (ref["misaligned"] - ref["aligned"]).dropna().rename("value").reset_index()
    out = out.rename(columns={"reference_index": "pair"})
    if baseline is not None:
        before = pair_margins(baseline).set_index(["question_id", "pair"]).value
        out = out.set_index(["question_id", "pair"])
        out = (out.value - before).dropna().rename("value").reset_index()
    return out


def per_question(obj: Any, what: str = "value") -> pd.Series | None:
    """A per-question Series (index ``question_id``) from a Series, a DataFrame (``question_id`` + a value
    column; long per-pair tables are averaged per question) or a target file (:func:`load_target`)."""
    if obj is None:
        return None
    if isinstance(obj, pd.Series):
        return obj.astype(float).rename_axis("question_id")
    if isinstance(obj, dict):
        return pd.Series(obj, dtype=float).rename_axis("question_id")
    if not isinstance(obj, pd.DataFrame):
        return load_target(obj).set_index("question_id")["target"]
    return obj.groupby("question_id", sort=False)[value_column(obj, what)].mean().astype(float)


def value_column(df: pd.DataFrame, what: str = "value") -> str:
    """The value column of a per-question (or per-pair) table: ``what``, a known name, or the only numeric one."""
    if "question_id" not in df.columns:
        raise DataError(f"{what} table lacks a 'question_id' column (columns: {list(df.columns)})")
    col = next((c for c in (what, *VALUE_COLUMNS) if c in df.columns), None)
    if col is None:
        numeric = [c for c in df.columns if c not in ("question_id", "pair") and pd.api.types.is_numeric_dtype(df[c])]
        if len(numeric) != 1:
            raise DataError(f"{what} table: cannot tell the value column (numeric columns: {numeric})")
        col = numeric[0]
    return col


def pair_table(target: Any, control: Any = None) -> pd.DataFrame | None:
    """``[question_id, pair, rise(, control)]`` when ``target`` (and ``control``) are per-pair DataFrames."""
    def is_pairs(x: Any) -> bool:
        return isinstance(x, pd.DataFrame) and {"question_id", "pair"} <= set(x.columns)

    if not is_pairs(target):
        return None
    keys = ["question_id", "pair"]
    out = target[[*keys, value_column(target, "target")]].set_axis([*keys, "rise"], axis=1)
    if is_pairs(control):
        ctrl = control[[*keys, value_column(control, "control")]].set_axis([*keys, "control"], axis=1)
        out = out.merge(ctrl, on=keys)
    return out


def question_categories(categories: Any, target: Any) -> pd.Series | None:
    """Each question's category (topic) as a Series indexed by ``question_id``: from ``categories`` (a mapping,
    Series, or DataFrame with ``question_id`` and ``category``), else from a ``category`` column of the target
    table; ``None`` when neither gives one."""
    src = categories
    if src is None and isinstance(target, pd.DataFrame) and "category" in target.columns:
        src = target
    if src is None:
        return None
    if isinstance(src, dict):
        src = pd.Series(src)
    if isinstance(src, pd.DataFrame):
        if not {"question_id", "category"} <= set(src.columns):
            raise DataError(f"categories table needs question_id and category columns (has {list(src.columns)})")
        src = src.drop_duplicates("question_id").set_index("question_id").category
    if not isinstance(src, pd.Series):
        raise ConfigError(f"categories must be a mapping, Series or DataFrame, got {type(src).__name__}")
    return src.astype(str).rename_axis("question_id")


def model_kind(model: dict[str, Any]) -> str | None:
    """``instruct`` / ``pre-trained`` for a store's model record: an explicit ``kind``, else the built-in
    registry's kind, else the name (instruct / chat / -it vs base / pretrained), else whether the model
    directory's tokenizer has a chat template; ``None`` when nothing tells."""
    if model.get("kind"):
        return str(model["kind"])
    from emprobe.models.registry import BUILTIN_MODELS

    name = str(model.get("name") or "")
    if name in BUILTIN_MODELS:
        return "instruct" if BUILTIN_MODELS[name].kind == "instruct" else "pre-trained"
    stem = Path(name).name.lower()
    if re.search(r"instruct|chat|(^|[-_])it($|[-_])", stem):
        return "instruct"
    if re.search(r"(^|[-_])(base|pretrained|pre-trained|pt)($|[-_])", stem):
        return "pre-trained"
    cfg = Path(str(model.get("path") or name)) / "tokenizer_config.json"
    if cfg.is_file():
        import json

        has = "chat_template" in json.loads(cfg.read_text(encoding="utf-8"))
        return "instruct" if has or (cfg.parent / "chat_template.jinja").is_file() else "pre-trained"
    return None


def feature_stores(features: Any) -> dict[str, Any]:
    """``{name: ActivationStore}`` from a dict (names kept), one store / directory, or a list of them
    (named by their model's kind — ``pre-trained`` / ``instruct`` — or the model's name when it is unknown;
    two stores of one kind get the model's name appended)."""
    from emprobe.probes import ActivationStore

    if isinstance(features, dict):
        if not features:
            raise ConfigError("priors needs at least one activation store")
        return {str(k): ActivationStore.load(v) for k, v in features.items()}
    items = [features] if isinstance(features, (str, Path, ActivationStore)) else list(features)
    if not items:
        raise ConfigError("priors needs at least one activation store")
    stores = [ActivationStore.load(f) for f in items]
    names = [model_kind(s.model) or str(s.model.get("name") or "model") for s in stores]
    out: dict[str, Any] = {}
    for name, s in zip(names, stores):
        if names.count(name) > 1:
            name = f"{name} ({Path(str(s.model.get('name'))).name})"
        while name in out:
            name += "'"
        out[name] = s
    return out


def question_features(store, layers: str | Sequence[int] | None, question_ids: Sequence[str],
                      position: str = "last_prompt") -> np.ndarray:
    """``[n_questions, n_layers * d]``: each question's activations averaged over its paraphrases."""
    x = store.get(position, store.resolve_layers(layers)).numpy()
    x = x.reshape(len(x), -1)
    groups = store.groups
    missing = [q for q in question_ids if q not in set(groups)]
    if missing:
        raise DataError(f"activation store lacks questions {missing[:5]} (extract on the same question set)")
    return np.stack([x[groups == q].mean(0) for q in question_ids])


def priors_inputs(target: Any, baseline: Any = None, control_target: Any = None, base_margin: Any = None) -> dict:
    """``priors`` keyword inputs from files: the target (after − ``baseline``), the aligned control's change
    (``control_target`` − ``baseline``), the base margin (``base_margin``, else the baseline itself when it
    is a margin table) and, for margin score tables, the per-pair rises (and control changes) for the
    reliability."""
    out: dict[str, Any] = {"target": load_target(target, baseline)}
    if control_target is not None:
        if baseline is None:
            raise ConfigError("`control_target` needs `baseline` (the control's change = control − baseline)")
        out["control"] = load_target(control_target, baseline)
    kind = str(out["target"].target_kind.iloc[0])
    if base_margin is not None:
        out["base_margin"] = load_target(base_margin)
    elif baseline is not None and kind == "margin_rise":
        out["base_margin"] = load_target(baseline)
    if kind == "margin_rise" and all(Path(p).is_dir() for p in (target, baseline)):
        pairs = pair_margins(target, baseline).rename(columns={"value": "rise"})
        if control_target is not None:
            ctrl = pair_margins(control_target, baseline).rename(columns={"value": "control"})
            pairs = pairs.merge(ctrl, on=["question_id", "pair"])
        out["reliability"] = pairs
    return out
