"""The one verdict rule of every claim emprobe tests.

Each test declares its **smallest effect of interest** (SESOI) *before* looking at the data, in the effect's own
units, and measures the effect with a confidence interval (over questions, and over seeds where runs vary):

* **supported** — the CI excludes 0 in the claimed direction and does not lie wholly below the SESOI;
  for an *equivalence* claim ("no difference"), the TOST interval (90 % for a 5 % test) lies inside ±SESOI;
* **not supported** — the CI lies wholly below the SESOI (the effect is shown to be small), or an effect of the
  opposite sign is shown; for an equivalence claim, a difference at least as large as the SESOI whose CI
  excludes 0;
* **inconclusive** — otherwise, saying why: the CI is too wide (too few questions or runs), the target's
  reliability is too low for a null to mean anything, or a precondition failed (e.g. no EM established).

A precondition that makes the test meaningless (``cannot_test``) forces "inconclusive" whatever the effect; one that
only makes a null uninformative (``cannot_reject``: low reliability, low power) blocks "not supported" but lets a
clear effect through; ``wide`` says why a CI that spans both 0 and the SESOI is that wide (too few questions, runs).

A claim made of parts that must all hold (:func:`decide_all`) is supported when every part is and not supported when
any part is; a claim of no difference in *every* comparison (:func:`decide_all_equivalent`) is supported when every
TOST interval lies inside its ±SESOI (intersection–union: no correction needed) and not supported when some
difference of at least the SESOI is shown after Holm's correction over the comparisons.

>>> from emprobe.analysis.stats.verdict import Effect, decide
>>> decide(Effect(0.30, 0.12, 0.48), sesoi=0.2).verdict
'supported'
>>> decide(Effect(0.02, -0.05, 0.09), sesoi=0.2).verdict
'not supported'
>>> decide(Effect(0.10, -0.10, 0.30), sesoi=0.2).verdict
'inconclusive'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"

#: one sentence a report prints above the verdict table
RULE = ("Each claim declares its smallest effect of interest (SESOI) before looking. Supported: the effect's CI "
        "excludes 0 in the claimed direction (equivalence claims: the 90% TOST interval lies inside ±SESOI). "
        "Not supported: the CI lies below the SESOI, or an opposite effect is shown (equivalence claims: a "
        "difference of at least the SESOI is shown, Holm-corrected over the comparisons). Inconclusive: the data "
        "cannot tell (reason given: too few questions or runs, reliability too low, no EM established). A claim "
        "with several parts is supported only when every part is.")


@dataclass(frozen=True)
class Effect:
    """An estimate with its confidence interval (``level``, two-sided)."""

    estimate: float
    ci_low: float
    ci_high: float
    level: float = 0.95

    def __post_init__(self) -> None:
        if not (math.isnan(self.ci_low) or math.isnan(self.ci_high)) and self.ci_low > self.ci_high:
            raise ValueError(f"CI low {self.ci_low} exceeds CI high {self.ci_high}")

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.estimate, self.ci_low, self.ci_high))

    def flipped(self) -> Effect:
        """The same effect measured in the opposite direction."""
        return Effect(-self.estimate, -self.ci_high, -self.ci_low, self.level)

    def text(self, fmt: str = "+.3f") -> str:
        """``+0.120 (95% CI [+0.040, +0.210])``."""
        return (f"{self.estimate:{fmt}} ({self.level:.0%} CI [{self.ci_low:{fmt}}, {self.ci_high:{fmt}}])"
                if self.finite else "not estimable")


@dataclass(frozen=True)
class Decision:
    """A verdict under the rule, with the sentence that justifies it."""

    verdict: str
    reason: str
    about: str = ""  # the part or comparison that decided it (empty for a single effect)

    @property
    def supported(self) -> bool:
        return self.verdict == SUPPORTED


def decide(effect: Effect, sesoi: float, *, direction: str = "greater", cannot_test: str | None = None,
           cannot_reject: str | None = None, wide: str | None = None, units: str = "",
           fmt: str = "+.3f") -> Decision:
    """Verdict for a claim that an effect exists in ``direction`` (``greater``: positive; ``less``: negative),
    with ``sesoi`` > 0 in the effect's units. See the module docstring for the rule."""
    if not sesoi > 0:
        raise ValueError(f"sesoi must be > 0, got {sesoi}")
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    e = effect if direction == "greater" else effect.flipped()
    u = f" {units}" if units else ""
    shown = effect.text(fmt)
    if cannot_test:
        return Decision(INCONCLUSIVE, f"{cannot_test}; the effect {shown} cannot decide the claim")
    if not e.finite:
        return Decision(INCONCLUSIVE, "the effect or its CI could not be estimated")
    if e.ci_high < 0:
        return Decision(NOT_SUPPORTED, f"an effect of the opposite sign is shown: {shown}")
    if e.ci_low > 0 and e.ci_high >= sesoi:
        return Decision(SUPPORTED, f"{shown} excludes 0 (SESOI {sesoi:.4g}{u})")
    if e.ci_high < sesoi:
        if cannot_reject:
            return Decision(INCONCLUSIVE, f"{shown} lies below the SESOI {sesoi:.4g}{u}, but {cannot_reject}")
        small = "a real but negligible effect: " if e.ci_low > 0 else ""
        return Decision(NOT_SUPPORTED, f"{small}{shown} lies below the SESOI {sesoi:.4g}{u}")
    why = cannot_reject or wide or "the CI is too wide to tell an effect of interest from none"
    return Decision(INCONCLUSIVE, f"{shown} includes both 0 and the SESOI {sesoi:.4g}{u}: {why}")


def decide_equivalence(difference: Effect, tost: Effect, sesoi: float, *, cannot_test: str | None = None,
                       units: str = "", fmt: str = "+.3f") -> Decision:
    """Verdict for a claim of *no difference*: ``difference`` with its two-sided CI (95 %), ``tost`` the same
    estimate with its (1 − 2α) interval (90 % for α = 5 %). Supported when the TOST interval lies inside
    ±``sesoi``; not supported when a difference of at least ``sesoi`` has a CI that excludes 0."""
    if not sesoi > 0:
        raise ValueError(f"sesoi must be > 0, got {sesoi}")
    u = f" {units}" if units else ""
    if cannot_test:
        return Decision(INCONCLUSIVE, f"{cannot_test}; the difference {difference.text(fmt)} cannot decide the claim")
    if not (difference.finite and tost.finite):
        return Decision(INCONCLUSIVE, "the difference or its CI could not be estimated")
    if -sesoi < tost.ci_low and tost.ci_high < sesoi:
        return Decision(SUPPORTED, f"the {tost.level:.0%} TOST interval [{tost.ci_low:{fmt}}, {tost.ci_high:{fmt}}] "
                                   f"lies inside ±{sesoi:.4g}{u}")
    excludes_zero = difference.ci_low > 0 or difference.ci_high < 0
    if excludes_zero and abs(difference.estimate) >= sesoi:
        return Decision(NOT_SUPPORTED, f"a difference of {difference.text(fmt)} is at least the SESOI {sesoi:.4g}{u}")
    return Decision(INCONCLUSIVE, f"the {tost.level:.0%} TOST interval [{tost.ci_low:{fmt}}, {tost.ci_high:{fmt}}] "
                                  f"reaches past ±{sesoi:.4g}{u}, and no difference of that size is shown")


def decide_all(parts: dict[str, Decision]) -> Decision:
    """A claim whose ``parts`` must all hold: supported when every part is, not supported when any part is
    (the first such part named), inconclusive otherwise (the undecided parts named)."""
    if not parts:
        raise ValueError("decide_all needs at least one part")
    for name, d in parts.items():
        if d.verdict == NOT_SUPPORTED:
            return Decision(NOT_SUPPORTED, f"{name}: {d.reason}", name)
    if all(d.supported for d in parts.values()):
        return Decision(SUPPORTED, "; ".join(f"{n}: {d.reason}" for n, d in parts.items()))
    open_ = {n: d for n, d in parts.items() if d.verdict == INCONCLUSIVE}
    return Decision(INCONCLUSIVE, "; ".join(f"{n}: {d.reason}" for n, d in open_.items()), next(iter(open_)))


def decide_all_equivalent(comparisons: dict[str, tuple[Effect, Effect, float, float]], *, alpha: float = 0.05,
                          cannot_test: str | None = None, units: str = "", fmt: str = "+.3f") -> Decision:
    """Verdict for "no difference in any comparison": ``comparisons[name] = (difference (95 % CI), TOST interval
    (90 %), two-sided p of difference != 0, sesoi)``. Supported when every TOST interval lies inside its ±SESOI;
    not supported when a difference of at least its SESOI has a Holm-adjusted p < ``alpha`` (the largest such
    named); inconclusive otherwise (the comparison whose TOST interval reaches furthest past its SESOI named)."""
    if cannot_test:
        return Decision(INCONCLUSIVE, cannot_test)
    if not comparisons:
        return Decision(INCONCLUSIVE, "no comparison could be made")
    if not all(d.finite and t.finite for d, t, _, _ in comparisons.values()):
        bad = next(n for n, (d, t, _, _) in comparisons.items() if not (d.finite and t.finite))
        return Decision(INCONCLUSIVE, f"{bad}: the difference or its CI could not be estimated", bad)
    adj = holm({n: c[2] for n, c in comparisons.items()})
    shown = {n: c for n, c in comparisons.items() if adj[n] < alpha and abs(c[0].estimate) >= c[3]}
    if shown:
        name = max(shown, key=lambda n: abs(shown[n][0].estimate) / shown[n][3])
        d, _, _, sesoi = shown[name]
        return Decision(NOT_SUPPORTED, f"{name}: a difference of {d.text(fmt)} (Holm p = {adj[name]:.3g}) is at least "
                                       f"the SESOI {sesoi:.4g}{' ' + units if units else ''}", name)

    def reach(c) -> float:  # how far the TOST interval reaches, in SESOI units
        return max(abs(c[1].ci_low), abs(c[1].ci_high)) / c[3]

    name = max(comparisons, key=lambda n: reach(comparisons[n]))
    _, t, _, sesoi = comparisons[name]
    u = f" {units}" if units else ""
    box = f"the {t.level:.0%} TOST interval [{t.ci_low:{fmt}}, {t.ci_high:{fmt}}] of {name}"
    if reach(comparisons[name]) < 1:
        return Decision(SUPPORTED, f"every {t.level:.0%} TOST interval lies inside its ±SESOI (widest: {box} inside "
                                   f"±{sesoi:.4g}{u})", name)
    return Decision(INCONCLUSIVE, f"{box} reaches past ±{sesoi:.4g}{u}, and no difference of that size is shown", name)


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone); NaN p-values stay NaN and are not counted."""
    items = sorted(((p, k) for k, p in pvalues.items() if p == p), key=lambda t: t[0])
    m, running, out = len(items), 0.0, {k: float("nan") for k in pvalues}
    for i, (p, k) in enumerate(items):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out
