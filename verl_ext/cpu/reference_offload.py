"""Let verl's frozen reference model run on CPU.

verl 0.9.1's FSDP engine forces every forward-only model (the reference policy behind the KL loss) onto
FSDP2's ``CPUOffloadPolicy(pin_memory=True)``. Pinning page-locks host memory for fast copies to an accelerator;
without one, ``Tensor.pin_memory`` raises "Cannot access accelerator device when none is available", so the CPU
configuration could not use the KL loss at all. On CPU the "device" is the host, so the policy moves nothing
and the pinning buys nothing: this hook gives verl's engine module a ``CPUOffloadPolicy`` that never pins. It is
installed only by the CPU start-up hook (:mod:`verl_ext.cpu.import_hooks`), so GPU runs keep verl's own.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

_PATCHED_ATTR = "_verl_ext_unpinned"


def unpin_reference_offload(module: ModuleType) -> bool:
    """Replace ``module.CPUOffloadPolicy`` with a factory that always passes ``pin_memory=False``."""
    policy = getattr(module, "CPUOffloadPolicy", None)
    if policy is None:
        logger.warning("%s has no CPUOffloadPolicy; the CPU reference-model fix is not applied", module.__name__)
        return False
    if getattr(policy, _PATCHED_ATTR, False):
        return True

    def unpinned(*args: Any, **kwargs: Any) -> Any:
        kwargs["pin_memory"] = False
        return policy(*args, **kwargs)

    setattr(unpinned, _PATCHED_ATTR, True)
    module.CPUOffloadPolicy = unpinned
    return True
