"""The contract every puzzle task follows.

A task turns one decoded image (plus, for tasks that compare pictures, a second one) into a :class:`Puzzle`
whose answer follows from the transformation the task applied, and it knows how to score a parsed answer
against that ground truth. Builders, the reward function and the evaluation code only talk to tasks
through this module, so adding a task means writing one module and adding it to ``verl_ext.tasks.TASKS``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Literal

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


class PuzzleParams(dict):
    """A puzzle's params as read from its row, with the row's JSON text kept: a ready cache key for scoring.

    Treat it as read-only (it is shared between every rollout of the puzzle).
    """

    __slots__ = ("json",)

    def __init__(self, text: str) -> None:
        value = json.loads(text)  # ValueError for text that is not JSON
        if not isinstance(value, dict):
            raise TypeError(f"puzzle params must be a JSON object, got {type(value).__name__}")
        super().__init__(value)
        self.json = text


def params_key(params: Mapping[str, Any]) -> str:
    """A string that identifies a puzzle's params (their JSON text)."""
    if isinstance(params, PuzzleParams):
        return params.json
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class PairRole:
    """One of the two puzzles a pair of pictures ``(a, b)`` gives a task with ``needs_partner``.

    The puzzle is ``make(pictures[picture], partner=<the other picture> if with_partner else None, **knobs)``;
    ``name`` labels it in the build's summary (e.g. ``positive``/``negative``).
    """

    picture: Literal[0, 1]
    with_partner: bool
    knobs: Mapping[str, Any]
    name: str


class Task:
    """Base class of a puzzle task. Subclasses set the class attributes and implement :meth:`make`.

    ``presets`` maps a difficulty name (``easy``, ``medium``, ``hard``) to keyword arguments of :meth:`make`;
    ``default_difficulty`` is used when the caller names none.

    Tasks that compare pictures set ``needs_partner`` and say in :meth:`pair_roles` how a pair of two different
    pictures becomes two puzzles; builders pair pictures of one split and otherwise know nothing of the task.
    """

    name: ClassVar[str]
    answer_kind: ClassVar[AnswerKind] = "label"
    # True for tasks that need a second, different picture (e.g. negatives of the contrastive task).
    needs_partner: ClassVar[bool] = False
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    default_difficulty: ClassVar[str] = "medium"
    # The difficulty ladder an adaptive curriculum (verl_ext.curriculum) climbs: knobs of make(), easiest first,
    # with the presets as points on it. Empty: the presets easy, medium, hard, in that order.
    ladder: ClassVar[tuple[Mapping[str, Any], ...]] = ()

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

    def pair_roles(self, coin: float) -> tuple[PairRole, PairRole]:
        """For ``needs_partner`` tasks: the two puzzles of a pair of pictures, in the order they are made.

        ``coin`` is uniform in [0, 1) and fixed by the pair's ids, for tasks that assign roles at random. By
        default each picture makes one puzzle with the other as its partner.
        """
        return PairRole(0, True, {}, "first"), PairRole(1, True, {}, "second")

    def score(self, answer: str, ground_truth: str, params: Mapping[str, Any]) -> AnswerScore:
        """Score the text found inside the answer tag against the ground truth: the one way a puzzle is scored.

        Label tasks build a lookup of every accepted spelling from :meth:`labels`, once per puzzle: GRPO scores
        each puzzle once per rollout, and some tasks spell out hundreds of labels.
        """
        # Imported here: the parsing module is the reward's, and tasks must import without it.
        from verl_ext import answers

        if self.answer_kind == "permutation":
            return answers.score_permutation(answer, ground_truth, n=int(params["num_tiles"]))
        return answers.score_label_index(answer, ground_truth, _label_index(self, params_key(params)))

    def levels(self) -> tuple[Mapping[str, Any], ...]:
        """The knobs of each level of this task's difficulty ladder, easiest first."""
        if self.ladder:
            return self.ladder
        return tuple(self.presets[name] for name in ("easy", "medium", "hard") if name in self.presets)

    def knobs_for(self, difficulty: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for :meth:`make`: the preset of ``difficulty`` updated by explicit overrides."""
        level = difficulty or self.default_difficulty
        if level not in self.presets:
            raise ValueError(f"task {self.name!r} has no difficulty {level!r}; choose one of {sorted(self.presets)}")
        return {**self.presets[level], **{k: v for k, v in overrides.items() if v is not None}}


@lru_cache(maxsize=1_024)
def _label_index(task: Task, key: str) -> Mapping[str, object]:
    """The spelling lookup of one puzzle of ``task`` (``key``: its :func:`params_key`)."""
    from verl_ext import answers

    return answers.label_index(task.labels(json.loads(key)))


def positive_negative_pair(coin: float) -> tuple[PairRole, PairRole]:
    """Roles for "same picture or not?" tasks: one picture makes a positive (``positive=True``, no partner), the
    other a negative with the first as its partner (``positive=False``), so every pair adds one of each. ``coin``
    decides which picture gives the positive. The positive is made first."""
    first: Literal[0, 1] = 0 if coin < 0.5 else 1
    second: Literal[0, 1] = 1 - first  # type: ignore[assignment]
    return (
        PairRole(first, with_partner=False, knobs={"positive": True}, name="positive"),
        PairRole(second, with_partner=True, knobs={"positive": False}, name="negative"),
    )
