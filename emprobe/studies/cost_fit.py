"""Fitting the cost model of :mod:`emprobe.studies.cost` from measured studies (``benchmarks/bench_scaling.py``):
each part's coefficients by non-negative least squares, a second model's as the first one's times one measured
factor when its points cannot pin them all, and the exponent of time along one axis."""

from __future__ import annotations

from emprobe.errors import ConfigError
from emprobe.studies.cost import FEATURES, StudyWork


def _design(works: list[StudyWork], part: str):
    """``[study, feature]``: each study's work features of ``part``, in :data:`FEATURES` order."""
    import numpy as np

    return np.array([[w.features(part)[k] for k in FEATURES[part]] for w in works], dtype=float)


def fit_part(works: list[StudyWork], seconds: list[float], part: str) -> dict[str, float]:
    """Non-negative least squares of ``part``'s measured ``seconds`` on its work features (relative errors
    weighted alike: each row divided by its measured time)."""
    import numpy as np
    from scipy.optimize import nnls

    names = FEATURES[part]
    x = _design(works, part)
    y = np.asarray(seconds, dtype=float)
    if len(y) < len(names):
        raise ConfigError(f"fitting {part} needs at least {len(names)} measured studies, got {len(y)}")
    weight = 1.0 / np.maximum(y, 1e-9)
    scale = np.maximum(x.max(0), 1e-12)  # conditioning: features in units of their largest value
    coef, _ = nnls(x / scale * weight[:, None], y * weight)
    return {k: float(c / s) for k, c, s in zip(names, coef, scale)}


def identifiable(works: list[StudyWork], part: str) -> bool:
    """Whether ``works`` pin every coefficient of ``part`` (their feature rows have full rank)."""
    import numpy as np

    x = _design(works, part)
    return len(works) >= len(FEATURES[part]) and np.linalg.matrix_rank(x / np.maximum(x.max(0), 1e-12)) == x.shape[1]


def scale_part(coef: dict[str, float], works: list[StudyWork], seconds: list[float], part: str
               ) -> tuple[dict[str, float], float]:
    """``(coefficients, factor)``: another model's ``part`` coefficients ``coef`` times the one factor (geometric
    mean of measured / predicted) that fits this model's measured ``seconds`` — for a model measured on too few
    points to fit every coefficient (e.g. only the question axis, which leaves fine-tuning's features fixed)."""
    import numpy as np

    pred = np.array([w.seconds(coef, part) for w in works], dtype=float)
    factor = float(np.exp(np.mean(np.log(np.asarray(seconds, float) / np.maximum(pred, 1e-9)))))
    return {k: v * factor for k, v in coef.items()}, factor


def exponent(factors: list[float], values: list[float]) -> float:
    """Least-squares slope of ``log(values)`` on ``log(factors)``: the cost's exponent along one axis."""
    import numpy as np

    lx, ly = np.log(np.asarray(factors, float)), np.log(np.asarray(values, float))
    if len(lx) < 2 or np.ptp(lx) == 0:
        return float("nan")
    return float(np.polyfit(lx, ly, 1)[0])
