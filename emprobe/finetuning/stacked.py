"""Several LoRA adapters over one frozen base model, side by side in one batch (training and scoring).

peft mixes adapters in one batch for inference only (``adapter_names``; in training mode peft refuses it), so
to train several runs in one process emprobe stacks the runs' LoRA weights itself: every adapted linear layer
becomes a :class:`StackedLoRALinear` holding one ``(A, B)`` pair per adapter, and the rows of a batch go to
their adapter's pair in contiguous segments (:meth:`StackedLoRA.route`; one ``torch.bmm`` when the segments
are equal). The math is peft's LoRA, ``base(x) + B(A(x)) * scaling``; each adapter's initial weights are peft's
own (``get_peft_model`` under the run's seed, so a stacked run starts exactly where a single run starts); each
adapter is written as a peft adapter directory (:meth:`StackedLoRA.save`) that ``load_model(adapter=...)``
reads. Outside :meth:`StackedLoRA.route` (and with ``route(None)``) the model is the plain base model.
"""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ContextManager, Iterator, Sequence

import torch
from torch import nn

from emprobe.errors import ConfigError


class _Routing:
    """Which adapter each block of rows uses: ``[(adapter, n_rows), ...]`` in batch order (``None``: base only)."""

    segments: list[tuple[int, int]] | None = None


class StackedLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus one LoRA pair per adapter; rows are routed by the shared :class:`_Routing`."""

    def __init__(self, base_layer: nn.Linear, routing: _Routing, scaling: float) -> None:
        super().__init__()
        self.base_layer, self.routing, self.scaling = base_layer, routing, scaling
        self.lora_A = nn.ParameterList()
        self.lora_B = nn.ParameterList()

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.lora_A.append(nn.Parameter(a.detach().clone()))
        self.lora_B.append(nn.Parameter(b.detach().clone()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        segs = self.routing.segments
        if segs is None:
            return y
        if len({n for _, n in segs}) == 1 and min(k for k, _ in segs) >= 0:  # equal blocks: one bmm per factor
            xs = x.reshape(len(segs), -1, x.shape[-1])
            a = torch.stack([self.lora_A[k] for k, _ in segs]).transpose(1, 2)
            b = torch.stack([self.lora_B[k] for k, _ in segs]).transpose(1, 2)
            return y + (torch.bmm(torch.bmm(xs, a), b) * self.scaling).reshape(y.shape)
        parts, start = [], 0
        for k, n in segs:
            if k < 0:  # rows of the base model
                parts.append(y.new_zeros((n, *y.shape[1:])))
            else:
                lora = nn.functional.linear(nn.functional.linear(x[start:start + n], self.lora_A[k]), self.lora_B[k])
                parts.append(lora * self.scaling)
            start += n
        return y + torch.cat(parts)


def segments(adapters: Sequence[int]) -> list[tuple[int, int]]:
    """Run-length ``[(adapter, n_rows), ...]`` of a per-row adapter list (for :meth:`StackedLoRA.route`)."""
    out: list[tuple[int, int]] = []
    for a in adapters:
        if out and out[-1][0] == a:
            out[-1] = (a, out[-1][1] + 1)
        else:
            out.append((int(a), 1))
    return out


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)


class StackedLoRA:
    """LoRA adapters stacked into ``model`` in place (its own weights frozen).

    :meth:`add_initial` adds an adapter initialised as peft initialises a new one under a seed
    (``transformers.set_seed(seed)`` then ``get_peft_model``, as a single run does); :meth:`add_pretrained` adds a
    saved peft adapter (a checkpoint). Every adapter must have the same rank, scaling and target modules.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model, self.routing = model, _Routing()
        self._requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
        for p in model.parameters():
            p.requires_grad_(False)
        self.modules: dict[str, StackedLoRALinear] = {}
        self.keys: dict[str, tuple[str, str]] = {}  # module name -> the peft state-dict keys of its A and B
        self.adapter_config: Any = None  # the peft LoraConfig (written with each adapter)

    def add_initial(self, lora_config: Any, seed: int) -> int:
        """Add a new adapter as peft initialises it under ``seed``; returns its index."""
        from peft import get_peft_model, get_peft_model_state_dict
        from peft.tuners.lora import LoraLayer
        from transformers import set_seed

        if lora_config.lora_dropout:
            raise ConfigError("runs trained side by side need lora_dropout 0 (dropout draws per run)")
        for name, m in self.modules.items():  # peft sees the plain model
            _set_module(self.model, name, m.base_layer)
        set_seed(seed)
        pm = get_peft_model(self.model, copy.deepcopy(lora_config))
        if self.adapter_config is None:
            self.adapter_config = copy.deepcopy(pm.peft_config["default"])
        keys = list(get_peft_model_state_dict(pm))
        weights = {}
        for name, m in pm.base_model.model.named_modules():
            if isinstance(m, LoraLayer) and "default" in m.lora_A:
                weights[name] = (m.lora_A["default"].weight, m.lora_B["default"].weight, m.scaling["default"])
        pm.base_model.model.__dict__.pop("peft_config", None)
        self.model = pm.unload()
        for name, m in self.modules.items():
            _set_module(self.model, name, m)
        return self._add(weights, keys)

    def add_pretrained(self, adapter_dir: str | Path) -> int:
        """Add a saved peft LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``); returns its index."""
        from safetensors.torch import load_file

        from emprobe.models.adapters import ADAPTER_WEIGHTS, check_adapter

        d = Path(adapter_dir)
        conf = check_adapter(self.model, d)
        if conf.get("peft_type", "LORA") != "LORA" or conf.get("use_dora") or conf.get("rank_pattern") \
                or conf.get("alpha_pattern"):
            raise ConfigError(f"{d}: only plain LoRA adapters (one rank and alpha) can be stacked")
        r, alpha = int(conf["r"]), float(conf["lora_alpha"])
        scaling = alpha / (r ** 0.5 if conf.get("use_rslora") else r)
        state = load_file(str(d / ADAPTER_WEIGHTS))
        weights = {}
        for key in state:
            if key.endswith(".lora_A.weight"):
                name = key.removesuffix(".lora_A.weight").removeprefix("base_model.model.")
                weights[name] = (state[key], state[key.replace(".lora_A.", ".lora_B.")], scaling)
        return self._add(weights, list(state))

    def _add(self, weights: dict[str, tuple[torch.Tensor, torch.Tensor, float]], keys: list[str]) -> int:
        if self.modules and set(weights) != set(self.modules):
            raise ConfigError("stacked adapters must adapt the same modules")
        for name, (a, b, scaling) in weights.items():
            mod = self.modules.get(name)
            if mod is None:
                mod = self.modules[name] = StackedLoRALinear(self.model.get_submodule(name), self.routing, scaling)
                _set_module(self.model, name, mod)
                full = f"base_model.model.{name}"
                self.keys[name] = (next(k for k in keys if k.startswith(f"{full}.lora_A")),
                                   next(k for k in keys if k.startswith(f"{full}.lora_B")))
            elif mod.scaling != scaling or mod.lora_A[0].shape != a.shape:
                raise ConfigError(f"stacked adapters must share rank and scaling ({name}: {tuple(a.shape)}, "
                                  f"scaling {scaling} vs {tuple(mod.lora_A[0].shape)}, {mod.scaling})")
            mod.add(a, b)
        return self.n - 1

    @property
    def n(self) -> int:
        return len(next(iter(self.modules.values())).lora_A)

    def parameters(self, k: int) -> list[nn.Parameter]:
        """Adapter ``k``'s trainable tensors in peft's order (module by module, ``A`` then ``B``)."""
        return [p for m in self.modules.values() for p in (m.lora_A[k], m.lora_B[k])]

    @contextmanager
    def route(self, segments: Sequence[tuple[int, int]] | None) -> Iterator[None]:
        """Inside: rows ``[0, n0)`` use adapter ``k0``, the next ``n1`` rows adapter ``k1``, ... (adapter ``-1``: the
        base model; ``None``: every row the base model)."""
        old = self.routing.segments
        self.routing.segments = None if segments is None else [(int(k), int(n)) for k, n in segments]
        try:
            yield
        finally:
            self.routing.segments = old

    def route_rows(self, adapters: Sequence[int]) -> ContextManager[None]:
        """:meth:`route` from one adapter index per row (``-1``: the base model)."""
        return self.route(segments(adapters))

    def state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Adapter ``k`` under peft's state-dict keys (``base_model.model.<module>.lora_A.weight``, ...)."""
        out = {}
        for name, m in self.modules.items():
            ka, kb = self.keys[name]
            out[ka], out[kb] = m.lora_A[k].detach().contiguous(), m.lora_B[k].detach().contiguous()
        return out

    def save(self, k: int, directory: str | Path, base_name: str) -> None:
        """Write adapter ``k`` as a peft adapter directory naming ``base_name`` as its base model."""
        from safetensors.torch import save_file

        from emprobe.models.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS

        d = Path(directory)
        save_file(self.state_dict(k), str(d / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        conf = copy.deepcopy(self.adapter_config)
        conf.inference_mode = True
        conf.save_pretrained(str(d))  # peft's own writer, as a single run's save_pretrained
        data = json.loads((d / ADAPTER_CONFIG).read_text())
        data["base_model_name_or_path"] = base_name
        (d / ADAPTER_CONFIG).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    def unstack(self) -> nn.Module:
        """Put the plain linear layers back (and the parameters' ``requires_grad``); returns the base model."""
        for name, m in self.modules.items():
            _set_module(self.model, name, m.base_layer)
        self.modules = {}
        for n, p in self.model.named_parameters():
            p.requires_grad_(self._requires_grad.get(n, p.requires_grad))
        return self.model
