"""The curriculum controller as the trainer runs it: one update per training step, its state written for the
loader (:mod:`verl_ext.online.state`), its figures returned for the step's metrics.

The replay buffer (:mod:`verl_ext.task_metrics`) owns one and hands it each step's groups: ``(task, level,
share of right responses)`` for every group the step generated, those dropped by group filtering included
(a flat group says the most about a level: mastered or out of reach).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from verl_ext.curriculum import CurriculumConfig
from verl_ext.online.state import METRIC_PREFIX, Group, StateDir, TaskCurricula

logger = logging.getLogger(__name__)


class CurriculumController:
    def __init__(self, config: CurriculumConfig, state_dir: str | Path) -> None:
        self.config = config
        self.states = StateDir(state_dir)
        self.curricula: TaskCurricula | None = None  # loaded at the first step (the resume step is known then)
        self._step = 0
        self._groups: list[Group] = []  # of step self._step so far

    def _start(self, global_steps: int) -> TaskCurricula:
        """The state before ``global_steps``: fresh at step 1, else the file of the step before (a resume)."""
        previous = global_steps - 1
        dropped = self.states.drop_after(previous)
        if dropped:
            logger.warning("curriculum: dropped the states of steps %s, written after the checkpoint", dropped)
        if previous == 0:
            return TaskCurricula(self.config)
        if not self.states.versions():
            logger.warning(
                "curriculum: no state in %s; a run that trained without it starts it afresh", self.states.path
            )
            return TaskCurricula(self.config)
        state = self.states.read(previous, self.config)
        if state is None:
            raise FileNotFoundError(
                f"resuming at step {global_steps} needs the curriculum state of step {previous}: "
                f"{self.states.file(previous)} is missing (was data.online.state_dir changed since the run began?)"
            )
        print(f"curriculum: resumed from {self.states.file(previous)}", flush=True)  # verl's own messages are prints
        return state

    def step(self, global_steps: int, groups: Iterable[Group]) -> dict[str, float]:
        """Take the groups of step ``global_steps``, write the new state as that step's version, return metrics.

        Called once per ``sample()`` of the replay buffer: several times a step with verl's
        ``parameter_sync_step`` > 1, each call adding its groups to the step's file.
        """
        if self.curricula is None:
            self.curricula = self._start(global_steps)
        if global_steps != self._step:
            self._step, self._groups = global_steps, []
        groups = list(groups)
        self._groups += groups
        self.curricula.update(groups)
        self.states.write(global_steps, self.curricula, self._groups)
        sampled: dict[str, Counter] = defaultdict(Counter)
        right: dict[tuple[str, int], float] = defaultdict(float)
        for task, level, accuracy, *_ in groups:
            sampled[task][level] += 1
            right[task, level] += accuracy
        metrics = self.curricula.metrics(sampled)
        for task, counts in sampled.items():
            metrics[f"{METRIC_PREFIX}/{task}/groups"] = float(sum(counts.values()))
            for level, n in counts.items():
                # This step's observed accuracy (the solve-rate metric is the controller's smoothed estimate).
                metrics[f"{METRIC_PREFIX}/{task}/level_{level}/accuracy"] = right[task, level] / n
        return metrics
