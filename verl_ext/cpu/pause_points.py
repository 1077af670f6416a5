"""Named moments at which a process of a CPU training run stops and waits, so a test can kill the run there.

Crash tests need to kill a run at a chosen moment, not at a random time: in the middle of a step, or while a
checkpoint is half written. Set ``VERL_EXT_PAUSE_AT=<point>:<n>`` and ``VERL_EXT_PAUSE_FILE=<path>`` in the
run's environment; the process that reaches the point writes its pid to the file and sleeps until it is
killed. The start-up hook (:mod:`verl_ext.cpu.import_hooks`) installs the points only when the variable is
set, so a normal run never sees them. Points:

* ``update_actor:<n>``: the n-th actor update of the training worker has begun (the step's rollouts, rewards
  and advantages exist; the weights are not updated yet): the middle of a step.
* ``checkpoint:<n>``: the n-th checkpoint save of the training worker has written its first file (the model
  shard) and not the rest (optimizer, extra state, the trainer's ``data.pt`` and tracker): a checkpoint half
  written.

``n`` counts in the process, from 1 (a resumed run counts from its own start).
"""

from __future__ import annotations

import functools
import os
import time
from types import ModuleType

PAUSE_AT = "VERL_EXT_PAUSE_AT"
PAUSE_FILE = "VERL_EXT_PAUSE_FILE"
POINTS = ("update_actor", "checkpoint")


def requested() -> tuple[str, int] | None:
    """The point asked for in the environment, or None; raises ValueError for a malformed request."""
    value = os.environ.get(PAUSE_AT, "").strip()
    if not value:
        return None
    point, _, count = value.partition(":")
    if point not in POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{PAUSE_AT}={value!r}: use <point>:<n> with a point of {POINTS} and n >= 1")
    return point, int(count)


def pause_here(point: str) -> None:
    """Announce the pause (pid into the pause file) and wait to be killed."""
    path = os.environ.get(PAUSE_FILE)
    if path:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as out:
            out.write(f"{os.getpid()} {point}\n")
        os.replace(tmp, path)  # the test sees the file whole or not at all
    while True:
        time.sleep(3600)


def _counted(function, point: str, at: int, before=None):
    calls = 0

    @functools.wraps(function)  # keeps the attributes verl's @register put on the method
    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == at:
            if before is None:
                pause_here(point)
            return before(function, *args, **kwargs)
        return function(*args, **kwargs)

    return wrapper


def _save_then_pause_after_first_file(save_checkpoint, *args, **kwargs):
    import torch

    original = torch.save

    def save_one_then_pause(obj, f, *a, **kw):
        original(obj, f, *a, **kw)
        pause_here("checkpoint")

    torch.save = save_one_then_pause
    try:
        return save_checkpoint(*args, **kwargs)
    finally:
        torch.save = original


def install_update_actor(module: ModuleType, at: int) -> None:
    cls = module.ActorRolloutRefWorker
    cls.update_actor = _counted(cls.update_actor, "update_actor", at)


def install_checkpoint(module: ModuleType, at: int) -> None:
    cls = module.FSDPCheckpointManager
    cls.save_checkpoint = _counted(cls.save_checkpoint, "checkpoint", at, before=_save_then_pause_after_first_file)


# The module each point is installed on when that module is imported.
MODULES = {
    "update_actor": ("verl.workers.engine_workers", install_update_actor),
    "checkpoint": ("verl.utils.checkpoint.fsdp_checkpoint_manager", install_checkpoint),
}
