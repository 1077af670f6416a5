"""Run CPU fixes in every process exactly when the module they concern is first imported.

verl starts many processes (the driver, Ray actors, vLLM engine and worker processes) and some of them import
torchvision or vLLM before verl has a chance to load our platform module. A ``sys.meta_path`` finder is the one
place that sees every import in a process, so the fixes are attached to module names here:

* before ``torchvision`` is imported: :func:`verl_ext.cpu.torchvision_fix.ensure_torchvision_importable`;
* after ``vllm.model_executor.layers.utils`` is imported: :func:`verl_ext.cpu.vllm_patches.patch_cpu_linear`;
* after transformers' Qwen2.5-VL modelling module is imported:
  :func:`verl_ext.cpu.patch_embed.patch_qwen2_5_vl_patch_embed` (the vision patch embedding as one GEMM);
* after verl's FSDP engine module is imported: :func:`verl_ext.cpu.reference_offload.unpin_reference_offload`
  (the reference model's offload without pinned memory, so the KL loss runs on CPU);
* after verl's single-turn agent loop is imported: :mod:`verl_ext.seeded_rollout`, which registers the seeded
  loop the CPU config samples with (verl builds agent loops in its own worker processes, by registered name), and
  :mod:`verl_ext.answer_token_loss`, its variant that trains only the answer's first token.

When ``VERL_EXT_PAUSE_AT`` is set (crash tests), the pause point it names is attached the same way
(:mod:`verl_ext.cpu.pause_points`).

Nothing heavy is imported until one of those modules is actually requested, so the hook costs nothing in
processes that never touch them. :func:`install` is idempotent.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType

_lock = threading.RLock()


def _before_torchvision() -> None:
    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()


def _after_vllm_layer_utils(module: ModuleType) -> None:
    from verl_ext.cpu.vllm_patches import patch_cpu_linear

    patch_cpu_linear(module)


def _after_qwen2_5_vl_modeling(module: ModuleType) -> None:
    from verl_ext.cpu.patch_embed import patch_qwen2_5_vl_patch_embed

    patch_qwen2_5_vl_patch_embed(module)


def _after_verl_fsdp_engine(module: ModuleType) -> None:
    from verl_ext.cpu.reference_offload import unpin_reference_offload

    unpin_reference_offload(module)


def _after_verl_single_turn_loop(module: ModuleType) -> None:
    import verl_ext.seeded_rollout  # noqa: F401  (registers the seeded agent loop and its answer-token variant)


BEFORE_IMPORT: dict[str, Callable[[], None]] = {"torchvision": _before_torchvision}
AFTER_IMPORT: dict[str, Callable[[ModuleType], None]] = {
    "vllm.model_executor.layers.utils": _after_vllm_layer_utils,
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl": _after_qwen2_5_vl_modeling,
    "verl.workers.engine.fsdp.transformer_impl": _after_verl_fsdp_engine,
    "verl.experimental.agent_loop.single_turn_agent_loop": _after_verl_single_turn_loop,
}


def _pause_point_hooks() -> dict[str, Callable[[ModuleType], None]]:
    from verl_ext.cpu import pause_points

    asked = pause_points.requested()
    if asked is None:
        return {}
    point, at = asked
    module_name, installer = pause_points.MODULES[point]
    return {module_name: lambda module: installer(module, at)}


class _PatchingLoader(importlib.abc.Loader):
    """Delegates to the real loader and runs a callback on the freshly executed module."""

    def __init__(self, loader: importlib.abc.Loader, callback: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec):  # noqa: D401 - loader protocol
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._callback(module)

    def __getattr__(self, name: str):
        # get_source, get_code, is_package, ...: tracebacks, inspect and torch.compile use them.
        return getattr(self._loader, name)


class CpuFixFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; it only notices imports of the module names above."""

    def __init__(self) -> None:
        self._busy: set[str] = set()  # names being resolved by us (guards against recursion)

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None):
        if fullname in self._busy or (fullname not in BEFORE_IMPORT and fullname not in AFTER_IMPORT):
            return None
        with _lock:
            self._busy.add(fullname)
            try:
                if fullname in BEFORE_IMPORT:
                    BEFORE_IMPORT[fullname]()
                if fullname not in AFTER_IMPORT:
                    return None  # let the normal finders import it
                spec = None
                for finder in sys.meta_path:
                    if finder is self or not hasattr(finder, "find_spec"):
                        continue
                    spec = finder.find_spec(fullname, path, target)
                    if spec is not None:
                        break
                if spec is None or spec.loader is None:
                    return spec
                spec.loader = _PatchingLoader(spec.loader, AFTER_IMPORT[fullname])
                return spec
            finally:
                self._busy.discard(fullname)


def install() -> CpuFixFinder:
    """Put the finder first on ``sys.meta_path`` (once per process) and apply fixes for modules already imported."""
    with _lock:
        for finder in sys.meta_path:
            if isinstance(finder, CpuFixFinder):
                return finder
        AFTER_IMPORT.update(_pause_point_hooks())
        finder = CpuFixFinder()
        sys.meta_path.insert(0, finder)
    for name, callback in AFTER_IMPORT.items():
        module = sys.modules.get(name)
        if module is not None:
            callback(module)
    return finder
