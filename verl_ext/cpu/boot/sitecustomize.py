"""Interpreter start-up hook for the CPU path (this folder is put on PYTHONPATH by scripts/lib/cpu_env.sh).

Python imports ``sitecustomize`` in every interpreter it starts, so every process of a verl run (driver, Ray
workers, vLLM processes) gets the import hooks of :mod:`verl_ext.cpu.import_hooks` before any of its own code
runs. Installing them imports nothing heavy. A ``sitecustomize`` that this one shadows (some Linux
distributions ship one) is still run afterwards.
"""

import importlib.machinery as _machinery
import importlib.util as _util
import os as _os
import sys as _sys

try:
    from verl_ext.cpu import import_hooks as _import_hooks
except ImportError as _error:  # the project is not installed in this interpreter: say so, do not break it
    print(f"verl_ext CPU start-up hook inactive: {_error}", file=_sys.stderr)
else:
    _import_hooks.install()


def _run_shadowed_sitecustomize() -> None:
    here = _os.path.dirname(_os.path.abspath(__file__))
    others = [p for p in _sys.path if _os.path.abspath(p or ".") != here]
    spec = _machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None:
        return
    module = _util.module_from_spec(spec)
    spec.loader.exec_module(module)


_run_shadowed_sitecustomize()
