"""A stand-in for ``torch.cuda`` that verl's code can call on a CPU-only machine.

verl reaches the accelerator through ``get_torch_device()`` (``torch.cuda`` on GPUs) for seeding, RNG state,
cache flushing and memory statistics. On CPU these are either plain ``torch`` calls or meaningless, so they map
to the CPU equivalent or do nothing. Names not listed fall back to ``torch.cpu``; if ``torch.cpu`` lacks them
too they become no-ops that log once, so a new verl call shows up in the log instead of killing a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psutil
import torch

logger = logging.getLogger(__name__)


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


def _memory_info(*args: Any, **kwargs: Any) -> tuple[int, int]:
    """``(free, total)`` bytes, like ``torch.cuda.mem_get_info``, for host memory."""
    memory = psutil.virtual_memory()
    return memory.available, memory.total


class CpuDeviceModule:
    """Attribute-compatible subset of ``torch.cuda`` backed by the host."""

    # Memory statistics: the host has no separate allocator to report on.
    memory_allocated = staticmethod(_zero)
    memory_reserved = staticmethod(_zero)
    max_memory_allocated = staticmethod(_zero)
    max_memory_reserved = staticmethod(_zero)
    mem_get_info = staticmethod(_memory_info)
    # Cache and stream management have nothing to do on CPU.
    empty_cache = staticmethod(_nothing)
    synchronize = staticmethod(_nothing)
    ipc_collect = staticmethod(_nothing)
    reset_peak_memory_stats = staticmethod(_nothing)
    set_per_process_memory_fraction = staticmethod(_nothing)
    set_device = staticmethod(_nothing)

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def current_device() -> str:
        return "cpu"

    @staticmethod
    def device_count() -> int:
        return 1

    @staticmethod
    def get_device_name(*args: Any, **kwargs: Any) -> str:
        return "cpu"

    @staticmethod
    def manual_seed(seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed

    @staticmethod
    def get_rng_state(*args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        torch.set_rng_state(state)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        if hasattr(torch.cpu, name):
            return getattr(torch.cpu, name)
        logger.warning("CPU device module: torch.cuda.%s has no CPU equivalent; treated as a no-op", name)
        setattr(self, name, _nothing)
        return _nothing


cpu_device_module = CpuDeviceModule()
