"""The adaptive difficulty controller against a simulated learner whose solve rate per level rises with practice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from verl_ext.curriculum import Curriculum, CurriculumConfig, informative

GROUP = 8
GROUPS_PER_STEP = 32
LEVELS = 5


class Learner:
    """Skill per level grows with the informative groups practised there (half as much at the next level): GRPO
    learns only from groups that are not flat. The solve rate of a level is a logistic function of its skill;
    at the start level 0 is solved 92% of the time, level 1 62%, level 4 under 1%."""

    def __init__(self, levels: int, rng: np.random.Generator, learning_rate: float = 0.003) -> None:
        self.skill = self.start(levels)
        self.rng = rng
        self.learning_rate = learning_rate

    @staticmethod
    def start(levels: int) -> np.ndarray:
        return np.array([1.0 - 0.8 * level for level in range(levels)])

    def solve_rate(self, level: int) -> float:
        return 1.0 / (1.0 + math.exp(-2.5 * self.skill[level]))

    def group(self, level: int) -> float:
        right = self.rng.binomial(GROUP, self.solve_rate(level))
        if 0 < right < GROUP:
            self.skill[level] += self.learning_rate
            if level + 1 < len(self.skill):
                self.skill[level + 1] += self.learning_rate / 2
        return right / GROUP


def run(curriculum: Curriculum, learner: Learner, steps: int, rng: np.random.Generator, pick=None):
    """Train for ``steps`` (the controller picks levels unless ``pick`` does); per step, the share of
    informative groups and the frontier."""
    shares, frontiers = [], []
    for _ in range(steps):
        levels = pick(rng) if pick else curriculum.sample(rng, GROUPS_PER_STEP)
        results = [(int(level), learner.group(int(level))) for level in levels]
        curriculum.update(results)
        shares.append(np.mean([0.0 < acc < 1.0 for _, acc in results]))
        frontiers.append(curriculum.frontier)
    return np.array(shares), np.array(frontiers)


def fixed(pick, seed: int, steps: int) -> float:
    """Informative share of the same learner trained on levels chosen by ``pick`` instead."""
    rng = np.random.default_rng(seed)
    shares, _ = run(Curriculum(LEVELS), Learner(LEVELS, rng), steps, rng, pick)
    return float(shares.mean())


def test_informative_share_of_a_group():
    assert informative(0.0, 8) == 0.0 and informative(1.0, 8) == 0.0
    assert informative(0.5, 8) == pytest.approx(1 - 2 / 256)
    assert informative(0.9, 8) < informative(0.6, 8)


@pytest.mark.parametrize("seed", [0, 1])
def test_climbs_the_ladder_and_keeps_groups_informative(seed):
    rng = np.random.default_rng(seed)
    curriculum = Curriculum(levels=LEVELS, config=CurriculumConfig(group_size=GROUP))
    shares, frontiers = run(curriculum, Learner(LEVELS, rng), steps=100, rng=rng)
    assert frontiers[-1] >= LEVELS - 2
    assert shares.mean() > 0.45, shares.mean()
    # A fixed level wastes most groups: all right (easiest) or all wrong (hardest); a uniform mix fewer.
    assert shares.mean() > fixed(lambda r: [0] * GROUPS_PER_STEP, seed, 100) + 0.3
    assert shares.mean() > fixed(lambda r: [LEVELS - 1] * GROUPS_PER_STEP, seed, 100) + 0.3
    assert shares.mean() > fixed(lambda r: r.integers(0, LEVELS, GROUPS_PER_STEP), seed, 100)


def test_moves_back_down_when_the_learner_collapses_then_climbs_again():
    rng = np.random.default_rng(1)
    curriculum = Curriculum(levels=LEVELS, config=CurriculumConfig(group_size=GROUP))
    learner = Learner(LEVELS, rng)
    run(curriculum, learner, steps=150, rng=rng)
    top = curriculum.frontier
    assert top == LEVELS - 1
    learner.skill[:] = Learner.start(LEVELS)  # it forgets what it learned
    shares, frontiers = run(curriculum, learner, steps=150, rng=rng)
    assert frontiers[:30].min() < top  # stepped back down soon after the drop
    assert shares[:10].mean() > 0.5  # and kept the groups informative meanwhile
    assert frontiers[-1] == top  # then climbed again


def test_state_survives_a_round_trip_and_resumes_identically():
    rng = np.random.default_rng(2)
    curriculum = Curriculum(levels=4)
    run(curriculum, Learner(4, rng), steps=60, rng=rng)
    restored = Curriculum.from_state_dict(curriculum.state_dict())
    assert restored.state_dict() == curriculum.state_dict()
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    assert list(curriculum.sample(a, 20)) == list(restored.sample(b, 20))
    metrics = restored.metrics("train/curriculum/rotation", sampled={0: 3, 1: 1})
    assert metrics["train/curriculum/rotation/frontier"] == restored.frontier
    assert metrics["train/curriculum/rotation/level_0/share"] == 0.75
    assert sum(metrics[f"train/curriculum/rotation/level_{i}/probability"] for i in range(4)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad", [{"group_size": 1}, {"master": 0.1, "collapse": 0.2}, {"ema": 0.0}, {"min_groups": 0}, {"prior": 2.0}]
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        CurriculumConfig(**bad)


def test_bad_observations_are_refused():
    curriculum = Curriculum(levels=3)
    with pytest.raises(ValueError, match="outside the ladder"):
        curriculum.update([(3, 0.5)])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        curriculum.update([(0, float("nan"))])
