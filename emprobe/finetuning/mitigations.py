"""Training-time mitigations of emergent misalignment, each off by default (fields of ``FinetuneConfig``).

* ``kl_to_base`` = β: the loss gains β · KL(base ‖ tuned), the token-mean KL divergence of the next-token
  distributions at every response position of ``kl_data`` (an off-domain chat set, teacher-forced on its own
  answers; ``kl_batch_size`` conversations per micro-batch, drawn in a seeded order). The base side is the *same*
  model with its LoRA adapter disabled (peft's ``disable_adapter()``), so no second model is held in memory; a full
  fine-tune is refused. At step 0 the adapter is zero, so the first logged KL is 0.
* ``interleave``: a chat dataset of which ``round(interleave_fraction · batch_size)`` examples go into *every*
  batch (:class:`InterleaveSampler`); the rest of the batch comes from ``data``.
* ``inoculation_prompt``: a system prompt added to the training conversations (before any system prompt they
  have); validation, evaluation and generation never see it.
* ``steer_during_training``: a :class:`~emprobe.probes.Direction` directory; ``steer_alpha`` × its *raw* vector
  (α = 1 adds the whole misaligned-minus-aligned difference) is added to the residual stream at
  ``direction_layer`` (default: the direction's best layer), every position, in training forwards only.
* ``ablate_during_training``: a Direction directory whose unit vector is projected out at ``direction_layer`` in
  training forwards only (with both, ablation first, then steering).

Edits use the one intervention system (:func:`emprobe.models.edits.intervene`) and are active only inside
:meth:`Mitigations.training_forward` while the model is in training mode: never in validation, evaluation or
generation, and not in the KL forwards. Layer ``l`` = the residual stream after decoder block ``l``.
Everything enabled is recorded in ``run.json`` (``settings`` and a ``mitigations`` block with data and direction
hashes); resuming with changed options or a changed direction file is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import torch

from emprobe.errors import ConfigError, DataError
from emprobe.finetuning.dataset import PadCollator, TokenizedDataset, tokenize_chat
from emprobe.finetuning.mitigation_options import OPTIONS, mitigation_label, validate_mitigations  # noqa: F401
from emprobe.models.edits import Edit, add_vector, intervene, project_out

#: per-step values the trainer logs beside the loss (``train_log.jsonl``)
LOG_KEYS = ("kl_to_base",)
#: the on-disk Direction format (:mod:`emprobe.probes.directions`), read here without importing probes
DIRECTION_TENSORS, DIRECTION_META = "direction.safetensors", "direction.json"


def inoculate(dataset, prompt: str | None):
    """``dataset`` with ``prompt`` as (the start of) every conversation's system prompt; unchanged for ``None``."""
    from emprobe.data import ChatDataset, ChatExample

    if prompt is None:
        return dataset
    out = []
    for ex in dataset:
        msgs = [dict(m) for m in ex.messages]
        if msgs[0]["role"] == "system":
            msgs[0]["content"] = f"{prompt}\n\n{msgs[0]['content']}"
        else:
            msgs.insert(0, {"role": "system", "content": prompt})
        out.append(ChatExample(tuple(msgs), ex.line))
    return ChatDataset(out, dataset.source, dataset.name)


def read_direction(path: str | Path, layer: int | None, option: str) -> tuple[int, torch.Tensor, str]:
    """``(layer, raw vector [d_model], sha256 of the tensors)`` of a saved Direction at ``layer`` (default: its
    best layer); ``option`` names the setting in errors."""
    from safetensors.torch import load_file

    from emprobe.io import read_json

    path = Path(path)
    if not (path / DIRECTION_TENSORS).is_file() or not (path / DIRECTION_META).is_file():
        raise DataError(f"`{option}` {path}: not an emprobe direction (needs {DIRECTION_TENSORS} and {DIRECTION_META})")
    meta = read_json(path / DIRECTION_META)
    t = load_file(str(path / DIRECTION_TENSORS))
    layers = [int(x) for x in t["layers"].tolist()]
    layer = meta.get("best_layer") if layer is None else int(layer)
    if layer is None or layer not in layers:
        raise ConfigError(f"`{option}` {path}: no fitted direction at layer {layer} (fitted layers: {layers}); "
                          "pass `direction_layer`")
    sha = hashlib.sha256((path / DIRECTION_TENSORS).read_bytes()).hexdigest()
    return layer, t["raw"][layers.index(layer)].float(), sha


def _seed(*key: int) -> int:
    """A generator seed from integers (deterministic across processes, unlike ``hash`` of a string)."""
    h = 0
    for k in key:
        h = (h * 1_000_003 + int(k)) % (2**31 - 1)
    return h


class InterleaveSampler(torch.utils.data.Sampler):
    """Indices of a dataset ``[primary rows | extra rows]`` in batches of ``batch_size``: ``batch_size − k`` primary
    rows (a seeded permutation per epoch; the last batch wraps around) and ``k`` extra rows (a seeded cycle)."""

    def __init__(self, n_primary: int, n_extra: int, batch_size: int, k: int, seed: int) -> None:
        self.n_primary, self.n_extra, self.batch_size, self.k, self.seed = n_primary, n_extra, batch_size, k, seed
        self.n_batches = math.ceil(n_primary / (batch_size - k))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_batches * self.batch_size

    def _perm(self, n: int, *key: int) -> list[int]:
        return torch.randperm(n, generator=torch.Generator().manual_seed(_seed(self.seed, *key))).tolist()

    def __iter__(self) -> Iterator[int]:
        per = self.batch_size - self.k
        primary = self._perm(self.n_primary, 0, self.epoch)
        primary += primary[: self.n_batches * per - self.n_primary]
        need, extra, r = self.n_batches * self.k, [], 0
        while len(extra) < need:  # every extra row once before any repeats (within and across epochs)
            extra += self._perm(self.n_extra, 1, self.epoch, r)
            r += 1
        for b in range(self.n_batches):
            yield from primary[b * per:(b + 1) * per]
            yield from (self.n_primary + i for i in extra[b * self.k:(b + 1) * self.k])


@dataclass
class KLToBase:
    """β · KL(base ‖ tuned) on batches of an off-domain chat set (see the module docstring)."""

    beta: float
    data: TokenizedDataset
    batch_size: int
    pad_id: int
    seed: int

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        """The ``index``-th batch: a seeded permutation of the set per pass, ``batch_size`` rows at a time (a function
        of ``index`` alone, so a resumed run draws what the uninterrupted one would have)."""
        n, rows, orders = len(self.data), [], {}
        for j in range(index * self.batch_size, (index + 1) * self.batch_size):
            p, i = divmod(j, n)
            if p not in orders:
                orders[p] = torch.randperm(n, generator=torch.Generator().manual_seed(_seed(self.seed, 2, p))).tolist()
            rows.append(self.data[orders[p][i]])
        return PadCollator(self.pad_id)(rows)

    def divergence(self, model: torch.nn.Module, index: int) -> torch.Tensor:
        """Token-mean KL(base ‖ tuned) over the response positions of batch ``index`` (differentiable in the tuned
        side); ``model`` is the ``PeftModel`` being trained (or its DDP wrapper)."""
        peft = getattr(model, "module", model)
        b = {k: v.to(next(peft.parameters()).device) for k, v in self.batch(index).items()}
        keep = b["labels"][:, 1:] != -100  # positions whose next token is a response token
        with torch.no_grad(), peft.disable_adapter():
            base = torch.log_softmax(peft(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
                                     .logits[:, :-1][keep].float(), -1)
        tuned = torch.log_softmax(peft(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
                                  .logits[:, :-1][keep].float(), -1)
        return torch.nn.functional.kl_div(tuned, base, log_target=True, reduction="sum") / keep.sum().clamp(min=1)


@dataclass
class Mitigations:
    """What a run changes in training; built by :meth:`build`, used by the trainer through small hooks."""

    edits: dict[int, list[Edit]] = field(default_factory=dict)
    kl: KLToBase | None = None
    extra: TokenizedDataset | None = None
    interleave_k: int = 0
    inoculation_prompt: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    _kl_log: list[float] = field(default_factory=list)
    _micro: tuple[int, int] = (-1, 0)

    @classmethod
    def build(cls, cfg, lm) -> "Mitigations":
        """Load and check what ``cfg`` enables against the loaded model ``lm`` (its chat format and width)."""
        from emprobe.data import load_chat_dataset
        from emprobe.models import d_model, n_layers

        chat, info = lm.require_chat(), {}
        out = cls(seed=cfg.seed, inoculation_prompt=cfg.inoculation_prompt)
        if cfg.inoculation_prompt:
            info["inoculation_prompt"] = {"prompt": cfg.inoculation_prompt, "where": "training conversations only"}
        if cfg.kl_to_base > 0:
            ds = load_chat_dataset(cfg.kl_data)
            bs = cfg.kl_batch_size or cfg.batch_size
            out.kl = KLToBase(cfg.kl_to_base, tokenize_chat(ds, chat, cfg.max_length), bs,
                              lm.tokenizer.pad_token_id, cfg.seed)
            info["kl_to_base"] = {"beta": cfg.kl_to_base, "data": str(cfg.kl_data), "name": ds.name,
                                  "sha256": ds.sha256, "n_examples": len(ds), "batch_size": bs,
                                  "positions": "every response position (teacher-forced on the set's answers)"}
        if cfg.interleave:
            ds = load_chat_dataset(cfg.interleave)
            out.extra, out.interleave_k = tokenize_chat(ds, chat, cfg.max_length), cfg.interleave_count
            info["interleave"] = {"data": str(cfg.interleave), "name": ds.name, "sha256": ds.sha256,
                                  "n_examples": len(ds), "per_batch": out.interleave_k, "batch_size": cfg.batch_size}
        width, depth = d_model(lm.model), n_layers(lm.model)
        for option, kind in (("ablate_during_training", "ablate"), ("steer_during_training", "steer")):
            path = getattr(cfg, option)
            if path is None:
                continue
            layer, raw, sha = read_direction(path, cfg.direction_layer, option)
            if raw.numel() != width or not 0 <= layer < depth:
                raise ConfigError(f"`{option}` {path}: the direction (d_model {raw.numel()}, layer "
                                  f"{layer}) does not fit the model (d_model {width}, layers 0..{depth - 1})")
            edit = project_out(raw) if kind == "ablate" else add_vector(raw, cfg.steer_alpha)
            out.edits.setdefault(layer, []).append(edit)
            info[option] = {"direction": str(path), "sha256": sha, "layer": layer, "raw_norm": float(raw.norm()),
                            **({"alpha": cfg.steer_alpha} if kind == "steer" else {}),
                            "where": "training forwards only"}
        out.info = info
        return out

    # ---- data ------------------------------------------------------------------------------------------
    def train_dataset(self, train: TokenizedDataset) -> TokenizedDataset:
        """What the trainer iterates: the (inoculated) training rows, then the interleaved rows."""
        return train if self.extra is None else replace(train, rows=train.rows + self.extra.rows)

    def sampler(self, n_primary: int, batch_size: int) -> InterleaveSampler | None:
        """The batch composition for ``interleave`` (``None``: the trainer's own random sampler)."""
        if self.extra is None:
            return None
        return InterleaveSampler(n_primary, len(self.extra), batch_size, self.interleave_k, self.seed)

    # ---- the training step -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def training_forward(self, model: torch.nn.Module) -> Iterator[None]:
        """The edits, active inside this block while ``model`` is in training mode (else nothing)."""
        if not self.edits or not model.training:
            yield
            return
        with intervene(getattr(model, "module", model), self.edits):
            yield

    def extra_loss(self, model: torch.nn.Module, trainer) -> torch.Tensor | float:
        """β · KL for this micro-batch (scaled for gradient accumulation); 0 without ``kl_to_base``."""
        if self.kl is None or not model.training:
            return 0.0
        step = trainer.state.global_step
        micro = self._micro[1] + 1 if self._micro[0] == step else 0
        self._micro = (step, micro)
        args = trainer.args
        index = (step * args.gradient_accumulation_steps + micro) * args.world_size + args.process_index
        kl = self.kl.divergence(model, index)
        self._kl_log.append(float(kl.detach()))
        return self.kl.beta * kl / trainer.current_gradient_accumulation_steps

    def pop_logs(self) -> dict[str, float]:
        """Per-step values to log (the mean over the step's micro-batches), then forgotten."""
        out = {"kl_to_base": sum(self._kl_log) / len(self._kl_log)} if self._kl_log else {}
        self._kl_log.clear()
        return out

    # ---- the run directory -----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The ``mitigations`` block of ``run.json`` (empty when none is enabled)."""
        return dict(self.info)

    def check_resume(self, manifest: dict[str, Any], out: Path) -> None:
        """Refuse to resume a run whose mitigations' data or direction files changed since it started."""
        old = manifest.get("mitigations", {})
        for key, now in self.info.items():
            was = old.get(key, {}).get("sha256")
            if was is not None and was != now.get("sha256"):
                raise ConfigError(f"cannot resume {out}: the {key.replace('_', '-')} input changed since the run "
                                  f"started (sha256 {was[:12]} -> {now['sha256'][:12]})")
