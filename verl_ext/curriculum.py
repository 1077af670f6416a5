"""Adaptive difficulty: which level of a task's difficulty ladder to train on next, from the training rewards.

Why this rule. GRPO scores each response against the other responses to the same prompt (its group): the
advantage is the reward minus the group's mean. A group whose responses all score the same (all right or all
wrong) has zero advantages and adds no gradient: the compute spent on it is wasted. For a level whose puzzles the
model solves with probability ``p``, a group of ``n`` responses is informative (not flat) with probability

    informative(p) = 1 - p**n - (1 - p)**n,

highest at ``p = 1/2`` and near zero for levels the model has mastered (``p → 1``) or cannot do (``p → 0``).

The controller keeps, per level, an estimate of ``p`` (an exponential moving average of the observed share of
right responses per group) and

* samples the unlocked levels in proportion to ``informative(p)`` plus a floor, so mastered levels are still
  reviewed now and then (forgetting shows up as a falling estimate, which raises the level's weight again);
* unlocks the next level (moves the frontier up) once the frontier level is mastered: its estimate is above
  ``master`` over at least ``min_groups`` groups since the last move; a level never seen starts at ``prior``;
* locks the frontier level again (moves back down) when its estimate collapses under ``collapse`` over
  ``min_groups`` groups: the model lost the previous level's skill, or the step up was too large.

State is plain numbers (:meth:`Curriculum.state_dict`), so it can be saved with a checkpoint and restored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CurriculumConfig:
    """The controller's knobs (see the module docstring for the rule they tune)."""

    group_size: int = 8  # responses per prompt (verl's actor_rollout_ref.rollout.n)
    master: float = 0.8  # frontier solve rate above which the next level unlocks
    collapse: float = 0.15  # frontier solve rate under which the frontier level locks again
    ema: float = 0.05  # weight of one group's accuracy in its level's solve-rate estimate
    min_groups: int = 16  # groups of the frontier level needed, since the last move, before it can move again
    floor: float = 0.05  # smallest sampling weight of an unlocked level, relative to the informative weights
    prior: float = 0.5  # solve-rate estimate of a level with no groups yet

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"group_size must be at least 2 (a GRPO group), got {self.group_size}")
        if not 0.0 <= self.collapse < self.master <= 1.0:
            raise ValueError(f"need 0 <= collapse < master <= 1, got collapse={self.collapse}, master={self.master}")
        if not 0.0 < self.ema <= 1.0 or self.min_groups < 1 or self.floor < 0 or not 0.0 <= self.prior <= 1.0:
            raise ValueError(f"invalid curriculum settings: {self}")


def curriculum_config(settings: Mapping[str, Any] | None) -> CurriculumConfig | None:
    """The controller's knobs from the config's ``data.online.curriculum`` (None when ``enable`` is off). The
    dataset and the controller both read them from there, so they agree on every knob, ``group_size`` included."""
    if not settings or not bool(settings.get("enable", False)):
        return None
    fields = CurriculumConfig.__dataclass_fields__
    return CurriculumConfig(**{k: settings[k] for k in fields if settings.get(k) is not None})


def informative(p: float, n: int) -> float:
    """Probability that a group of ``n`` responses with solve rate ``p`` is not flat."""
    p = min(max(p, 0.0), 1.0)
    return 1.0 - p**n - (1.0 - p) ** n


@dataclass
class Level:
    """What the controller knows about one level."""

    rate: float  # estimated solve rate
    since_move: int = 0  # groups seen since the frontier last moved


@dataclass
class Curriculum:
    """The controller of one task's ladder of ``levels`` difficulty levels (0 = easiest)."""

    levels: int
    config: CurriculumConfig = field(default_factory=CurriculumConfig)
    frontier: int = 0
    stats: list[Level] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"a ladder needs at least one level, got {self.levels}")
        if not self.stats:
            self.stats = [Level(self.config.prior) for _ in range(self.levels)]
        if len(self.stats) != self.levels or not 0 <= self.frontier < self.levels:
            raise ValueError(f"inconsistent curriculum state: {self.levels} levels, frontier {self.frontier}")

    def probabilities(self) -> np.ndarray:
        """Sampling probability of each level (zero above the frontier)."""
        n = self.config.group_size
        weights = np.zeros(self.levels)
        for i in range(self.frontier + 1):
            weights[i] = informative(self.stats[i].rate, n) + self.config.floor
        return weights / weights.sum()

    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        """Levels for the next puzzles."""
        return rng.choice(self.levels, size=size, p=self.probabilities())

    def update(self, groups: Iterable[tuple[int, float]]) -> None:
        """Take one step's groups: ``(level, share of the group's responses that were right)``."""
        by_level: dict[int, list[float]] = {}
        for level, accuracy in groups:
            if not 0 <= level < self.levels:
                raise ValueError(f"level {level} is outside the ladder (0..{self.levels - 1})")
            if not (0.0 <= accuracy <= 1.0) or math.isnan(accuracy):
                raise ValueError(f"a group's accuracy must be in [0, 1], got {accuracy}")
            by_level.setdefault(level, []).append(accuracy)
        for level, accuracies in by_level.items():
            stats = self.stats[level]
            observed = sum(accuracies) / len(accuracies)
            # The moving average over groups, taken per step: k groups weigh what k successive updates would.
            weight = 1.0 - (1.0 - self.config.ema) ** len(accuracies)
            stats.rate = (1.0 - weight) * stats.rate + weight * observed
            stats.since_move += len(accuracies)
        self._move()

    def _move(self) -> None:
        frontier = self.stats[self.frontier]
        if frontier.since_move < self.config.min_groups:
            return
        if frontier.rate > self.config.master and self.frontier + 1 < self.levels:
            self.frontier += 1
        elif frontier.rate < self.config.collapse and self.frontier > 0:
            self.frontier -= 1
        else:
            return
        for level in self.stats:
            level.since_move = 0

    # ---- what is logged and checkpointed

    def metrics(self, prefix: str, sampled: Mapping[int, int] | None = None) -> dict[str, float]:
        """Scalars for the step's log: frontier, each level's solve-rate estimate and sampling probability, and
        (given the step's sampled level counts) each level's share of the step's puzzles."""
        out = {f"{prefix}/frontier": float(self.frontier)}
        probabilities = self.probabilities()
        total = sum(sampled.values()) if sampled else 0
        for i, level in enumerate(self.stats):
            out[f"{prefix}/level_{i}/solve_rate"] = level.rate
            out[f"{prefix}/level_{i}/probability"] = float(probabilities[i])
            if total:
                out[f"{prefix}/level_{i}/share"] = sampled.get(i, 0) / total
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "levels": self.levels,
            "frontier": self.frontier,
            "config": asdict(self.config),
            "stats": [asdict(s) for s in self.stats],
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Curriculum:
        return cls(
            levels=int(state["levels"]),
            config=CurriculumConfig(**state["config"]),
            frontier=int(state["frontier"]),
            stats=[Level(**s) for s in state["stats"]],
        )
