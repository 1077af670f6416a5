"""Every task's difficulty ladder: easiest first, the presets as points on it, and every level makes puzzles
whose ground truth the task scores right."""

from __future__ import annotations

import numpy as np
import pytest
from task_photos import ordinary

from verl_ext.tasks import TASKS


@pytest.mark.parametrize("name", sorted(TASKS))
def test_presets_are_points_on_the_ladder_in_order(name):
    task = TASKS[name]
    levels = task.levels()
    assert len(levels) >= 3
    positions = [levels.index(task.presets[p]) for p in ("easy", "medium", "hard") if p in task.presets]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert positions[0] == 0 and positions[-1] == len(levels) - 1  # the presets span the ladder


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_level_makes_puzzles_its_ground_truth_scores_right(name):
    task = TASKS[name]
    pictures = ordinary()
    for level, knobs in enumerate(task.levels()):
        extra = {}
        if task.needs_partner:
            role = next(r for r in task.pair_roles(0.0) if r.with_partner)
            extra = dict(role.knobs)
        puzzle = task.make(
            pictures[level % len(pictures)],
            np.random.default_rng(level),
            partner=pictures[(level + 1) % len(pictures)] if task.needs_partner else None,
            **knobs,
            **extra,
        )
        assert puzzle.prompt.count("<image>") == len(puzzle.images) > 0, (name, level)
        assert task.score(puzzle.answer, puzzle.answer, puzzle.params).acc == 1.0, (name, level)
