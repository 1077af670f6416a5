"""What a build will do, fixed before any image is read: options, task mix, knobs, per-item seeds.

Everything random in a build is derived from (seed, task, source id, k) alone, so any worker count, chunking or
machine gives the same rows.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from verl_ext.builder.order import ORDERS
from verl_ext.sources.decode import DEFAULT_LIMITS, DecodeLimits
from verl_ext.sources.split import unit_hash
from verl_ext.tasks import Task, get_task

DEFAULT_MAX_PROMPT_TOKENS = 1024  # verl's data.max_prompt_length in the configs we ship
DIFFICULTIES = ("easy", "medium", "hard")
# Controls of a learning experiment: a build whose prompts, answers and everything else are the real build's,
# with the signal removed. "grey": every picture shown is a flat mid-grey picture of the same size, so a policy
# that still learns reads the answer from the text, which is a leak.
CONTROLS = ("grey",)
CONTROL_GREY = (128, 128, 128)


@dataclass(frozen=True)
class BuildConfig:
    """All options of one build (the command line maps onto these one to one)."""

    task: str
    output: Path
    source: str | None = None
    input: Path | None = None
    tasks: str | None = None  # for task "mix": "rotation:0.25,jigsaw:0.25,..."
    seed: int = 0
    workers: int = 1
    limit: int | None = None  # at most this many pictures per source split (per build for carved sources)
    difficulty: str | None = None  # None: each task's default
    val_fraction: float = 0.1
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS
    tokenizer: Path | None = None
    puzzles_per_image: int = 1
    image_format: str = "jpeg"
    options: tuple[str, ...] = ()  # task knobs "name=value" or "task.name=value"
    carve: bool = False  # carve every source split into train/val by content
    strict: bool = False  # raise on errors inside a task instead of counting them
    progress: bool = True
    limits: DecodeLimits = DEFAULT_LIMITS
    control: str | None = None  # "grey": every shown picture a flat grey one of its size (see CONTROLS)
    order: str = "source"  # row order of each split: "source", "stratified" or "balanced" (verl_ext/builder/order.py)


@dataclass(frozen=True)
class TaskPlan:
    """One task of a build: its name, difficulty, knobs, mix weight, and whether it pairs pictures."""

    name: str
    difficulty: str
    knobs: dict[str, Any]
    weight: float
    needs_partner: bool


@dataclass(frozen=True)
class BuildPlan:
    """What the workers need: picklable, and identical in every process."""

    source: str
    seed: int
    tasks: tuple[TaskPlan, ...]
    val_fraction: float
    max_prompt_tokens: int
    tokenizer: str | None
    puzzles_per_image: int
    image_format: str
    strict: bool
    limits: DecodeLimits = field(default=DEFAULT_LIMITS)
    control: str | None = None

    def task_for(self, source_id: str, k: int) -> TaskPlan:
        """The task of puzzle ``k`` of picture ``source_id``: fixed by a hash, shares follow the mix weights."""
        if len(self.tasks) == 1:
            return self.tasks[0]
        u = unit_hash("task", self.seed, source_id, k)
        total = 0.0
        for plan in self.tasks:
            total += plan.weight
            if u < total:
                return plan
        return self.tasks[-1]

    def rng(self, task: str, source_id: str, k: int, *extra: object) -> np.random.Generator:
        """The generator of one puzzle, from (seed, task, source id, k) only."""
        words = [self.seed, _word(task), _word(source_id), k, *(_word(str(e)) for e in extra)]
        return np.random.default_rng(words)


def _word(text: str) -> int:
    return int(unit_hash("rng", text) * 2**63)


def parse_mix(spec: str) -> dict[str, float]:
    """``"rotation:0.25,jigsaw:0.75"`` -> normalised weights; a bare name weighs 1."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        get_task(name.strip())  # unknown task -> ValueError naming the valid ones
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"--tasks: weight of {name!r} is not a number: {weight!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"--tasks: weight of {name!r} must be >= 0, got {weight!r}")
        weights[name.strip()] = weights.get(name.strip(), 0.0) + value
    total = sum(weights.values())
    if not weights or total <= 0:
        raise ValueError(f"--tasks needs at least one task with a positive weight, got {spec!r}")
    return {name: w / total for name, w in weights.items() if w > 0}


def parse_options(options: tuple[str, ...] | list[str], task_names: list[str]) -> dict[str, dict[str, Any]]:
    """``["rows=3", "jigsaw.cols=4"]`` -> per-task overrides; values are JSON when they parse, else strings."""
    import json

    out: dict[str, dict[str, Any]] = {name: {} for name in task_names}
    for option in options:
        key, sep, raw = option.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option must look like name=value or task.name=value, got {option!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        task, dot, name = key.strip().rpartition(".")
        targets = [task] if dot else task_names
        if dot and task not in out:
            raise ValueError(f"--option {option!r}: task {task!r} is not part of this build ({task_names})")
        for target in targets:
            out[target][name] = value
    return out


def check_knobs(task: Task, knobs: dict[str, Any]) -> None:
    """Fail early, naming the valid knobs, when ``task.make`` would not accept ``knobs``."""
    signature = inspect.signature(task.make)
    try:
        signature.bind(None, None, partner=None, **knobs)
    except TypeError:
        valid = [n for n, p in signature.parameters.items() if p.kind == p.KEYWORD_ONLY]
        unknown = sorted(set(knobs) - set(signature.parameters))
        raise ValueError(
            f"task {task.name!r} has no option {unknown or list(knobs)}; its options are {valid}"
        ) from None


def make_plan(config: BuildConfig, source_name: str) -> BuildPlan:
    """Resolve tasks, weights, difficulties and knobs of a build; every configuration error surfaces here."""
    if config.task == "mix":
        if not config.tasks:
            raise ValueError("--task mix needs --tasks, e.g. --tasks rotation:0.5,jigsaw:0.5")
        weights = parse_mix(config.tasks)
    else:
        get_task(config.task)
        if config.tasks:
            raise ValueError("--tasks is only used with --task mix")
        weights = {config.task: 1.0}
    if config.difficulty is not None and config.difficulty not in DIFFICULTIES:
        raise ValueError(f"--difficulty must be one of {DIFFICULTIES}, got {config.difficulty!r}")
    if config.order not in ORDERS:
        raise ValueError(f"--order must be one of {ORDERS}, got {config.order!r}")
    if config.image_format not in ("jpeg", "png"):
        raise ValueError(f"--image-format must be jpeg or png, got {config.image_format!r}")
    if config.puzzles_per_image < 1:
        raise ValueError(f"--puzzles-per-image must be at least 1, got {config.puzzles_per_image}")
    if config.max_prompt_tokens < 64:
        raise ValueError(f"--max-prompt-tokens is too small to hold any puzzle: {config.max_prompt_tokens}")
    overrides = parse_options(config.options, list(weights))
    plans = []
    for name, weight in weights.items():
        task = get_task(name)
        knobs = task.knobs_for(config.difficulty, **overrides[name])
        check_knobs(task, knobs)
        plans.append(
            TaskPlan(
                name=name,
                difficulty=config.difficulty or task.default_difficulty,
                knobs=knobs,
                weight=weight,
                needs_partner=task.needs_partner,
            )
        )
    paired = [p.name for p in plans if p.needs_partner]
    if config.order == "balanced" and paired:
        raise ValueError(
            f"--order balanced drops single rows, which would break the puzzle pairs of {', '.join(paired)} (whose"
            " answers come in pairs already); use --order stratified"
        )
    return BuildPlan(
        source=source_name,
        seed=config.seed,
        tasks=tuple(plans),
        val_fraction=config.val_fraction,
        max_prompt_tokens=config.max_prompt_tokens,
        tokenizer=str(config.tokenizer) if config.tokenizer else None,
        puzzles_per_image=config.puzzles_per_image,
        image_format=config.image_format,
        strict=config.strict,
        limits=config.limits,
        control=config.control,
    )


def probe_image(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    """A textured synthetic picture (smooth colour ramps plus noise) for sizing a task's output."""
    # Made once per process (the noise costs more than a small build's worth of puzzles); a copy, so a task
    # that changed its input could not change the next probe.
    return _probe_image(width, height, seed).copy()


@functools.lru_cache(maxsize=8)
def _probe_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    noisy = base * 0.6 + rng.uniform(0, 102, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
