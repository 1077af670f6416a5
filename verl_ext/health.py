"""Signs that a GRPO run has stopped learning, noticed while it runs and in its logs afterwards.

The commonest failure in the peers' trackers is entropy collapse: the policy turns deterministic, every response
of a group gets the same reward, the group-normalised advantage is zero, and nothing more is learned. Rewards
stall and it goes unnoticed for hours. Three figures show it early, each with a threshold and the reason for it:

* **Entropy** (per response token) below ``entropy_ratio`` (10%) of its level over the run's first ``window``
  steps. The level depends on the model, tokenizer and prompt, so only a fall relative to the run's own start
  means something; DAPO (Yu et al., 2025, section 3.1) reports entropy falling this way within the first few
  hundred steps of plain GRPO, with the group's samples becoming near-identical, and answers it with a higher
  upper clip ratio ("clip-higher").
* **Response length** below ``length_ratio`` (50%) of its starting level: responses that shrink to a stub
  have usually dropped the reasoning, or the model found a short answer the reward accepts. Also the share of
  responses cut at ``max_response_length`` above ``clip_share`` (50%): those lose their answer and score as
  wrong, which teaches length, not the task.
* **Flat groups**: the share of a task's prompts whose responses all scored alike, above ``flat_share`` (90%)
  on average over the last ``window`` steps. Those prompts give GRPO no gradient; near 1 the run is idle
  whatever the reward says (all right: the task is too easy; all wrong: too hard, or the policy collapsed).

Each figure is averaged over ``window`` steps (5) before it is compared, so one noisy step does not warn. A
warning is given when a condition starts, and again only after it has cleared.

:class:`HealthMonitor` is the one implementation. The training run feeds it each step's figures from the replay
buffer (:mod:`verl_ext.task_metrics`: the entropy is estimated there from the rollout's own log-probabilities of
the tokens it sampled, whose mean is an unbiased estimate of the per-token entropy); ``plot_run.py`` replays it
over a finished run's logged metrics (:func:`check_logged_run`, with verl's ``actor/entropy``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

ENTROPY = "entropy"
LENGTH = "response_length"
CLIPPED = "clipped_share"
FLAT_PREFIX = "flat_groups/"  # + the data source


@dataclass(frozen=True)
class Thresholds:
    """When :class:`HealthMonitor` warns (the module docstring says why each value)."""

    window: int = 5
    entropy_ratio: float = 0.1
    length_ratio: float = 0.5
    clip_share: float = 0.5
    flat_share: float = 0.9

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> Thresholds:
        """Thresholds from a config mapping (unknown keys and bad values are errors, missing ones defaults)."""
        settings = dict(settings or {})
        known = {f.name for f in fields(cls)}
        unknown = set(settings) - known - {"enable", "max_response_length"}
        if unknown:
            raise ValueError(f"unknown training-health settings {sorted(unknown)}; known: {sorted(known)}")
        values = {name: settings[name] for name in known if settings.get(name) is not None}
        thresholds = cls(**values)
        if not (isinstance(thresholds.window, int) and thresholds.window >= 1):
            raise ValueError(f"health window must be a whole number of steps >= 1, got {thresholds.window!r}")
        for name in ("entropy_ratio", "length_ratio", "clip_share", "flat_share"):
            value = getattr(thresholds, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"health {name} must lie in (0, 1], got {value!r}")
        return thresholds


class HealthMonitor:
    """Takes each step's figures (:meth:`observe`) and returns the warnings that start at that step."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self._recent: dict[str, deque[float]] = {}
        self._start: dict[str, list[float]] = {}
        self._active: set[str] = set()

    def _level(self, name: str, value: float) -> tuple[float | None, float]:
        """(starting level once the first window is full, else None; mean of the last window)."""
        recent = self._recent.setdefault(name, deque(maxlen=self.thresholds.window))
        recent.append(value)
        start = self._start.setdefault(name, [])
        if len(start) < self.thresholds.window:
            start.append(value)
            return None, float(np.mean(recent))
        return float(np.mean(start)), float(np.mean(recent))

    def observe(self, step: int, figures: Mapping[str, float]) -> list[str]:
        """Record one step (``entropy``, ``response_length``, ``clipped_share``, ``flat_groups/<source>``, any
        subset; non-finite values are ignored) and return the warnings whose condition begins now."""
        t = self.thresholds
        found: dict[str, str] = {}
        for name, value in figures.items():
            if value is None or not math.isfinite(value):
                continue
            start, now = self._level(name, float(value))
            full = len(self._recent[name]) >= t.window
            if name == ENTROPY and start is not None and start > 0 and now < t.entropy_ratio * start:
                found[name] = (
                    f"entropy collapse: mean token entropy {now:.3g} over the last {t.window} steps is under "
                    f"{t.entropy_ratio:.0%} of its starting {start:.3g}; the policy is turning deterministic and "
                    "groups stop differing (try a higher clip ratio, an entropy bonus, or a lower learning rate)"
                )
            elif name == LENGTH and start is not None and start > 0 and now < t.length_ratio * start:
                found[name] = (
                    f"responses shrinking: mean length {now:.1f} tokens over the last {t.window} steps, under "
                    f"{t.length_ratio:.0%} of the starting {start:.1f}; the model may be dropping its reasoning"
                )
            elif name == CLIPPED and full and now > t.clip_share:
                found[name] = (
                    f"responses cut off: {now:.0%} of responses hit max_response_length over the last {t.window} "
                    "steps; a cut response loses its answer and scores as wrong (raise data.max_response_length)"
                )
            elif name.startswith(FLAT_PREFIX) and full and now >= t.flat_share:
                source = name[len(FLAT_PREFIX) :]
                found[name] = (
                    f"no learning signal for {source}: {now:.0%} of its groups scored alike over the last "
                    f"{t.window} steps, so GRPO has nothing to learn from them (all right: too easy; all wrong: "
                    "too hard, or the policy collapsed onto one answer)"
                )
        onsets = [f"step {step}: {message}" for name, message in found.items() if name not in self._active]
        # A condition stays active until a step that reports its figure no longer meets it.
        self._active = (self._active - set(figures)) | set(found)
        return onsets


# Where each figure is read from in one step's metrics; the first name present wins. A logged run has verl's own
# actor figures; while the run trains only the replay buffer's exist (the actor computes its figures after the
# buffer has handed the batch out). The cut-off share is only the buffer's: verl 0.9.1's response_length/clip_ratio
# counts the responses as long as the padded batch, i.e. as its longest response, which need not be cut at all.
FIGURE_SOURCES = {
    ENTROPY: ("actor/entropy", "train/health/sampled_entropy"),
    LENGTH: ("response_length/mean", "train/health/response_length"),
    CLIPPED: ("train/health/clipped_share",),
}


def step_figures(metrics: Mapping[str, float]) -> dict[str, float]:
    """The monitor's figures in one step's metrics (``train/<source>/flat_groups`` give one figure per task)."""
    figures = {}
    for name, tags in FIGURE_SOURCES.items():
        tag = next((tag for tag in tags if tag in metrics), None)
        if tag is not None:
            figures[name] = float(metrics[tag])
    for tag, value in metrics.items():
        parts = tag.split("/")
        if len(parts) == 3 and parts[0] == "train" and parts[2] == "flat_groups":
            figures[FLAT_PREFIX + parts[1]] = float(value)
    return figures


def logged_figures(scalars: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[int, dict[str, float]]:
    """Per step, the monitor's figures from a run's logged metrics."""
    steps: dict[int, dict[str, float]] = {}
    for tag, (step_values, values) in scalars.items():
        for step, value in zip(step_values, values):
            steps.setdefault(int(step), {})[tag] = float(value)
    return {step: step_figures(metrics) for step, metrics in sorted(steps.items())}


def check_logged_run(
    scalars: Mapping[str, tuple[np.ndarray, np.ndarray]], thresholds: Thresholds | None = None
) -> list[str]:
    """Every warning the monitor would have given while the logged run trained."""
    monitor = HealthMonitor(thresholds)
    warnings: list[str] = []
    for step, figures in logged_figures(scalars).items():
        warnings += monitor.observe(step, figures)
    return warnings
