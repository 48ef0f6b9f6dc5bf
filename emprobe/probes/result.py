"""``DirectionsResult``: fitted directions side by side as a typed :class:`~emprobe.result.Result` — per method its
best layer's held-out AUROC against random directions, and the cosine of the first two at the first's best layer.

Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.probes.directions import Direction
from emprobe.result import Result, figure_for


@dataclass(frozen=True)
class DirectionsResult(Result):
    """``directions``: method -> a :class:`Direction` from :func:`~emprobe.probes.fit_direction` (its
    cross-validation table is in ``direction.metrics``)."""

    directions: dict[str, Direction]

    name: ClassVar[str] = "directions"
    title: ClassVar[str] = "Misalignment directions in the base model"

    def __post_init__(self) -> None:
        missing = [m for m, d in self.directions.items() if d.best_layer is None or not d.metrics]
        if missing:
            raise ValueError(f"direction {missing[0]!r} has no cross-validation metrics (fit it with fit_direction)")

    def _cosine(self) -> tuple[int, float] | None:
        """(layer, cosine) of the first two directions at the first one's best layer."""
        if len(self.directions) < 2:
            return None
        a, b = list(self.directions.values())[:2]
        layer = int(a.best_layer)
        va, vb = a.vector(layer).numpy(), b.vector(layer).numpy()
        na, nb = np.linalg.norm(va), np.linalg.norm(vb)
        return layer, (float(va @ vb / (na * nb)) if na > 0 and nb > 0 else 0.0)

    def findings(self) -> list[str]:
        out: list[str] = []
        for method, d in self.directions.items():
            b, s = d.best(), d.source
            n = sum(int(s.get(k, 0)) for k in ("n_misaligned", "n_aligned", "n_unlabelled"))
            out.append(f"{method} direction ({s.get('contrast')}, {d.position}, {n} prompts): best layer "
                       f"{int(b['layer'])}, held-out AUROC {b['auroc']:.3f} ± {b['auroc_std']:.3f} (grouped "
                       f"{d.params.get('n_splits', 5)}-fold) vs {b['random_auroc']:.3f} for random directions "
                       f"(95th percentile {b['random_auroc_p95']:.3f}).")
            if b["auroc"] <= b["random_auroc_p95"]:
                out.insert(0, f"Random directions match the {method} direction: its best AUROC {b['auroc']:.3f} is "
                              f"within the random 95th percentile {b['random_auroc_p95']:.3f}.")
        cos = self._cosine()
        if cos is not None:
            out.append(f"At layer {cos[0]} the two directions have cosine {cos[1]:.3f}.")
        return out

    def numbers(self) -> dict[str, Any]:
        nums: dict[str, Any] = {}
        for method, d in self.directions.items():
            b = d.best()
            nums.update({f"{method}_layer": int(b["layer"]), f"{method}_auroc": b["auroc"],
                         f"{method}_auroc_sd": b["auroc_std"], f"{method}_random_auroc": b["random_auroc"],
                         f"{method}_random_p95": b["random_auroc_p95"]})
        cos = self._cosine()
        if cos is not None:
            nums["cosine_" + "_".join(list(self.directions)[:2])] = cos[1]
        return nums

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": pd.concat([d.cv_table().assign(method=m) for m, d in self.directions.items()],
                                   ignore_index=True)}

    @property
    def control(self) -> str:
        n = max(int(d.params.get("n_random", 20)) for d in self.directions.values())
        return f"{n} random unit directions scored the same way (per fold)"

    @property
    def uncertainty(self) -> str:
        return "sd of AUROC over grouped folds (questions held out)"

    def plot(self, ax=None):
        fig, (ax,) = figure_for(ax, 1)
        for method, d in self.directions.items():
            t = d.cv_table()
            ax.plot(t.layer, t.auroc, marker="o", ms=3, label=method)
            ax.plot(t.layer, t.random_auroc_p95, ls=":", lw=0.8, label=f"{method}: random p95")
        ax.set(xlabel="layer (output of block l)", ylabel="held-out AUROC", title="base-model directions")
        ax.legend(fontsize=7)
        return fig

    def inputs(self) -> dict[str, Any]:
        return {"directions": {m: {"method": d.method, "position": d.position, "best_layer": d.best_layer,
                                   "path": str(d.path) if d.path else None, "store": d.source.get("store")}
                               for m, d in self.directions.items()}}
