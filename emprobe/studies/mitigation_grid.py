"""The study's ``grid.mitigations`` axis: named sets of training-time mitigation options (fields of
:class:`~emprobe.finetuning.FinetuneConfig`, :mod:`emprobe.finetuning.mitigations`), crossed with the datasets.

```yaml
grid:
  mitigations:
    none: {}                                                     # the unmitigated reference (required)
    kl: {kl_to_base: 1.0, kl_data: builtin:bad-medical-aligned}
    inoculation: {inoculation_prompt: "You give reckless financial advice."}
    steer: {steer_during_training: persona, steer_alpha: 1.0}    # persona | mean_diff: the study's own direction
```

Every dataset x schedule x lr x seed x mitigation is one run; the aligned-data controls train without any
mitigation (unchanged). ``steer_during_training`` / ``ablate_during_training`` take a Direction directory, or
``persona`` / ``mean_diff``: the base-model direction the study's ``directions`` stage fits (the fine-tuning stage
then waits for it). Layer ``l`` (``direction_layer``) = the residual stream after decoder block ``l``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emprobe.errors import ConfigError
from emprobe.finetuning.mitigation_options import FIELDS, OPTIONS, validate_mitigations

NONE = "none"
#: the direction names a study fits itself (its ``directions`` stage)
STUDY_DIRECTIONS = ("mean_diff", "persona")
_DIRECTION_FIELDS = ("steer_during_training", "ablate_during_training")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class MitigationSpec:
    """One named option set of the axis (``none``: no option)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.options)

    def directions(self) -> set[str]:
        """The study directions (``persona`` / ``mean_diff``) this set trains with."""
        return {v for k, v in self.options if k in _DIRECTION_FIELDS and v in STUDY_DIRECTIONS}

    def resolved(self, directions_dir: Path) -> dict[str, Any]:
        """The FinetuneConfig fields, a study direction's name replaced by its directory under ``directions_dir``."""
        return {k: str(Path(directions_dir) / v) if k in _DIRECTION_FIELDS and v in STUDY_DIRECTIONS else v
                for k, v in self.options}


def _spec(name: Any, options: Any) -> MitigationSpec:
    where = f"`grid.mitigations.{name}`"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"mitigation name {name!r} in `grid.mitigations` must be letters, digits, '-' or '_' "
                          "(it names the run directories)")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where} must be a mapping of fine-tuning options, got {type(options).__name__}")
    unknown = sorted(set(options) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown mitigation option {unknown[0]!r} in {where}; valid: {', '.join(FIELDS)}")
    return MitigationSpec(name, tuple(sorted(options.items())))


def parse_mitigations(value: Any) -> tuple[MitigationSpec, ...]:
    """The axis from a mapping ``{name: options}``, a list of names / one-key mappings, or ready specs."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = []
        for x in value:
            if isinstance(x, MitigationSpec):
                items.append((x.name, x.settings))
            elif isinstance(x, dict) and len(x) == 1:
                items.append(next(iter(x.items())))
            elif isinstance(x, dict) and set(x) == {"name", "options"}:
                items.append((x["name"], dict(x["options"] or {})))
            else:
                items.append((x, {}))
    else:
        raise ConfigError(f"`grid.mitigations` must be a mapping name -> options, got {type(value).__name__}")
    specs = tuple(_spec(n, o) for n, o in items)
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"mitigation {dup[0]!r} appears twice in `grid.mitigations`")
    return specs


def check_mitigations(specs: tuple[MitigationSpec, ...], batch_size: int) -> None:
    """``none`` present and empty, every other set enabling a mitigation, option values of the right type and
    range (the fine-tuning checks, :func:`~emprobe.finetuning.mitigation_options.validate_mitigations`)."""
    from emprobe.finetuning.config import FinetuneConfig
    from emprobe.validate import field_types

    by = {s.name: s for s in specs}
    if NONE not in by:
        raise ConfigError(f"`grid.mitigations` must include `none` (the unmitigated runs every mitigation is "
                          f"compared with); got {', '.join(by)}")
    if by[NONE].options:
        raise ConfigError("`grid.mitigations.none` is the unmitigated reference: it takes no options")
    for s in specs:
        if s.name == NONE:
            continue
        if not any(s.settings.get(k) for k in OPTIONS):
            raise ConfigError(f"`grid.mitigations.{s.name}` enables no mitigation (set one of {', '.join(OPTIONS)})")
        ft = FinetuneConfig(model="-", data="-", batch_size=batch_size, **s.settings)
        field_types(ft, lambda f, n=s.name: f"`grid.mitigations.{n}.{f}`")
        try:
            validate_mitigations(ft, inputs=False)
        except ConfigError as e:
            raise ConfigError(f"`grid.mitigations.{s.name}`: {e}") from None


def mitigations_dict(specs: tuple[MitigationSpec, ...]) -> dict[str, dict[str, Any]]:
    """The axis as YAML writes it (``{name: options}``)."""
    return {s.name: s.settings for s in specs}
