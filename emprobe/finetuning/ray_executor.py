"""``RayExecutor``: sweep cells as Ray tasks (``pip install 'emprobe[ray]'``); see :mod:`emprobe.finetuning.executors`.

Each cell is one task declaring ``num_cpus_per_cell`` CPUs (its torch threads) and ``num_gpus_per_cell``
GPUs; the task starts the cell process on its worker and waits for it. Ray itself never retries a task
(``max_retries=0``): the executor resubmits a cell whose worker or process died, with ``resume`` set, so the
retry continues from the cell's last checkpoint; an emprobe error (bad settings or data) is reported, not
retried. Workers write the run directories themselves: every node must see them at the same path (a shared
filesystem), run with the same working directory, and have emprobe and the model installed.
"""

from __future__ import annotations

import os
from typing import Any

from emprobe.errors import ConfigError
from emprobe.finetuning.config import FinetuneConfig
from emprobe.finetuning.processes import Executor, run_cell_process


def _cell_task(cfg: dict[str, Any], cwd: str) -> tuple[int, str | None, float]:
    """The body of a cell's Ray task (runs on a worker)."""
    return run_cell_process(cfg, cwd)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("the Ray executor needs Ray: pip install 'emprobe[ray]'") from None
    return ray


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on a ``HOST:PORT`` nobody listens on (Ray itself retries for minutes)."""
    import socket

    if address == "auto":  # RAY_ADDRESS, else the cluster `ray start` last started here (possibly stale)
        from ray._private.services import canonicalize_bootstrap_address

        address = canonicalize_bootstrap_address("auto")
        if address is None:
            raise ConnectionError("no Ray cluster started on this machine")
    if not address or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    with socket.create_connection((host, int(port)), timeout=timeout):
        pass


class RayExecutor(Executor):
    """Cells as Ray tasks on the cluster at ``address`` (``"auto"``: the one ``ray start`` started on this
    machine; ``"HOST:PORT"``; ``None``: start a private local Ray instance for this run)."""

    name = "ray"

    def __init__(self, address: str | None = "auto", num_cpus_per_cell: float = 1, num_gpus_per_cell: float = 0,
                 max_retries: int = 1) -> None:
        if num_cpus_per_cell <= 0 or num_gpus_per_cell < 0 or max_retries < 0:
            raise ConfigError("num_cpus_per_cell must be > 0, num_gpus_per_cell and max_retries >= 0")
        self.address, self.max_retries = address, max_retries
        self.num_cpus_per_cell, self.num_gpus_per_cell = num_cpus_per_cell, num_gpus_per_cell

    def _connect(self, ray) -> bool:
        """Join (or start) Ray unless this process already did; True when this call must shut it down."""
        if ray.is_initialized():
            return False
        kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            _check_reachable(self.address)
            if self.address is None:
                ray.init(num_cpus=os.cpu_count(), **kw)
            else:
                ray.init(address=self.address, **kw)
        except (OSError, RuntimeError, ValueError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"cannot reach a Ray cluster at {self.address!r} ({first}); start one with "
                              "`ray start --head` or pass `address` HOST:PORT") from None
        return True

    def _execute(self, cells: list[tuple[int, FinetuneConfig]]) -> None:
        ray = _import_ray()
        own = self._connect(ray)
        threads = max(1, int(self.num_cpus_per_cell))
        task = ray.remote(_cell_task).options(num_cpus=self.num_cpus_per_cell, num_gpus=self.num_gpus_per_cell,
                                              max_retries=0)
        detail = f"Ray task, {self.num_cpus_per_cell:g} CPU" + (f", {self.num_gpus_per_cell:g} GPU"
                                                                if self.num_gpus_per_cell else "")
        cwd = os.getcwd()
        refs: dict[Any, tuple[int, FinetuneConfig, int]] = {}

        def submit(i: int, cfg: FinetuneConfig, attempt: int) -> None:
            self._started(i, attempt, detail)
            refs[task.remote(cfg.to_dict(), cwd)] = (i, cfg, attempt)

        try:
            for i, cfg in cells:
                submit(i, cfg.replace(threads=threads), 1)
            while refs:
                (ref,), _ = ray.wait(list(refs), num_returns=1)
                i, cfg, attempt = refs.pop(ref)
                try:
                    rc, error, seconds = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker or its node died, the task was cancelled ...
                    first = (str(e).strip().splitlines() or [""])[0]
                    rc, error, seconds = None, f"Ray task failed: {type(e).__name__}: {first}"[:300], 0.0
                again = self._ended(i, cfg, attempt, rc, error, seconds)
                if again is not None:
                    submit(i, again, attempt + 1)
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
            if own:
                ray.shutdown()
