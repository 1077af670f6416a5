"""The verl reward function of every puzzle task.

Enable it with::

    reward.custom_reward_function.path=pkg://verl_ext.reward
    reward.custom_reward_function.name=compute_score

and tune it with ``+reward.custom_reward_function.reward_kwargs.<name>=<value>`` (see :class:`RewardConfig`).
Every import below is absolute, so verl may also load this file by its path (``path=verl_ext/reward.py``).

The reward of one response is::

    credit = 1                                   if the answer is exactly right
           = partial_scale * partial             otherwise (partial is 0 for label tasks)
    score  = (acc_weight * credit + format_weight * format) / (acc_weight + format_weight)
    score  = 0                                   if format_gate and the format is wrong

so ``score`` always lies in [0, 1].
"""

# No ``from __future__ import annotations`` here, on purpose: verl executes this file under a module name that
# is not in ``sys.modules``, and ``dataclasses`` then fails to resolve string annotations (AttributeError at
# load time). tests/test_reward_verl.py loads the file exactly that way.
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from verl_ext.answers import ParsedResponse, parse_response
from verl_ext.tasks import get_task
from verl_ext.tasks.base import AnswerScore, PuzzleParams, Task

logger = logging.getLogger(__name__)

# Keys of every result, in this order, for every task and every input: verl builds its per-sample metric
# columns from the first result's keys, so they must never vary.
RESULT_KEYS = ("score", "acc", "format", "partial", "answered")

# Keyword arguments verl itself may add to the call (only when a reward model router exists); ignored.
_VERL_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})


@dataclass(frozen=True)
class RewardConfig:
    """Reward knobs, set as ``+reward.custom_reward_function.reward_kwargs.<field>=<value>``.

    Defaults follow Spatial-SSRL's 0.9 accuracy / 0.1 format split: the format term is large enough to teach
    the tag structure from scratch, small enough that a format-only policy (score 0.1) is far below any
    solving policy, unlike the 0.2-0.5 format weights with which reproductions sat on a format-only plateau.
    ``partial_scale`` 0.2 is Visual Jigsaw's: a valid but wrong tile order earns at most a fifth of an exact
    one, enough gradient for 3x3 grids to learn (without it they did not) while an exact order stays worth
    five times a near miss.
    """

    acc_weight: float = 0.9
    format_weight: float = 0.1
    # Scale of partial credit (fraction of correctly placed tiles) for valid but wrong permutations.
    partial_scale: float = 0.2
    # Whether the format needs the <think>...</think> block before the answer.
    require_think: bool = True
    # When true, a response with the wrong format scores 0 even if its answer is right (Visual Jigsaw style).
    format_gate: bool = False

    def __post_init__(self) -> None:
        for name in ("acc_weight", "format_weight", "partial_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"reward kwarg {name} must be a finite number >= 0, got {value!r}")
        if self.acc_weight + self.format_weight <= 0:
            raise ValueError("reward kwargs acc_weight and format_weight must not both be 0")
        if self.partial_scale > 1:
            raise ValueError(f"reward kwarg partial_scale must lie in [0, 1], got {self.partial_scale!r}")
        for name in ("require_think", "format_gate"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"reward kwarg {name} must be true or false, got {getattr(self, name)!r}")


_FIELDS = frozenset(RewardConfig.__dataclass_fields__)


@lru_cache(maxsize=64)
def _config(items: frozenset[tuple[str, type, Any]]) -> RewardConfig:
    unknown = sorted(k for k, _, _ in items if k not in _FIELDS)
    if unknown:
        raise ValueError(f"unknown reward kwargs {unknown}; valid: {sorted(_FIELDS)}")
    return RewardConfig(**{k: v for k, _, v in items})


def reward_config(kwargs: Mapping[str, Any]) -> RewardConfig:
    """The :class:`RewardConfig` of the reward kwargs verl passes (its own extra kwargs are ignored)."""
    # The type is part of the cache key: True == 1 and both hash alike, but only one is a valid bool knob.
    try:
        return _config(frozenset((k, type(v), v) for k, v in kwargs.items() if k not in _VERL_KWARGS))
    except TypeError:  # an unhashable value (a list, a dict) is never a valid knob
        raise ValueError(f"reward kwargs must be numbers or booleans, got {dict(kwargs)!r:.300}") from None


@lru_cache(maxsize=16_384)
def _params_from_json(text: str) -> Mapping[str, Any]:
    try:
        params = PuzzleParams(text)
    except ValueError as error:
        raise ValueError(f"extra_info['params'] is not valid JSON: {error}") from None
    except TypeError as error:  # valid JSON, but not an object
        raise ValueError(f"extra_info['params'] {error}") from None
    return params


def task_and_params(extra_info: Mapping[str, Any] | None) -> tuple[Task, Mapping[str, Any]]:
    """The task named by ``extra_info["task"]`` and its puzzle parameters.

    A missing or unknown task, or unreadable params, is a dataset/configuration error and raises
    ``ValueError`` at once (naming the valid tasks), instead of quietly scoring every sample 0.
    """
    # type() first: the ABC isinstance check costs microseconds and verl always passes a dict.
    if not (type(extra_info) is dict or isinstance(extra_info, Mapping)) or "task" not in extra_info:
        raise ValueError(
            "the puzzle reward needs extra_info['task'] (rows written by verl_ext.builder have it); "
            f"got extra_info={extra_info!r:.200}"
        )
    task = get_task(extra_info["task"])
    raw = extra_info.get("params")
    if raw is None or raw == "":
        params: Mapping[str, Any] = {}
    elif isinstance(raw, str):
        params = _params_from_json(raw)
    elif isinstance(raw, Mapping):
        params = raw
    else:
        raise ValueError(f"extra_info['params'] must be a JSON string or a dict, got {type(raw).__name__}")
    if task.answer_kind == "permutation" and "num_tiles" not in params:
        raise ValueError(f"task {task.name!r} needs params['num_tiles'], got params {dict(params)!r:.200}")
    return task, params


def finite_number(value: Any) -> float | None:
    """A reward value (or one of its extras) as a finite float; None for anything else (text, NaN, inf, None)."""
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def combine(answer: AnswerScore, format_ok: bool, answered: bool, config: RewardConfig) -> dict[str, float]:
    """The result dict (keys :data:`RESULT_KEYS`) of a scored answer under ``config``."""
    acc = 1.0 if answer.acc >= 1.0 else 0.0
    partial = min(max(float(answer.partial), 0.0), 1.0) if not math.isnan(answer.partial) else 0.0
    credit = 1.0 if acc else config.partial_scale * partial
    fmt = 1.0 if format_ok else 0.0
    score = (config.acc_weight * credit + config.format_weight * fmt) / (config.acc_weight + config.format_weight)
    if config.format_gate and not format_ok:
        score = 0.0
    return {
        "score": min(max(score, 0.0), 1.0),
        "acc": acc,
        "format": fmt,
        "partial": partial,
        "answered": 1.0 if answered else 0.0,
    }


_warned: set[tuple[str, str]] = set()


def _score_answer(task: Task, parsed: ParsedResponse, ground_truth: str, params: Mapping[str, Any]) -> AnswerScore:
    """``task.score`` of the extracted answer; a task error on model output is logged once and scores 0."""
    if parsed.answer is None:
        return AnswerScore(acc=0.0, partial=0.0)
    try:
        return task.score(parsed.answer, ground_truth, params)
    except Exception as error:  # noqa: BLE001 - the reward must never take training down on model output
        key = (task.name, type(error).__name__)
        if key not in _warned:
            _warned.add(key)
            logger.warning("task %r failed to score an answer (scored 0): %r", task.name, error)
        return AnswerScore(acc=0.0, partial=0.0)


def compute_score(
    data_source: str | None,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """Score one response to one puzzle row; verl's custom reward function.

    Returns ``{"score", "acc", "format", "partial", "answered"}`` (floats): ``score`` is the reward in
    [0, 1]; ``acc`` is exact correctness (0/1); ``format`` says the response is one ``<think>`` block then
    one ``<answer>`` block at the end (0/1); ``partial`` is the raw partial credit in [0, 1] (fraction of
    correctly placed tiles for jigsaw-like tasks, equal to ``acc`` for label tasks); ``answered`` says a
    single final answer block could be read at all (0/1), which separates "no answer" from "wrong answer".

    Never raises on model output. Raises ``ValueError`` for configuration or dataset errors (unknown or
    missing task, unreadable params, bad reward kwargs, missing ground truth). ``data_source`` is not used:
    the task comes from ``extra_info["task"]``.
    """
    config = reward_config(kwargs)
    task, params = task_and_params(extra_info)
    if ground_truth is None:
        raise ValueError("the puzzle reward needs reward_model.ground_truth; got None")
    parsed = parse_response(solution_str, require_think=config.require_think)
    answer = _score_answer(task, parsed, str(ground_truth), params)
    return combine(answer, parsed.format_ok, parsed.answer is not None, config)


__all__ = [
    "RESULT_KEYS",
    "RewardConfig",
    "combine",
    "compute_score",
    "finite_number",
    "reward_config",
    "task_and_params",
]
