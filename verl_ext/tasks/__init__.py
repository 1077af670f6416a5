"""Registry of puzzle tasks: the one place that lists them."""

from __future__ import annotations

from verl_ext.tasks.base import AnswerScore, Puzzle, PuzzleSkip, Task
from verl_ext.tasks.contrastive import ContrastiveTask
from verl_ext.tasks.correspondence import CorrespondenceTask
from verl_ext.tasks.flip import FlipTask
from verl_ext.tasks.inpainting import InpaintingTask
from verl_ext.tasks.jigsaw import JigsawTask
from verl_ext.tasks.position import PositionTask
from verl_ext.tasks.rotation import RotationTask

# name -> task instance. Each task module adds its entry here (one import, one line).
TASKS: dict[str, Task] = {
    "rotation": RotationTask(),
    "jigsaw": JigsawTask(),
    "position": PositionTask(),
    "contrastive": ContrastiveTask(),
    "inpainting": InpaintingTask(),
    "correspondence": CorrespondenceTask(),
    "flip": FlipTask(),
}


def get_task(name: str) -> Task:
    """The task called ``name``; a configuration error naming the valid tasks otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown puzzle task {name!r}; valid tasks: {', '.join(sorted(TASKS))}") from None


__all__ = ["TASKS", "AnswerScore", "Puzzle", "PuzzleSkip", "Task", "get_task"]
