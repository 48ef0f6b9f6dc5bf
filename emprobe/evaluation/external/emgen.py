"""Reader of the em-generalization repository's evaluation files (``eval_*.json``, arXiv 2606.20814).

Each file is one fine-tuned model's evaluation::

    summ_by_q        {question_id: {aligned, harmless, coherent, format, <name>_std, ...}}  0-100 judge means
    eval_loss        {avg_loss, all_seq_losses: [one loss per held-out sequence], invalid_tokens_counts}
    eval_loss_token  {avg_loss, total_tokens}                  (token-weighted; not used)
    trainer_state    the HF Trainer state (global_step, max_steps, log_history with the loss per step)

Run metadata comes from the file name, ``eval_<model>_<dataset>_all_resp_<schedule part>_<eval set>.json``,
where the schedule part is ``<lr>`` (the repo's default schedule), ``<schedule>_<warm-up steps>_<lr>``
(``cosine_30_3e-05``, ``cosine_with_restarts_5_1e-05``) or ``<lr>_mode-<mode>_base_lr-<a>_max_lr-<b>`` (CyclicLR,
named ``cyclic_<mode>``); a ``runs.yaml`` entry overrides any of it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emprobe.errors import DataError
from emprobe.evaluation.external.types import ExternalRun, null_counts, score_frame

JUDGED = ("aligned", "harmless", "coherent")
_NUM = r"[0-9][0-9.]*(?:e[+-]?[0-9]+)?"
NAME = re.compile(r"^eval_(?P<model>[^_]+)_(?P<dataset>.+?)_all_resp_(?P<rest>.+)_(?P<eval_set>[A-Za-z0-9]+)\.json$")
CYCLIC = re.compile(rf"^(?P<lr>{_NUM})_mode-(?P<mode>[a-z0-9_]+?)_base_lr-(?P<base_lr>{_NUM})"
                    rf"_max_lr-(?P<max_lr>{_NUM})$")
NAMED = re.compile(rf"^(?P<schedule>[a-z_]+?)_(?P<warmup>[0-9]+)_(?P<lr>{_NUM})$")
BARE = re.compile(rf"^(?P<lr>{_NUM})$")


def is_emgen(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def parse_name(name: str) -> dict[str, Any]:
    """Metadata from an em-generalization file name (empty when it does not follow the convention).

    >>> parse_name("eval_Qwen2.5-32B-Instruct_finance_all_resp_cosine_30_3e-05_fpq.json")["schedule"]
    'cosine_30'
    """
    m = NAME.match(name)
    if not m:
        return {}
    out: dict[str, Any] = {"model": m["model"], "dataset": m["dataset"], "eval_set": m["eval_set"]}
    rest = m["rest"]
    if c := CYCLIC.match(rest):
        out.update(schedule=f"cyclic_{c['mode']}", family=f"cyclic_{c['mode']}", lr=float(c["lr"]),
                   base_lr=float(c["base_lr"]), max_lr=float(c["max_lr"]))
    elif c := NAMED.match(rest):
        out.update(schedule=f"{c['schedule']}_{c['warmup']}", family=c["schedule"], warmup=int(c["warmup"]),
                   lr=float(c["lr"]))
    elif c := BARE.match(rest):
        out.update(schedule="default", family="default", lr=float(c["lr"]))
    else:
        out["schedule"] = rest
    return out


def run_name(path: Path) -> str:
    """``eval_<x>.json`` -> ``<x>`` (the run's default name)."""
    return path.stem.removeprefix("eval_")


def _number(path: Path, where: str, v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DataError(f"{path}: {where} is {v!r}, not a number or null")
    return float(v)


def _scores(path: Path, summ: Any) -> tuple[pd.DataFrame, list[str]]:
    if not isinstance(summ, dict) or not summ:
        raise DataError(f"{path}: 'summ_by_q' must map question ids to their scores (got "
                        f"{type(summ).__name__}{' (empty)' if isinstance(summ, dict) else ''})")
    given = [s for s in JUDGED if any(isinstance(v, dict) and s in v for v in summ.values())]
    if not given:
        raise DataError(f"{path}: summ_by_q has none of the scores {', '.join(JUDGED)}")
    rows = []
    for qid, v in summ.items():
        if not isinstance(v, dict):
            raise DataError(f"{path}: summ_by_q[{qid!r}] is {type(v).__name__}, not a mapping of scores")
        rows.append({"question_id": qid, **{s: _number(path, f"summ_by_q[{qid!r}].{s}", v.get(s)) for s in given}})
    return score_frame(rows), given


def _losses(path: Path, data: dict) -> tuple[float | None, np.ndarray | None, int]:
    """``(avg_loss, finite per-sequence losses, dropped)``; ``eval_loss`` is optional."""
    el = data.get("eval_loss")
    if el is None:
        return None, None, 0
    if not isinstance(el, dict):
        raise DataError(f"{path}: 'eval_loss' must be a mapping with avg_loss (got {type(el).__name__})")
    avg = el.get("avg_loss")
    avg = None if avg is None else _number(path, "eval_loss.avg_loss", avg)
    seq = el.get("all_seq_losses")
    if seq is None:
        return avg, None, 0
    if not isinstance(seq, list) or not all(x is None or isinstance(x, (int, float)) for x in seq):
        raise DataError(f"{path}: eval_loss.all_seq_losses must be a list of numbers")
    arr = np.array([np.nan if x is None else x for x in seq], float)
    ok = np.isfinite(arr)
    if not ok.any():
        raise DataError(f"{path}: eval_loss.all_seq_losses has no finite value")
    if avg is None or not math.isfinite(avg):
        avg = float(arr[ok].mean())
    return avg, arr[ok], int((~ok).sum())


def _train_log(path: Path, state: Any) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    if state is None:
        return None, {}
    if not isinstance(state, dict):
        raise DataError(f"{path}: 'trainer_state' must be a mapping (got {type(state).__name__})")
    hist = state.get("log_history") or []
    if not isinstance(hist, list):
        raise DataError(f"{path}: trainer_state.log_history must be a list")
    rows = [{"step": h.get("step"), "train_loss": h.get("loss"), "learning_rate": h.get("learning_rate")}
            for h in hist if isinstance(h, dict) and "loss" in h]
    info = {k: state.get(k) for k in ("global_step", "max_steps", "train_batch_size") if state.get(k) is not None}
    return (pd.DataFrame(rows) if rows else None), info


def read_emgen(path: str | Path) -> ExternalRun:
    """One ``eval_*.json`` file as an :class:`ExternalRun` (metadata from its name; see the module docstring)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or "summ_by_q" not in data:
        raise DataError(f"{path}: no 'summ_by_q' field (an em-generalization eval file keeps its per-question "
                        "scores there)")
    scores, given = _scores(path, data["summ_by_q"])
    loss, seq, dropped = _losses(path, data)
    log, state = _train_log(path, data.get("trainer_state"))
    meta = {**parse_name(path.name), **({"max_steps": state["max_steps"]} if "max_steps" in state else {})}
    if dropped:
        meta["seq_losses_dropped"] = dropped
    return ExternalRun(run=run_name(path), source=str(path), format="em-generalization", scores=scores, meta=meta,
                       eval_loss=loss, seq_losses=seq, train_log=log, nulls=null_counts(scores, given))
