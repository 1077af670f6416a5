"""Make ``import torchvision`` work next to a CPU-only torch when the torchvision wheel was built for CUDA.

The PyPI wheel ``torchvision==0.28.0`` (the release paired with torch 2.13) links its C++ extension ``_C.so``
against ``libtorch_cuda.so``. With ``torch==2.13.0+cpu`` that extension cannot load, torchvision carries on
without its operators, and then fails at import time in ``_meta_registrations.py`` because it registers fake
kernels for ``torchvision::nms`` / ``torchvision::qnms``, which were never declared::

    RuntimeError: operator torchvision::nms does not exist

Declaring the two operator schemas ourselves before torchvision is first imported is enough: the import
succeeds and the pure-PyTorch parts (tensor transforms, which transformers' Qwen2-VL image processor and
qwen_vl_utils use) work. The C++ operators themselves (nms, roi_align, image decoding) stay unavailable.

When the extension *does* load (a matching CPU or CUDA build) nothing is declared, since torchvision's own
library then owns the ``torchvision`` operator namespace.
"""

from __future__ import annotations

import importlib.machinery
import logging
import sys
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

# The operators torchvision's _meta_registrations.py needs to exist at import time.
_MISSING_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

# The torch.library.Library object must stay alive as long as the process, or the definitions are dropped.
_library = None
_state: str | None = None  # None: not checked yet; otherwise what ensure_torchvision_importable() found
_lock = threading.RLock()


def _extension_loads(package_dir: Path) -> bool:
    """Whether torchvision's compiled ``_C`` extension can be loaded into this process."""
    import torch

    candidates = sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd"))
    if not candidates:
        return False
    try:
        # The same call torchvision makes; on success the operators are registered and torchvision's own
        # later attempt is a no-op.
        torch.ops.load_library(str(candidates[0]))
    except OSError as error:
        logger.debug("torchvision extension %s does not load: %s", candidates[0], error)
        return False
    return True


def ensure_torchvision_importable() -> str:
    """Prepare this process so that ``import torchvision`` succeeds; safe to call any number of times.

    Returns what was done: ``"not-installed"``, ``"already-imported"``, ``"native"`` (the extension loads,
    nothing to do) or ``"declared"`` (the missing operator schemas were declared).
    """
    global _state
    with _lock:
        if _state is None:
            _state = "in-progress"  # a nested call (through an import hook) must not declare a second time
            try:
                _state = _prepare()
            except BaseException:
                _state = None
                raise
        return _state


def _prepare() -> str:
    global _library
    if "torchvision" in sys.modules:
        return "already-imported"
    # PathFinder, not importlib.util.find_spec: the latter would run the sys.meta_path import hooks, one of which
    # (verl_ext.cpu.import_hooks) calls back into this function.
    spec = importlib.machinery.PathFinder.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return "not-installed"
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    if _extension_loads(package_dir):
        return "native"

    import torch

    _library = torch.library.Library("torchvision", "DEF")  # noqa: TOR901 - deliberate: a process-wide declaration
    for schema in _MISSING_SCHEMAS:
        _library.define(schema)
    logger.debug("declared torchvision operator schemas %s", [s.split("(")[0] for s in _MISSING_SCHEMAS])
    return "declared"
