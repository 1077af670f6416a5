"""The curriculum's state: one controller per task, and how its state reaches the loader workers.

Who holds what. The controller (:class:`TaskCurricula`) lives in the trainer process, inside the replay buffer
(:mod:`verl_ext.task_metrics`), which sees every step's rewards. The puzzles are made by the dataset, often in
``data.dataloader_num_workers`` loader processes forked when an epoch starts. The two meet in a folder
(``data.online.state_dir``, by default ``SAVE_DIR/curriculum``): after the rewards of step ``s`` the controller
writes ``step_<s>.json``; version 0 is the initial state (from the config, never read from disk).

Which version a puzzle uses. verl's loader prefetches: with ``W`` workers it asks for batch ``b`` right after it
has handed out batch ``b - 2W`` (``prefetch_factor`` 2, torch's default, which verl keeps), and verl fetches a
step's batch before that step's rewards exist. So when batch ``b`` is made, the updates of steps
``1 .. b - 2W`` have been written, and no more. The puzzle at stream position ``i`` therefore uses version
``max(0, (i - 2W * gen_batch) // train_batch)``: always written already, and the same whatever the timing, so a
run and its resumption serve the same levels for the same rewards. The curriculum reacts ``2W`` steps late with
``W`` workers (0 without); a small price next to a loader that keeps up. With group filtering the loader
fetches single prompts and a step takes a varying number of them; positions then run ahead of steps, and the
newest written version at or below the target is used (near, not exactly, reproducible).

Resume. The files of steps up to the checkpoint are those the interrupted run wrote; at its first step the
resumed controller reads the checkpoint step's file and deletes any newer one (written after the checkpoint by
the run that crashed), before anything asks for them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from verl_ext.builder.writer import write_json_atomic
from verl_ext.curriculum import Curriculum, CurriculumConfig
from verl_ext.tasks import get_task

PREFETCH_FACTOR = 2  # torch's DataLoader default with workers; verl 0.9.1 does not set it
_FILE = re.compile(r"^step_(\d{8})\.json$")
LEVEL_PREFIX = "level_"  # extra_info["difficulty"] of a curriculum puzzle: "level_<k>"
METRIC_PREFIX = "train/curriculum"


def level_name(level: int) -> str:
    return f"{LEVEL_PREFIX}{level}"


def parse_level(difficulty: Any) -> int | None:
    """The ladder level of a puzzle from its ``extra_info["difficulty"]``, or None for a preset puzzle."""
    if isinstance(difficulty, str) and difficulty.startswith(LEVEL_PREFIX):
        tail = difficulty[len(LEVEL_PREFIX) :]
        if tail.isdigit():
            return int(tail)
    return None


class Group(NamedTuple):
    """One GRPO group of a curriculum puzzle, as the controller learns from it."""

    task: str
    level: int
    accuracy: float  # share of the group's responses that were right
    position: int = -1  # the puzzle's stream position (extra_info["index"]): which puzzle it was
    content_id: str = ""  # its picture


class TaskCurricula:
    """One :class:`~verl_ext.curriculum.Curriculum` per task of a run, keyed by task name; a task not seen yet
    starts at its easiest level (its ladder is the task's :meth:`~verl_ext.tasks.base.Task.levels`)."""

    def __init__(self, config: CurriculumConfig, curricula: Mapping[str, Curriculum] | None = None) -> None:
        self.config = config
        self.curricula = dict(curricula or {})

    def of(self, task: str) -> Curriculum:
        if task not in self.curricula:
            self.curricula[task] = Curriculum(len(get_task(task).levels()), self.config)
        return self.curricula[task]

    def sample(self, task: str, rng: np.random.Generator) -> int:
        return int(self.of(task).sample(rng))

    def update(self, groups: Iterable[Group]) -> None:
        """Take one step's groups."""
        by_task: dict[str, list[tuple[int, float]]] = {}
        for group in groups:
            by_task.setdefault(group.task, []).append((group.level, group.accuracy))
        for task, pairs in by_task.items():
            self.of(task).update(pairs)

    def metrics(self, sampled: Mapping[str, Mapping[int, int]], prefix: str = METRIC_PREFIX) -> dict[str, float]:
        """Frontier, solve-rate estimate and sampling probability per task and level; with the step's level
        counts (``sampled``: task -> level -> puzzles), each level's share of the step's puzzles."""
        out: dict[str, float] = {}
        for task in sorted(set(self.curricula) | set(sampled)):
            out.update(self.of(task).metrics(f"{prefix}/{task}", sampled.get(task)))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {task: c.state_dict() for task, c in self.curricula.items()}

    @classmethod
    def from_state_dict(cls, config: CurriculumConfig, state: Mapping[str, Any]) -> TaskCurricula:
        return cls(config, {task: Curriculum.from_state_dict(s) for task, s in state.items()})


class StateDir:
    """The folder of per-step curriculum states (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, version: int) -> Path:
        return self.path / f"step_{version:08d}.json"

    def write(self, version: int, state: TaskCurricula, groups: Sequence[Group] = ()) -> None:
        """Write ``state`` as ``version``, atomically (a reader sees the old file or the new one, whole), with the
        groups that led to it (a record of which puzzles, at which level, the step trained on)."""
        self.path.mkdir(parents=True, exist_ok=True)
        record = {"version": version, "tasks": state.state_dict(), "groups": [g._asdict() for g in groups]}
        write_json_atomic(self.file(version), record)

    def _record(self, version: int) -> dict[str, Any] | None:
        try:
            return json.loads(self.file(version).read_text())
        except FileNotFoundError:
            return None

    def groups(self, version: int) -> list[Group]:
        """The groups written with ``version`` (empty for a missing file)."""
        record = self._record(version)
        return [Group(**g) for g in record.get("groups", [])] if record else []

    def read(self, version: int, config: CurriculumConfig) -> TaskCurricula | None:
        record = self._record(version)
        return TaskCurricula.from_state_dict(config, record["tasks"]) if record else None

    def versions(self) -> list[int]:
        if not self.path.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.path.iterdir() if (m := _FILE.match(p.name)))

    def drop_after(self, version: int) -> list[int]:
        """Delete the files of versions above ``version`` (a crashed run's steps past its checkpoint)."""
        dropped = [v for v in self.versions() if v > version]
        for v in dropped:
            self.file(v).unlink(missing_ok=True)
        return dropped


def version_for(position: int, *, workers: int, gen_batch: int, train_batch: int) -> int:
    """The state version the puzzle at stream ``position`` is made with (see the module docstring)."""
    return max(0, (position - PREFETCH_FACTOR * workers * gen_batch) // train_batch)
