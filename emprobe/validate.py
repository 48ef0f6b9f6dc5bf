"""Argument checks shared by the Python API and the command line (light: no torch, no pandas).

One table, :data:`CHECKS`, says what each parameter name means wherever it appears (``batch_size`` is an
integer >= 1 in every verb, ``run`` a run directory, ``questions`` a question set, ...); :func:`check_args`
applies it. Each check raises a one-line :class:`~emprobe.errors.ConfigError` (or
:class:`~emprobe.errors.DataError`) naming the parameter in backticks (```batch_size` must be >= 1, got 0``);
the command line shows the option instead (``--batch-size``). The CLI runs the checks before importing torch,
so a bad argument comes back in about a second; the API verbs run the same checks for notebook users.
"""

from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path
from typing import Any, Callable

from emprobe.errors import ConfigError, DataError, ModelError


def _is(value: Any, names: tuple[str, ...]) -> bool:
    """``value`` is an instance of a class named in ``names`` (checked by name: no heavy imports here)."""
    return any(c.__name__ in names for c in type(value).__mro__)


def _a(noun: str) -> str:
    return f"a{'n' if noun[:1].lower() in 'aeiou' else ''} {noun}"


def describe(value: Any) -> str:
    """``"a QuestionSet"`` / ``"int 12345"``: what a wrong argument is, for messages."""
    kind = type(value).__name__
    if isinstance(value, (int, float, bool)) or value is None or (isinstance(value, str) and len(value) < 60):
        return f"{kind} {value!r}"
    return _a(kind)


def number(value: Any, param: str, *, low: float | None = None, high: float | None = None, integer: bool = False,
           low_open: bool = False, high_open: bool = False, none: bool = False) -> Any:
    """``value`` when it is a finite number within ``[low, high]`` (open ends with ``low_open`` /
    ``high_open``); ``None`` passes when ``none``."""
    if value is None and none:
        return value
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"`{param}` must be {'an integer' if integer else 'a number'}, got {describe(value)}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"`{param}` must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        raise ConfigError(f"`{param}` must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return value


def one_of(value: Any, choices: Any, param: str) -> Any:
    """``value`` when it is one of ``choices``."""
    if value not in list(choices):
        raise ConfigError(f"unknown `{param}` {value!r}; choose one of {', '.join(map(str, choices))}")
    return value


def path_arg(value: Any, param: str, what: str, loaded: tuple[str, ...] = ()) -> Any:
    """``value`` when it is a non-empty path (``str`` / ``os.PathLike``) or a loaded object of a class named in
    ``loaded``; a number, ``None``, a dict or a loaded object of another kind (swapped arguments) is refused."""
    if _is(value, loaded) or (isinstance(value, (str, os.PathLike)) and str(value).strip()):
        return value
    also = "".join(f" or a loaded {n}" for n in loaded)
    raise ConfigError(f"`{param}` must be {_a(what)} (a path{also}), got {describe(value)}")


def source_arg(value: Any, param: str, what: str, loaded: tuple[str, ...] = ()) -> Any:
    """A data source: ``builtin:NAME``, an existing file, or a loaded object (classes named in ``loaded``)."""
    value = path_arg(value, param, what, loaded)
    if _is(value, loaded) or str(value).startswith("builtin:"):
        return value
    p = Path(value).expanduser()
    if not p.exists():
        raise DataError(f"`{param}` {value}: no such {what} file")
    if p.is_dir():
        raise DataError(f"`{param}` {value} is a directory, not a {what} file")
    return value


def existing_dir(value: Any, param: str, what: str, marker: str | None = None, loaded: tuple[str, ...] = ()) -> Any:
    """An existing directory holding ``marker`` (``run.json`` for a run, ...), or a loaded object."""
    value = path_arg(value, param, what, loaded)
    if _is(value, loaded):
        return value
    p = Path(value).expanduser()
    if not p.is_dir():
        raise DataError(f"`{param}` {value}: no such {what} directory" if not p.exists()
                        else f"`{param}` {value} is a file, not a {what} directory")
    if marker and not (p / marker).is_file():
        raise DataError(f"`{param}` {value} is not an emprobe {what} (no {marker})")
    return value


def model_arg(value: Any, param: str = "model") -> Any:
    """A model: a built-in alias, hub id or directory (holding ``config.json``), a ModelSpec or a LoadedModel."""
    if _is(value, ("ModelSpec", "LoadedModel")):
        return value
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConfigError(f"`{param}` must be a model (built-in alias, hub id or directory, a ModelSpec or a "
                          f"LoadedModel), got {describe(value)}")
    p = Path(value).expanduser()
    if p.is_dir() and not (p / "config.json").is_file():
        empty = "an empty directory" if not any(p.iterdir()) else "a directory without config.json"
        raise ModelError(f"`{param}` {value} is {empty}, not a model; point it at a directory written by "
                         "save_pretrained (config.json + safetensors weights) or use a built-in alias")
    if p.exists() and not p.is_dir():
        raise ModelError(f"`{param}` {value} is not a directory: a model is a directory (config.json + safetensors "
                         "weights)")
    return value


def adapter_arg(value: Any, param: str = "adapter") -> Any:
    """A peft LoRA adapter directory whose config and safetensors weights are intact (``None`` passes)."""
    if value is None:
        return value
    existing_dir(value, param, "adapter")
    from emprobe.models.adapters import read_adapter_config

    read_adapter_config(value)  # config JSON + safetensors header (truncated / corrupt weights)
    return value


def steps_arg(value: Any, param: str = "steps") -> Any:
    """A list of checkpoint steps (integers >= 0), or ``None``."""
    if value is None:
        return value
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"`{param}` must be a list of checkpoint steps, got {describe(value)}")
    for s in value:
        number(s, param, low=0, integer=True)
    return value


def directions_arg(value: Any, param: str = "directions") -> Any:
    """One direction or a list of them: Direction objects or direction directories."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ConfigError(f"`{param}` is empty; give at least one direction (emprobe probe fit / ep.fit_direction)")
    for d in items:
        existing_dir(d, param, "direction", "direction.json", ("Direction",))
    return value


def checkpoint_arg(value: Any, param: str = "adapter") -> Any:
    """A fine-tuned checkpoint: a LoRA adapter directory (checked like ``adapter``) or a full model directory."""
    existing_dir(value, param, "checkpoint")
    p = Path(value).expanduser()
    if (p / "adapter_config.json").is_file():
        return adapter_arg(value, param)
    if not (p / "config.json").is_file():
        raise DataError(f"`{param}` {value} is neither a LoRA adapter (adapter_config.json) nor a model "
                        "(config.json) directory")
    return value


def finetune_arg(value: Any, param: str = "tuned") -> Any:
    """A fine-tune: a run directory (its last checkpoint), a LoRA adapter or a full model directory (checked like
    ``checkpoint``), or a loaded model."""
    if _is(value, ("LoadedModel", "Run", "Module")):
        return value
    existing_dir(value, param, "fine-tune")
    if (Path(value).expanduser() / "run.json").is_file():
        return value
    return checkpoint_arg(value, param)


def _dtype(value: Any, param: str) -> Any:
    from emprobe.models.arch import check_dtype

    return check_dtype(value, param)


_int = partial(number, integer=True)
#: parameter name -> check(value, name); the same name means the same thing in every verb
CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "batch_size": partial(_int, low=1), "n_random": partial(_int, low=0), "n_permutations": partial(_int, low=1),
    "n_questions": partial(_int, low=1, none=True), "n_samples": partial(_int, low=0, none=True),
    "max_new_tokens": partial(_int, low=1), "temperature": partial(number, low=0), "seed": _int,
    "threshold": number, "min_gap": partial(number, low=0, low_open=True), "limit": partial(_int, low=1, none=True),
    "n_splits": partial(_int, low=2), "alpha": partial(number, low=0, low_open=True),
    "model": model_arg, "adapter": adapter_arg, "steps": steps_arg, "directions": directions_arg,
    "questions": partial(source_arg, what="question set", loaded=("QuestionSet", "PromptSet")),
    "prompts": partial(source_arg, what="prompt source", loaded=("PromptSet", "QuestionSet", "ChatDataset")),
    "data": partial(source_arg, what="chat dataset", loaded=("ChatDataset",)),
    "run": partial(existing_dir, what="run", marker="run.json", loaded=("Run",)),
    "direction": partial(existing_dir, what="direction", marker="direction.json", loaded=("Direction",)),
    "store": partial(existing_dir, what="activation store", marker="manifest.json", loaded=("ActivationStore",)),
    "sweep": partial(existing_dir, what="sweep or run"), "checkpoint": checkpoint_arg, "dtype": _dtype,
    "table": partial(source_arg, what="table", loaded=("DataFrame",)),
    "tuned": finetune_arg, "n_boot": partial(_int, low=1), "sesoi": partial(number, low=0, low_open=True),
    "text": partial(source_arg, what="text", loaded=("TextSet", "list", "tuple")),
}


#: parameters that may be ``None`` ("not given")
OPTIONAL = {"adapter", "run", "steps", "direction", "n_questions", "n_samples", "limit", "model", "dtype", "checkpoint",
            "table"}


def check_args(**values: Any) -> None:
    """Check each ``name=value`` with :data:`CHECKS` (``None`` means "not given" for optional inputs)."""
    for name, value in values.items():
        check_as(name, value, name)


def check_as(kind: str, value: Any, param: str) -> None:
    """Check ``value`` as a ``kind`` of :data:`CHECKS` under another parameter name (``control_adapter``)."""
    if value is None and kind in OPTIONAL:
        return
    CHECKS[kind](value, param)


def _fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` fits the type annotation ``tp`` (scalars, ``X | None``, tuples/lists of scalars)."""
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp in (int, float, bool) and isinstance(value, bool):
        return tp is bool
    if tp is float:
        return isinstance(value, (int, float))
    if origin in (tuple, list):
        elem = args[0] if args else Any
        return isinstance(value, (tuple, list)) and all(_fits(v, elem) for v in value)
    return isinstance(value, origin or tp) if isinstance(origin or tp, type) else True


_SINGULAR = {int: "an integer", float: "a number", str: "text", bool: "true or false", type(None): "null"}
_PLURAL = {int: "integers", float: "numbers", str: "text", bool: "true or false values", type(None): "null"}


def _type_name(tp: Any, plural: bool = False) -> str:
    """``tp`` in words: ``an integer``, ``a list of lists of text``; ``plural`` names a list's items (``integers``)."""
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a, plural) for a in args)
    if origin in (tuple, list):
        inner = f" of {_type_name(args[0], True)}" if args else ""
        return f"lists{inner}" if plural else f"a list{inner}"
    return (_PLURAL if plural else _SINGULAR).get(tp, getattr(tp, "__name__", str(tp)))


def field_types(obj: Any, name: Callable[[str], str] = lambda f: f"`{f}`") -> None:
    """Refuse a dataclass whose field values do not fit their annotations (``steps: twenty`` in a YAML file);
    ``name(field)`` is how a field is named in the message."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not _fits(value, hints[f.name]):
            raise ConfigError(f"{name(f.name)} must be {_type_name(hints[f.name])}, got {describe(value)}")


def check_evaluate(*, model=None, questions=None, adapter=None, run=None, steps=None, batch_size=8, out=None,
                   overwrite: bool = False, claim: bool = True) -> None:
    """What ``ep.evaluate`` / ``emprobe eval`` check before loading anything: the inputs, that ``adapter`` and
    ``run`` exclude each other and ``steps`` needs ``run``, and the output policy for ``out`` (a run's
    directory is claimed when ``claim``)."""
    from emprobe.io import claim_dir
    from emprobe.outdir import check_out

    check_args(model=model, questions=questions, adapter=adapter, run=run, steps=steps, batch_size=batch_size)
    if run is not None and adapter is not None:
        raise ConfigError("give either `adapter` or `run`, not both")
    if steps is not None and run is None:
        raise ConfigError("`steps` needs `run`")
    if out is not None:
        reuse = ("score_table", "score_sweep")
        if run is not None and claim:
            claim_dir(out, "score_sweep", overwrite=overwrite, reuse=reuse)
        else:
            check_out(out, overwrite=overwrite, reuse=reuse)
