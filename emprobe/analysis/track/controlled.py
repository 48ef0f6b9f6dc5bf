"""``ControlledTrack``: the misaligned run's :class:`TrackResult` beside the same directions tracked through its
aligned-data control. A direction that moves as far in the control run (its shift inside or above the misaligned
run's CI) tracks fine-tuning in general, not misalignment — said first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from emprobe.analysis.track.result import TrackResult
from emprobe.result import Result, Verdict

BEATEN = "The aligned control moves as far"


@dataclass(frozen=True, eq=False)
class ControlledTrack(Result):
    """``misaligned``: the run tracked at every checkpoint; ``aligned``: its aligned-data control, tracked the same
    way (at least at both ends)."""

    misaligned: TrackResult
    aligned: TrackResult

    name: ClassVar[str] = "track"
    title: ClassVar[str] = TrackResult.title

    def _lines(self) -> list[str]:
        """One line per direction comparing the two runs' shifts (the control-beats-effect lines first)."""
        lines: list[str] = []
        for label, m in self.misaligned.shifts.items():
            k = self.aligned.shifts[label]
            line = (f"In the aligned control the {label} projection moves {k.delta:+.3f} (z = {k.z:.1f} against "
                    f"random directions) vs {m.delta:+.3f} in the misaligned run (95% CI [{m.ci_low:+.3f}, "
                    f"{m.ci_high:+.3f}]).")
            if k.delta >= m.ci_low and m.delta > 0:
                lines.insert(0, f"{BEATEN} along the {label} direction ({k.delta:+.3f} vs {m.delta:+.3f}, inside or "
                                "above the misaligned run's CI): the shift tracks fine-tuning, not misalignment. "
                                + line)
            else:
                lines.append(line)
        return lines

    def findings(self) -> list[str]:
        lines = self._lines()
        first = [x for x in lines if x.startswith(BEATEN)]
        return first + self.misaligned.findings() + [x for x in lines if x not in first]

    def numbers(self) -> dict[str, Any]:
        out = dict(self.misaligned.numbers())
        for label in self.misaligned.shifts:
            k = self.aligned.shifts[label]
            out.update({f"{label}_shift_control": k.delta, f"{label}_z_control": k.z})
        return out

    def verdict(self) -> Verdict | None:
        return self.misaligned.verdict()

    def tables(self) -> dict[str, pd.DataFrame]:
        return {**self.misaligned.tables(), **{f"control_{k}": v for k, v in self.aligned.tables().items()}}

    @property
    def control(self) -> str:
        return f"{self.misaligned.control}; the aligned-data control run measured the same way"

    @property
    def uncertainty(self) -> str:
        return self.misaligned.uncertainty

    def inputs(self) -> dict[str, Any]:
        return {"inputs": {"misaligned": dict(self.misaligned.meta), "control": dict(self.aligned.meta)}}

    def plot(self, ax=None):
        return self.misaligned.plot(ax)

    def save(self, out: str | Path, overwrite: bool = True) -> Path:
        """The misaligned run's result in ``out/result``, the control's in ``out/control`` (each as
        :meth:`TrackResult.save` writes it)."""
        out = Path(out)
        self.misaligned.save(out / "result", overwrite)
        self.aligned.save(out / "control", overwrite)
        return out
