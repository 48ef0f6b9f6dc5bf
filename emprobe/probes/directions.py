"""``Direction``: a per-layer linear "misalignment direction" with its provenance, on disk.

Layout (one directory, written atomically)::

    DIR/
      direction.safetensors   raw [n_layers, d_model], unit [n_layers, d_model], layers [n_layers]
      direction.json          method, position, layers, best_layer, source store (hash, model, prompt set),
                              per-layer cross-validated metrics, emprobe version

Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``). ``raw`` has
the scale its method gives it (e.g. the misaligned-minus-aligned mean difference); ``unit`` is ``raw``
normalised. Projections onto the unit vector are in the residual stream's own units.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import einops
import numpy as np
import torch

from emprobe.errors import ConfigError, DataError
from emprobe.io import atomic_dir, manifest as make_manifest, read_json, write_json

TENSORS = "direction.safetensors"
META = "direction.json"
KIND = "direction"
#: the columns of a fit's cross-validation table (:meth:`Direction.cv_table`), in order
CV_COLUMNS = ("layer", "auroc", "auroc_std", "n_folds", "random_auroc", "random_auroc_p95", "random_auroc_std",
              "n_train", "n_test")


@dataclass
class Direction:
    """Raw and unit vectors per layer, the method that made them, and where the data came from."""

    method: str
    layers: list[int]
    raw: torch.Tensor
    position: str
    source: dict[str, Any] = field(default_factory=dict)
    best_layer: int | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        self.raw = torch.as_tensor(self.raw, dtype=torch.float32).detach().cpu()
        if self.raw.ndim != 2 or self.raw.shape[0] != len(self.layers):
            raise DataError(f"direction tensor has shape {tuple(self.raw.shape)}, "
                            f"expected [{len(self.layers)}, d_model]")
        if not torch.isfinite(self.raw).all():
            raise DataError(f"{self.method} direction has non-finite values")

    @property
    def unit(self) -> torch.Tensor:
        """``raw`` normalised per layer (``[n_layers, d_model]``)."""
        return self.raw / self.raw.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    @property
    def fit_question_ids(self) -> list[str] | None:
        """The question ids the direction was fit on (``source["question_ids"]``), ``None`` when not recorded:
        a causal check (steer, ablate) must score other questions."""
        ids = self.source.get("question_ids")
        return None if ids is None else [str(q) for q in ids]

    @property
    def d_model(self) -> int:
        return int(self.raw.shape[1])

    def _col(self, layer: int) -> int:
        if layer not in self.layers:
            raise ConfigError(f"layer {layer} has no fitted direction (fitted layers: {self.layers})")
        return self.layers.index(layer)

    def vector(self, layer: int | None = None, unit: bool = True) -> torch.Tensor:
        """The ``[d_model]`` vector at ``layer`` (default: ``best_layer``)."""
        layer = self.best_layer if layer is None else layer
        if layer is None:
            raise ConfigError("no layer given and the direction has no best_layer")
        return (self.unit if unit else self.raw)[self._col(int(layer))]

    def project(self, acts, layer: int | None = None, position: str | None = None) -> np.ndarray:
        """Scalar projections onto the unit direction.

        ``acts`` is an :class:`~emprobe.probes.store.ActivationStore` (checked for the same model and
        width), a ``[n, n_layers, d]`` array aligned with ``self.layers``, or ``[n, d]`` with ``layer``.
        Returns ``[n]`` when ``layer`` is given, else ``[n, n_layers]``.
        """
        from emprobe.probes.store import ActivationStore, model_identity

        if isinstance(acts, ActivationStore):
            src = self.source.get("model")
            if src and model_identity(src) != model_identity(acts.model):
                raise DataError(f"direction was fitted on {model_identity(src)['name']} but the store comes from "
                                f"{model_identity(acts.model)['name']}")
            position = position or self.position
            layers = self.layers if layer is None else [int(layer)]
            x = acts.get(position, layers)
            unit = self.unit[[self._col(l_) for l_ in layers]]
            p = einops.einsum(x.float(), unit, "n layer d, layer d -> n layer").numpy()
            return p[:, 0] if layer is not None else p
        x = torch.as_tensor(np.asarray(acts), dtype=torch.float32)
        if x.shape[-1] != self.d_model:
            raise DataError(f"activations have d={x.shape[-1]}, the direction has d_model={self.d_model}")
        if x.ndim == 2:
            return (x @ self.vector(layer)).numpy()
        if x.ndim == 3 and x.shape[1] == len(self.layers):
            p = einops.einsum(x, self.unit, "n layer d, layer d -> n layer").numpy()
            return p[:, self._col(int(layer))] if layer is not None else p
        raise DataError(f"cannot project activations of shape {tuple(x.shape)} "
                        f"(want [n, d] or [n, {len(self.layers)}, d])")

    def cv_table(self):
        """The fit's per-layer cross-validation table (``layer, auroc, auroc_std, n_folds, random_auroc,
        random_auroc_p95, ...``; one row per fitted layer, empty for a direction built by hand)."""
        import pandas as pd

        df = pd.DataFrame(self.metrics)  # a loaded direction's metrics come back with sorted keys
        return df[[c for c in CV_COLUMNS if c in df.columns] + [c for c in df.columns if c not in CV_COLUMNS]]

    def best(self) -> dict[str, Any]:
        """The cross-validation row of ``best_layer``."""
        return next(m for m in self.metrics if int(m["layer"]) == self.best_layer)

    # ---- interventions: context managers over emprobe.probes.interventions.intervene ----------------
    def steer_edits(self, alpha: float, layer: int | None = None, unit: bool = True) -> dict:
        """``{layer: h ← h + alpha·v}`` (all positions; ``layer`` defaults to ``best_layer``)."""
        from emprobe.probes.interventions import add_vector

        layer = self.best_layer if layer is None else int(layer)
        return {layer: add_vector(self.vector(layer, unit), alpha)}

    def ablation_edits(self, n_layers: int, layers: "str | list[int]" = "all") -> dict:
        """``{layer: h ← h − (h·r̂) r̂}`` at ``layers`` (of ``n_layers``): the direction's own vector at a fitted
        layer, its ``best_layer``'s elsewhere."""
        from emprobe.models import resolve_layers
        from emprobe.probes.interventions import project_out

        return {l_: project_out(self.vector(l_ if l_ in self.layers else None))
                for l_ in resolve_layers(layers, n_layers)}

    @contextlib.contextmanager
    def steer(self, model, alpha: float, layer: int | None = None, unit: bool = True) -> Iterator[None]:
        """Inside the block every forward of ``model`` (a loaded model or an ``nn.Module``) adds ``alpha`` times
        the (unit, or raw with ``unit=False``) vector at ``layer`` to the residual stream at every position::

            with d.steer(lm, alpha=4.0):
                scores = ep.evaluate(lm, "builtin:em-core")
        """
        from emprobe.probes.interventions import intervene

        with intervene(self._module(model), self.steer_edits(alpha, layer, unit)):
            yield

    @contextlib.contextmanager
    def ablate(self, model, layers: "str | list[int]" = "all") -> Iterator[None]:
        """Inside the block every forward of ``model`` has the direction projected out of the residual stream at
        ``layers`` (default every layer; the direction's own vector where fitted, its best layer's elsewhere)."""
        from emprobe.models import n_layers
        from emprobe.probes.interventions import intervene

        module = self._module(model)
        with intervene(module, self.ablation_edits(n_layers(module), layers)):
            yield

    def _module(self, model) -> torch.nn.Module:
        from emprobe.models import d_model

        module = model if isinstance(model, torch.nn.Module) else model.model
        if d_model(module) != self.d_model:
            raise ConfigError(f"the direction has d_model={self.d_model}, the model {d_model(module)}")
        return module

    # ---- disk ------------------------------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write ``direction.safetensors`` + ``direction.json`` into directory ``path`` atomically; output emprobe
        wrote there before is replaced only with ``overwrite``, anything else never (:mod:`emprobe.outdir`)."""
        from safetensors.torch import save

        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            (tmp / TENSORS).write_bytes(save({"raw": self.raw.contiguous(), "unit": self.unit.contiguous(),
                                              "layers": torch.tensor(self.layers, dtype=torch.int64)},
                                             metadata={"kind": KIND, "method": self.method}))
            write_json(tmp / META, make_manifest(
                KIND, method=self.method, position=self.position, layers=self.layers, best_layer=self.best_layer,
                d_model=self.d_model, source=self.source, metrics=self.metrics, params=self.params,
                layer_convention="layer l = residual stream after decoder block l (TL blocks.{l}.hook_resid_post)"))
        self.path = path
        return path

    @classmethod
    def load(cls, path: "str | Path | Direction", *, param: str = "direction") -> "Direction":
        """Read a direction directory (a loaded :class:`Direction` is returned as it is); a wrong type, a missing
        file, invalid JSON or a truncated safetensors file is a one-line error naming ``param``."""
        from safetensors.torch import load_file

        from emprobe.io import safetensors_header
        from emprobe.validate import existing_dir

        if isinstance(path, Direction):
            return path
        existing_dir(path, param, "direction", loaded=("Direction",))
        path = Path(path)
        if not (path / TENSORS).is_file() or not (path / META).is_file():
            raise DataError(f"`{param}` {path} is not an emprobe direction (needs {TENSORS} and {META})")
        meta = read_json(path / META)
        if not isinstance(meta, dict) or meta.get("kind") != KIND:
            raise DataError(f"{path}: {META} is not a direction manifest (kind {KIND!r})")
        safetensors_header(path / TENSORS, "direction file")
        t = load_file(str(path / TENSORS))
        layers = [int(x) for x in t["layers"].tolist()]
        return cls(meta["method"], layers, t["raw"], meta["position"], meta.get("source", {}), meta.get("best_layer"),
                   meta.get("metrics", []), meta.get("params", {}), path)


