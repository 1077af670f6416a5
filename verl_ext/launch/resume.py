"""Which checkpoint a run resumes from, and the repair of what a killed run leaves in its ``SAVE_DIR``.

What verl 0.9.1 guarantees (``RayPPOTrainer._save_checkpoint`` / ``_load_checkpoint``): the trainer writes a
checkpoint as the workers' shards (``global_step_N/actor/*_world_size_W_rank_R.pt``, each written straight to
its final name), then ``global_step_N/data.pt`` (the data loader's position), and only then the tracker file
``latest_checkpointed_iteration.txt``; ``resume_mode=auto`` restarts from the step the tracker names. So a run
killed in the middle of a step, or while writing the shards, resumes from the previous checkpoint. What it
does not guarantee:

* the tracker is rewritten in place (``open(..., "w")``): a kill at that instant leaves it empty, and the next
  start fails on ``int("")`` before reading any option;
* with ``max_actor_ckpt_to_keep: 1`` the previous checkpoint is deleted when the new shards are complete,
  before ``data.pt`` and the tracker are written: a kill in between leaves a tracker that names a deleted
  folder, and verl then prints "Checkpoint does not exist" and silently trains from step 0 over the run;
* a half-written ``global_step_N`` stays on disk looking like a checkpoint (for the merger, for a person).

What the launcher adds (:func:`plan_resume`, run by ``scripts/run_grpo.sh`` before verl starts): every
``global_step_N`` is checked for completeness (each shard kind for every rank, each ``.pt`` file a whole zip
archive -- ``torch.save`` writes the archive's directory last, so a cut file has none --, and ``data.pt``); the
run resumes from the newest complete one, the tracker is rewritten (atomically) when it names anything else,
and incomplete folders newer than that are moved to ``SAVE_DIR/incomplete/`` rather than deleted. A checkpoint
whose shards are complete but whose ``data.pt`` is missing (the second case above) is used when nothing newer
is complete, with a warning: the weights and optimizer resume, the data order restarts its epoch.
"""

from __future__ import annotations

import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

TRACKER = "latest_checkpointed_iteration.txt"
INCOMPLETE = "incomplete"
_STEP_DIR = re.compile(r"global_step_(\d+)")
_SHARD = re.compile(r"(model|optim|extra_state)_world_size_(\d+)_rank_(\d+)\.pt")
_REQUIRED_KINDS = ("model", "optim", "extra_state")


def _whole_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def shard_problems(actor: Path) -> list[str]:
    """What is missing or cut in a checkpoint's ``actor`` folder; empty when every rank's shards are whole."""
    if not actor.is_dir():
        return ["no actor folder"]
    shards: dict[str, dict[int, Path]] = {}
    sizes: set[int] = set()
    for path in actor.iterdir():
        match = _SHARD.fullmatch(path.name)
        if match:
            kind, world, rank = match.group(1), int(match.group(2)), int(match.group(3))
            shards.setdefault(kind, {})[rank] = path
            sizes.add(world)
    if len(sizes) > 1:
        return [f"shards of several world sizes {sorted(sizes)}"]
    if "model" not in shards:
        return ["no model shard"]
    world = sizes.pop()
    problems = []
    for kind in _REQUIRED_KINDS:
        ranks = shards.get(kind, {})
        missing = [rank for rank in range(world) if rank not in ranks]
        if missing:
            problems.append(f"{kind} shard of rank(s) {missing} missing")
        problems += [f"{path.name} is cut short" for path in ranks.values() if not _whole_archive(path)]
    return problems


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    shard_problems: tuple[str, ...]
    has_data_state: bool

    @property
    def complete(self) -> bool:
        return not self.shard_problems and self.has_data_state

    @property
    def weights_complete(self) -> bool:
        return not self.shard_problems


def checkpoints(save_dir: Path) -> list[Checkpoint]:
    """Every ``global_step_N`` folder of ``save_dir``, oldest first."""
    found = []
    for path in save_dir.iterdir() if save_dir.is_dir() else ():
        match = _STEP_DIR.fullmatch(path.name)
        if match and path.is_dir():
            data = path / "data.pt"
            found.append(
                Checkpoint(
                    step=int(match.group(1)),
                    path=path,
                    shard_problems=tuple(shard_problems(path / "actor")),
                    has_data_state=data.is_file() and _whole_archive(data),
                )
            )
    return sorted(found, key=lambda checkpoint: checkpoint.step)


def tracker_step(save_dir: Path) -> int | None:
    """The step verl's tracker names, or None when it is missing or unreadable (e.g. empty after a kill)."""
    try:
        return int((save_dir / TRACKER).read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class ResumePlan:
    step: int | None  # the step the run resumes from; None: it starts from scratch
    tracker: int | None  # what the tracker named
    set_tracker: bool = False  # the tracker must be rewritten to `step`
    move_aside: list[Checkpoint] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan_resume(save_dir: Path) -> ResumePlan:
    """Where a ``resume_mode=auto`` run in ``save_dir`` should restart, and what must change for verl to do so."""
    found = checkpoints(save_dir)
    tracked = tracker_step(save_dir)
    plan = ResumePlan(step=None, tracker=tracked)
    complete = [c for c in found if c.complete]
    chosen = complete[-1] if complete else None
    weights_only = [c for c in found if c.weights_complete and (chosen is None or c.step > chosen.step)]
    if weights_only:
        chosen = weights_only[-1]
        plan.warnings.append(
            f"{chosen.path.name} has its weights and optimizer but no data.pt (the run was killed while saving): "
            "resuming from it, with the training data order restarted for this epoch"
        )
    if chosen is not None:
        plan.step = chosen.step
    if (save_dir / TRACKER).exists() and tracked is None:
        plan.warnings.append(f"{TRACKER} is unreadable (the run was killed while writing it)")
    if plan.step != tracked and (plan.step is not None or tracked is not None):
        plan.set_tracker = plan.step is not None
        named = "nothing" if tracked is None else f"step {tracked}"
        if plan.step is None:
            plan.warnings.append(f"the tracker names {named}, but no checkpoint is complete: starting from step 0")
        else:
            plan.warnings.append(f"the tracker names {named}; the newest complete checkpoint is step {plan.step}")
    plan.move_aside = [c for c in found if not c.weights_complete and (plan.step is None or c.step > plan.step)]
    for checkpoint in plan.move_aside:
        plan.warnings.append(
            f"{checkpoint.path.name} is incomplete ({'; '.join(checkpoint.shard_problems)}): moved to {INCOMPLETE}/"
        )
    return plan


def apply(save_dir: Path, plan: ResumePlan) -> None:
    """Make ``save_dir`` say what ``plan`` decided: incomplete folders moved aside, then the tracker rewritten."""
    if plan.move_aside:
        aside = save_dir / INCOMPLETE
        aside.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d_%H%M%S")
        for checkpoint in plan.move_aside:
            os.replace(checkpoint.path, aside / f"{checkpoint.path.name}.{stamp}")
    tracker = save_dir / TRACKER
    if plan.set_tracker and plan.step is not None:
        tmp = save_dir / f".{TRACKER}.tmp-{os.getpid()}"
        tmp.write_text(str(plan.step))
        os.replace(tmp, tracker)
    elif plan.step is None and plan.tracker is None and tracker.exists():
        tracker.unlink()  # unreadable and nothing to name: verl would fail on it
