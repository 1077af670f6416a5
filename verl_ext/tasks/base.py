"""The contract every puzzle task follows.

A task turns one decoded image (plus, for tasks that compare pictures, a second one) into a :class:`Puzzle`
whose answer follows from the transformation the task applied, and it knows how to score a parsed answer
against that ground truth. Builders, the reward function and the evaluation code only talk to tasks
through this module, so adding a task means writing one module and adding it to ``verl_ext.tasks.TASKS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Sequence

import numpy as np
from PIL import Image

# Asked for at the end of every prompt; the reward checks exactly this shape.
FORMAT_INSTRUCTION = (
    "First reason about it inside <think> </think> tags, then give only your final answer "
    "inside <answer> </answer> tags."
)

AnswerKind = Literal["label", "permutation"]


class PuzzleSkip(Exception):
    """Raised by :meth:`Task.make` when an image cannot make a sound puzzle (too small, too flat, ...).

    The message is a short, stable reason (e.g. ``"tile under 28 px"``): builders count skips by it.
    """


@dataclass(frozen=True)
class Puzzle:
    """One puzzle, ready to become a verl row.

    ``prompt`` holds exactly one ``<image>`` placeholder per entry of ``images``, in order.
    ``params`` must be JSON-serialisable and hold everything :meth:`Task.score` needs besides the answer
    (it is stored in ``extra_info["params"]`` as a JSON string).
    """

    images: list[Image.Image]
    prompt: str
    answer: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnswerScore:
    """How right a parsed answer is: ``acc`` is exact correctness (0 or 1), ``partial`` lies in [0, 1]."""

    acc: float
    partial: float


class Task:
    """Base class of a puzzle task. Subclasses set the class attributes and implement :meth:`make`.

    ``presets`` maps a difficulty name (``easy``, ``medium``, ``hard``) to keyword arguments of :meth:`make`;
    ``default_difficulty`` is used when the caller names none.
    """

    name: ClassVar[str]
    answer_kind: ClassVar[AnswerKind] = "label"
    # True for tasks that need a second, different picture (e.g. negatives of the contrastive task).
    needs_partner: ClassVar[bool] = False
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    default_difficulty: ClassVar[str] = "medium"

    def make(
        self,
        image: Image.Image,
        rng: np.random.Generator,
        partner: Image.Image | None = None,
        **knobs: Any,
    ) -> Puzzle:
        """Build one puzzle from ``image`` using only ``rng`` for randomness."""
        raise NotImplementedError

    def labels(self, params: Mapping[str, Any]) -> Mapping[str, Sequence[str]]:
        """For label tasks: every canonical answer of this puzzle mapped to the extra spellings accepted for it."""
        raise NotImplementedError

    def score(self, answer: str, ground_truth: str, params: Mapping[str, Any]) -> AnswerScore:
        """Score the text found inside the answer tag against the ground truth."""
        # Imported here: the parsing module is the reward's, and tasks must import without it.
        from verl_ext import answers

        if self.answer_kind == "permutation":
            return answers.score_permutation(answer, ground_truth, n=int(params["num_tiles"]))
        return answers.score_label(answer, ground_truth, self.labels(params))

    def knobs_for(self, difficulty: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for :meth:`make`: the preset of ``difficulty`` updated by explicit overrides."""
        level = difficulty or self.default_difficulty
        if level not in self.presets:
            raise ValueError(f"task {self.name!r} has no difficulty {level!r}; choose one of {sorted(self.presets)}")
        return {**self.presets[level], **{k: v for k, v in overrides.items() if v is not None}}
