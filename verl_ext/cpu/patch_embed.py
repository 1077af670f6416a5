"""Qwen2.5-VL's patch embedding as one matrix product on CPU.

The vision tower embeds each 2x14x14 pixel patch with an ``nn.Conv3d`` whose kernel equals its stride, so the
convolution is exactly a linear map of each flattened patch: ``patches @ weight.view(out, -1).T``. On CPU,
PyTorch runs that convolution's backward through ``slow_conv3d_backward_cpu`` (im2col per output position); in
a CPU training step of the tiny model it took about a third of the actor update's samples
(``shared/notes/cpu-step-profile.md``). The replacement computes the same numbers with one GEMM, keeps the
module's parameter (``proj.weight``, same shape and name, so checkpoints, FSDP sharding and merging see no
difference) and changes nothing on GPUs: it is installed only by the CPU start-up hook.
"""

from __future__ import annotations

import logging
from types import ModuleType

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

_PATCHED_ATTR = "_verl_ext_patch_embed_matmul"


def patch_embed_forward(self: torch.nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """``Qwen2_5_VisionPatchEmbed.forward`` with the stride-equals-kernel Conv3d written as a linear map."""
    weight = self.proj.weight  # (embed_dim, channels, temporal, patch, patch)
    flat = hidden_states.reshape(-1, weight[0].numel()).to(dtype=weight.dtype)
    return F.linear(flat, weight.reshape(weight.shape[0], -1), self.proj.bias)


def patch_qwen2_5_vl_patch_embed(module: ModuleType) -> bool:
    """Give ``Qwen2_5_VisionPatchEmbed`` of the transformers module the matmul forward; returns whether it did."""
    cls = getattr(module, "Qwen2_5_VisionPatchEmbed", None)
    if cls is None:
        logger.warning("%s has no Qwen2_5_VisionPatchEmbed; CPU patch-embedding fix not applied", module.__name__)
        return False
    if getattr(cls, _PATCHED_ATTR, False):
        return True
    cls.forward = patch_embed_forward
    setattr(cls, _PATCHED_ATTR, True)
    return True
