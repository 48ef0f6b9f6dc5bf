"""Data-parallel helpers: which process this is, and a barrier (no-ops in a single process)."""

from __future__ import annotations

import os


def world() -> tuple[int, int]:
    """``(rank, world_size)`` from the launcher's environment (``torchrun`` / ``accelerate launch``)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """True in the process that writes (rank 0)."""
    return world()[0] == 0


def barrier() -> None:
    """Wait for every process, once the process group exists."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
