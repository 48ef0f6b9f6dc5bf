"""``Run``: a fine-tuning run directory, and the one checkpoint iterator every later stage uses.

Layout (every file written atomically; a checkpoint directory appears only once complete)::

    RUN_DIR/
      run.json                       manifest: model spec, data hash, settings, versions, checkpoints, status
      train_log.jsonl                one row per optimizer step: step, loss, learning_rate, epoch, ...
      checkpoints/step-000000/       step 0 = the untouched model
        adapter_config.json          LoRA runs: a peft adapter (safetensors) ...
        adapter_model.safetensors
        model.safetensors            ... or, for full fine-tunes, the full weights
        config.json, tokenizer files ... (full fine-tunes: the directory loads with load_model(path))
        checkpoint.json              step, train_loss (mean so far), val_loss (held-out, in-domain), lr, ...
      checkpoints/step-000025/ ...
      state/checkpoint-25/           optimizer, scheduler and RNG state of the latest checkpoint only
                                     (transformers' format, for --resume; removed when the run completes)

``run.json`` has ``status`` ``"running"`` or ``"complete"``, ``settings`` (the
:class:`~emprobe.finetuning.FinetuneConfig` fields that define the run), ``model`` (the base
:class:`~emprobe.models.ModelSpec`), ``data`` (source, sha256, train/val sizes), ``versions``,
``world_size``, ``total_steps``, ``planned_steps`` and ``checkpoints`` (step, path, train_loss, val_loss).
A LoRA checkpoint's ``adapter_config.json`` names the model spec (e.g. the alias) as
``base_model_name_or_path``, so ``load_model(spec, adapter=checkpoint.path)`` accepts it.

:meth:`Run.iter_models` loads the base model once and switches adapters (peft ``set_adapter``) or, for
full fine-tunes, copies weights into the same model in place, instead of reloading per checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from emprobe.errors import DataError
from emprobe.io import read_json

RUN_MANIFEST = "run.json"
CKPT_MANIFEST = "checkpoint.json"
CKPT_DIR = "checkpoints"
STATE_DIR = "state"
TRAIN_LOG = "train_log.jsonl"


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint of a run."""

    step: int
    path: Path
    info: dict[str, Any]

    @property
    def kind(self) -> str:
        """``"lora"`` (peft adapter) or ``"full"`` (full weights)."""
        return "lora" if (self.path / "adapter_config.json").is_file() else "full"

    @property
    def train_loss(self) -> float | None:
        return self.info.get("train_loss")

    @property
    def val_loss(self) -> float | None:
        return self.info.get("val_loss")

    def digest(self) -> str:
        """sha256 of the checkpoint's weight files (``*.safetensors``, by name): equal digests = the same model
        (e.g. warmup-stable-decay and constant runs before the decay starts), so it need be scored only once."""
        h = hashlib.sha256()
        for f in sorted(self.path.glob("*.safetensors")):
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()


@dataclass
class Run:
    """A fine-tuning run read from disk."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, path: "str | Path | Run") -> "Run":
        """Read a run directory (a loaded :class:`Run` is returned as it is)."""
        if isinstance(path, Run):
            return path
        from emprobe.validate import path_arg

        path = Path(path_arg(path, "run", "run directory", ("Run",)))
        if not (path / RUN_MANIFEST).is_file():
            raise DataError(f"{path}: not an emprobe run directory (no {RUN_MANIFEST})")
        try:
            return cls(path, read_json(path / RUN_MANIFEST))
        except json.JSONDecodeError as e:
            raise DataError(f"{path / RUN_MANIFEST}: invalid JSON ({e.msg})") from None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model_spec(self) -> dict[str, Any]:
        """The base model's :class:`~emprobe.models.ModelSpec` fields."""
        return dict(self.manifest["model"])

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.manifest.get("settings", {}))

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == "complete"

    def checkpoints(self) -> list[Checkpoint]:
        """Complete checkpoints sorted by step (a directory without ``checkpoint.json`` is ignored)."""
        out = []
        for d in sorted((self.path / CKPT_DIR).glob("step-*")):
            if (d / CKPT_MANIFEST).is_file():
                info = read_json(d / CKPT_MANIFEST)
                out.append(Checkpoint(int(info["step"]), d, info))
        return sorted(out, key=lambda c: c.step)

    def checkpoint(self, step: int) -> Checkpoint:
        for c in self.checkpoints():
            if c.step == step:
                return c
        raise DataError(f"{self.path}: no complete checkpoint at step {step} "
                        f"(have {[c.step for c in self.checkpoints()]})")

    def train_log(self) -> list[dict[str, Any]]:
        """Per-step rows of ``train_log.jsonl`` (empty if none yet)."""
        p = self.path / TRAIN_LOG
        if not p.is_file():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def iter_models(self, steps: list[int] | None = None, preload: bool = True, merge: bool = False,
                    **load_kw: Any) -> Iterator[tuple[Checkpoint, Any]]:
        """Yield ``(checkpoint, LoadedModel)`` for each checkpoint, loading the base model only once.

        LoRA runs: every adapter is attached to one ``PeftModel`` and activated with ``set_adapter``
        (``preload=False`` loads one at a time and deletes the previous, for many large adapters).
        ``merge=True`` merges the active adapter into the base weights while it is yielded (~20 % faster
        forwards on CPU for SmolLM2) and restores the exact base weights afterwards (it keeps one copy of
        the adapted weights in memory for that).
        Full runs: each checkpoint's safetensors weights are copied into the same model in place.
        The yielded model is only valid until the next iteration.
        """
        from emprobe.models import ModelSpec, load_model
        from emprobe.models.adapters import attach_adapter

        ckpts = self.checkpoints()
        if steps is not None:
            ckpts = [self.checkpoint(s) for s in steps]
        if not ckpts:
            raise DataError(f"{self.path}: run has no complete checkpoint")
        spec = ModelSpec.coerce(ModelSpec(**self.model_spec), adapter=None, **load_kw)
        spec.adapter = None
        lm = load_model(spec)
        names = {spec.name, lm.path}
        if ckpts[0].kind == "full":
            from safetensors.torch import load_file

            for c in ckpts:
                state = {}
                for f in sorted(c.path.glob("*.safetensors")):
                    state.update(load_file(str(f)))
                missing, unexpected = lm.model.load_state_dict(state, strict=False)
                if unexpected:
                    raise DataError(f"{c.path}: weights do not fit the base model (e.g. {unexpected[0]})")
                yield c, lm
            return
        if preload:
            for c in ckpts:
                lm.model = attach_adapter(lm.model, c.path, checkpoint_name(c.step), names)
        saved = None
        for i, c in enumerate(ckpts):
            name = checkpoint_name(c.step)
            if not preload:
                lm.model = attach_adapter(lm.model, c.path, name, names)
                if i > 0:
                    lm.model.delete_adapter(checkpoint_name(ckpts[i - 1].step))
            lm.model.set_adapter(name)
            lm.model.eval()
            lm.spec.adapter = str(c.path)
            if not merge:
                yield c, lm
                continue
            if saved is None:  # copied once: every checkpoint restores the same weights
                saved = base_weights(lm.model)
            with merged_adapter(lm.model, saved):
                yield c, lm


def base_weights(model) -> dict[str, Any]:
    """Copies of a ``PeftModel``'s adapted base weights, for :func:`merged_adapter` to restore."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if ".base_layer." in n}


@contextmanager
def merged_adapter(model, saved: dict[str, Any] | None = None) -> Iterator[None]:
    """Merge a ``PeftModel``'s active adapter into its base weights inside the context; on exit unmerge and
    restore the base weights bit for bit from ``saved`` (default: copied now), since merge + unmerge alone
    leaves rounding error (large in bf16)."""
    import torch

    saved = saved if saved is not None else base_weights(model)
    weights = {n: p for n, p in model.named_parameters() if n in saved}
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()
        with torch.no_grad():
            for n, p in weights.items():
                p.copy_(saved[n])


def load_run(path: str | Path) -> Run:
    """Read a run directory (see :class:`Run`)."""
    return Run.load(path)
