"""The checkpoint plan of a fine-tuning run: which optimizer steps save a checkpoint (explicit steps, every N
steps, K log-spaced steps; always step 0, the untouched model, and the last step)."""

from __future__ import annotations

import math

from emprobe.errors import ConfigError


def checkpoint_steps(total: int, save_steps: list[int] | None = None, save_every: int | None = None,
                     save_log_spaced: int | None = None, max_steps: int | None = None) -> list[int]:
    """The sorted steps to checkpoint in a run of ``total`` steps (always 0 and ``total``): the union of
    ``save_steps``, every ``save_every`` steps and ``save_log_spaced`` log-spaced steps (6 when none is given).
    ``max_steps`` (the run's setting, when given) only words the error for explicit steps beyond ``total``."""
    steps = {0, total}
    explicit = save_steps or []
    beyond = [s for s in explicit if s > total]
    if beyond:
        limit = f"`max_steps` {max_steps}" if max_steps is not None else f"the run's {total} steps"
        raise ConfigError(f"`save_steps` {','.join(map(str, beyond))} beyond {limit}")
    steps.update(explicit)
    if save_every:
        steps.update(range(0, total + 1, save_every))
    k = save_log_spaced
    if k is None and not explicit and not save_every:
        k = 6
    if k:
        steps.update(log_spaced_steps(k, total))
    return sorted(steps)


def log_spaced_steps(k: int, total: int) -> list[int]:
    """``k`` distinct steps from 0 to ``total``: 0 plus log-spaced steps from 1 to ``total`` (fewer if
    ``total`` is small)."""
    if k < 2:
        raise ConfigError(f"log-spaced checkpoints need k >= 2, got {k}")
    want = min(k - 1, total)
    n = want
    while True:
        if n == 1:
            pts = {total}
        else:
            pts = {round(math.exp(math.log(total) * i / (n - 1))) for i in range(n)}
        if len(pts) >= want or n > 4 * total:
            break
        n += 1
    pts = sorted(pts)
    while len(pts) > want:  # drop from the dense low end, keep 1 and total
        pts.pop(1)
    return [0] + pts
