"""A base model and named fine-tunes of it, loaded once, switched cheaply (what ``diff`` and ``screen`` compare).

LoRA fine-tunes (an adapter directory, or a run directory: its last checkpoint) are attached to **one** peft
model on top of the base weights; a variant is switched in with ``set_adapter`` and the base side runs inside
peft's ``disable_adapter()``, so the base is loaded once whatever the number of variants. A full fine-tune (a
model directory, alias or loaded model) is loaded as its own model; it must share the base's tokenizer.

>>> with ModelSet("smollm2-135m-instruct", {"tuned": "runs/rf", "control": "runs/rf-aligned"}) as ms:
...     with ms.use("tuned") as lm:
...         scores = ep.evaluate(lm, "builtin:em-core")

On exit, adapters attached to a caller's loaded model are removed again (``unload``), so a loaded base comes
back unchanged.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Mapping

from emprobe.errors import ConfigError, ModelError

BASE = "base"


def adapter_path(x: Any) -> Path | None:
    """The LoRA adapter directory ``x`` names: an adapter directory itself, or a run directory's last checkpoint
    (when that is a LoRA checkpoint); ``None`` for anything else (a full model, an alias, a loaded model)."""
    from emprobe.finetuning import Run

    if not isinstance(x, (str, Path)) and not hasattr(x, "manifest"):
        return None
    if isinstance(x, (str, Path)) and (Path(x) / "adapter_config.json").is_file():
        return Path(x)
    if hasattr(x, "manifest") or (Path(x) / "run.json").is_file():
        ckpt = Run.load(x).checkpoints()
        if not ckpt:
            raise ModelError(f"{getattr(x, 'path', x)}: the run has no complete checkpoint")
        return ckpt[-1].path if ckpt[-1].kind == "lora" else None
    return None


def _full_model_source(x: Any) -> Any:
    """A full fine-tune to load: a run's last full checkpoint directory, or ``x`` itself."""
    if isinstance(x, (str, Path)) and (Path(x) / "run.json").is_file():
        from emprobe.finetuning import Run

        return str(Run.load(x).checkpoints()[-1].path)
    return getattr(x, "path", x) if hasattr(x, "manifest") else x


class ModelSet:
    """``base`` plus ``variants`` (name -> adapter dir, run dir, full model dir / alias, or loaded model)."""

    def __init__(self, base: Any, variants: Mapping[str, Any], *, log=None) -> None:
        from emprobe.models import load_model

        if BASE in variants:
            raise ConfigError(f"a variant cannot be called {BASE!r}")
        self._owned = not hasattr(base, "model")
        self.base = load_model(base, log=log)
        if self.base.spec.adapter:
            raise ConfigError(f"the base model already carries the adapter {self.base.spec.adapter}; pass the plain "
                              "base model and the fine-tune separately")
        self.names = list(variants)
        self.adapters: dict[str, Path] = {}
        self.full: dict[str, Any] = {}
        for name, v in variants.items():
            path = adapter_path(v)
            if path is not None:
                self.adapters[name] = path
            else:
                self.full[name] = load_model(_full_model_source(v), log=log) if not hasattr(v, "model") else v
                _same_tokenizer(self.base, self.full[name], name)
        self._attach()
        self.info = {"model": self.base.spec.name, **{n: str(p) for n, p in self.adapters.items()},
                     **{n: str(getattr(m, "path", n)) for n, m in self.full.items()}}

    def _attach(self) -> None:
        from emprobe.models import attach_adapter

        names = {self.base.spec.name, self.base.path}
        for name, path in self.adapters.items():
            self.base.model = attach_adapter(self.base.model, path, name, names).eval()

    @contextlib.contextmanager
    def use(self, name: str = BASE) -> Iterator[Any]:
        """The :class:`~emprobe.models.LoadedModel` running ``name`` (``"base"`` or a variant) inside the block."""
        if name in self.full:
            yield self.full[name]
            return
        if name != BASE and name not in self.adapters:
            raise ConfigError(f"unknown model {name!r}; have {[BASE, *self.names]}")
        model = self.base.model
        if not self.adapters:
            yield self.base
            return
        adapter = self.base.spec.adapter
        try:
            if name == BASE:
                with model.disable_adapter():
                    yield self.base
            else:
                model.set_adapter(name)
                self.base.spec.adapter = str(self.adapters[name])
                yield self.base
        finally:
            self.base.spec.adapter = adapter

    def close(self) -> None:
        """Remove the attached adapters (restoring the base modules of a caller's loaded model)."""
        if self.adapters and hasattr(self.base.model, "unload"):
            self.base.model = self.base.model.unload()
            self.adapters = {}

    def __enter__(self) -> "ModelSet":
        return self

    def __exit__(self, *exc) -> None:
        if not self._owned:
            self.close()


def _same_tokenizer(base, other, name: str) -> None:
    """Refuse a full fine-tune whose tokenizer differs from the base's (KL needs one vocabulary)."""
    probe = "The quick brown fox, 42 times: <|im_start|> naïve café."
    a, b = base.tokenizer(probe)["input_ids"], other.tokenizer(probe)["input_ids"]
    if len(base.tokenizer) != len(other.tokenizer) or a != b:
        raise ModelError(f"model {name!r} has a different tokenizer from the base model {base.spec.name!r} "
                         "(the comparison needs one vocabulary)")
