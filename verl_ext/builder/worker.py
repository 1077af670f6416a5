"""The work done for each chunk of source items, in a worker process (or inline with one worker).

For every item: decode, content id, split, then puzzles. Tasks that need a partner picture are made in pairs of
units from the same split showing different pictures; the task's ``pair_roles`` says which two puzzles a pair
gives (for contrastive: one positive, one negative). Units that find no partner in their chunk go back to the
main process, which pairs them across chunks.
"""

from __future__ import annotations

import math
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from verl_ext.builder.budget import PromptCounter, fit_to_budget, make_counter
from verl_ext.builder.plan import CONTROL_GREY, BuildPlan, TaskPlan, probe_image
from verl_ext.builder.rows import make_row
from verl_ext.images import content_id
from verl_ext.sources import item_split
from verl_ext.sources.base import RawItem
from verl_ext.sources.decode import ImageSkip, decode_item
from verl_ext.tasks import Task, get_task
from verl_ext.tasks.base import Puzzle, PuzzleSkip

# Mean absolute difference (0..255) of 16x16 grey thumbnails under which two pictures count as the same
# picture (a resized or re-encoded copy) and may not be a contrastive negative.
NEAR_DUPLICATE = 4.0


@dataclass(frozen=True)
class SourceHint:
    """How far a task's source picture may be shrunk before the puzzle is made (a speed hint, see Worker)."""

    max_pixels: int
    # True when the task's output images grow with the source, so an exact resize to max_pixels pays off.
    exact: bool


@dataclass
class Unit:
    """One puzzle to make: puzzle ``k`` of a decoded picture, for one task."""

    item: RawItem
    image: Image.Image
    content_id: str
    split: str
    k: int
    task: TaskPlan
    thumb: np.ndarray | None = None

    @property
    def group(self) -> str:
        return self.item.group or self.content_id

    @property
    def key(self) -> tuple[str, int]:
        return (self.content_id, self.k)


@dataclass
class Outcome:
    """Rows made together (one, or a contrastive pair), or a skip; ``keys`` are their pictures' (content id, k)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    keys: list[tuple[str, int]] = field(default_factory=list)
    skip: str | None = None
    roles: list[str] = field(default_factory=list)  # pair role of each row (paired tasks only)


@dataclass
class ChunkResult:
    outcomes: list[Outcome]
    leftovers: list[Unit]  # partner-task units without a partner in this chunk
    notes: Counter
    errors: list[str]  # first tracebacks of unexpected task errors


class Worker:
    """Per-process state: the plan, task objects and prompt counter (loaded once per process)."""

    def __init__(
        self, plan: BuildPlan, source_hints: dict[str, SourceHint] | None = None, tasks: dict[str, Task] | None = None
    ) -> None:
        self.plan = plan
        self.counter: PromptCounter = make_counter(plan.tokenizer)
        # Task objects travel with the plan: worker processes start fresh (no fork of a threaded parent), so a
        # task registered at run time (a plugin, a test) must be sent, not looked up.
        self.tasks = tasks or {t.name: get_task(t.name) for t in plan.tasks}
        # Measured once in the main process and handed to the workers (see source_hint).
        self.source_hints = source_hints or {t.name: self.source_hint(t) for t in plan.tasks}

    def source_hint(self, plan: TaskPlan) -> SourceHint:
        """Largest source worth keeping for a task: the budget's pixels over how much of the source it shows.

        Measured once on a probe picture (pixels shown per source pixel, prompt length). Only a speed hint, the
        same in every process: bigger pictures are reduced once before the puzzle is made instead of every
        output image being shrunk afterwards; the budget fit after making stays the guarantee.
        """
        no_hint = SourceHint(self.plan.limits.max_pixels, exact=False)
        image = probe_image()
        try:
            puzzle = self._probe(plan, image)
            # Made again from a picture of half the sides: a task whose output keeps its size (contrastive views
            # are resized to a fixed side from a box of the source) gains nothing from an exact pre-resize.
            half = self._probe(plan, image.resize((image.width // 2, image.height // 2), Image.Resampling.BOX))
        except Exception:  # noqa: BLE001 - no hint then; the task's real errors surface on real pictures
            return no_hint
        shown = sum(im.width * im.height for im in puzzle.images)
        scales = shown != sum(im.width * im.height for im in half.images)
        area_factor = max(shown / (image.width * image.height), 1e-3)
        tokens = self.plan.max_prompt_tokens - self.counter.text_tokens(puzzle.prompt, len(puzzle.images))
        if tokens < 4 * len(puzzle.images):
            return no_hint  # hopeless anyway: let the budget fit name the reason
        factor = self.counter.grids[-1].factor
        # 0.9 leaves room for the rounding of every side to a multiple of 28.
        return SourceHint(max(int(tokens * factor * factor * 0.9 / area_factor), 32 * 32), exact=scales)

    def _probe(self, plan: TaskPlan, image: Image.Image) -> Puzzle:
        task = self.tasks[plan.name]
        # A paired task is sized by a puzzle that shows both pictures (the larger kind).
        roles = [r for r in task.pair_roles(0.0) if r.with_partner] if plan.needs_partner else []
        extra = dict(roles[0].knobs) if roles else {}
        return task.make(image, np.random.default_rng(0), partner=probe_image(seed=1), **plan.knobs, **extra)

    # ---- items -> units

    def process_chunk(self, chunk: list[RawItem]) -> ChunkResult:
        notes: Counter = Counter()
        errors: list[str] = []
        outcomes: list[Outcome] = []
        partner_units: list[Unit] = []
        seen: set[str] = set()
        for item in chunk:
            try:
                image = decode_item(item, self.plan.limits, notes)
            except ImageSkip as skip:
                outcomes.append(Outcome(skip=str(skip)))
                continue
            cid = content_id(image)
            if cid in seen:
                outcomes.append(Outcome(skip="duplicate image"))
                continue
            seen.add(cid)
            split = item_split(item, cid, self.plan.val_fraction)
            prepared: dict[str, Image.Image] = {}
            for k in range(self.plan.puzzles_per_image):
                task = self.plan.task_for(item.source_id, k)
                if task.name not in prepared:
                    prepared[task.name] = reduce_picture(image, self.source_hints[task.name])
                unit = Unit(item, prepared[task.name], cid, split, k, task)
                if task.needs_partner:
                    unit.thumb = thumbnail(image)
                    partner_units.append(unit)
                else:
                    outcomes.append(self.single(unit, errors))
        pairs, leftovers = self.pair_up([], partner_units, errors)
        outcomes.extend(pairs)
        return ChunkResult(outcomes, leftovers, notes, errors)

    # ---- puzzles

    def single(self, unit: Unit, errors: list[str]) -> Outcome:
        try:
            return Outcome(rows=[self.row(unit, None, {})], keys=[unit.key])
        except PuzzleSkip as skip:
            return Outcome(skip=str(skip))
        except Exception as error:  # noqa: BLE001 - a task bug on one picture must not end a long build
            return Outcome(skip=self._task_error(unit, error, errors))

    def row(self, unit: Unit, partner: Unit | None, extra_knobs: dict[str, Any]) -> dict[str, Any]:
        """Make, fit and encode one puzzle of ``unit`` (raises PuzzleSkip)."""
        task = unit.task
        rng = self.plan.rng(task.name, unit.item.source_id, unit.k)
        puzzle = self.tasks[task.name].make(
            unit.image, rng, partner=partner.image if partner else None, **task.knobs, **extra_knobs
        )
        if puzzle.prompt.count("<image>") != len(puzzle.images) or not puzzle.images:
            raise RuntimeError(
                f"task {task.name} returned {len(puzzle.images)} images for "
                f"{puzzle.prompt.count('<image>')} <image> placeholders"
            )
        fitted = fit_to_budget(puzzle.images, puzzle.prompt, self.plan.max_prompt_tokens, self.counter)
        info = {
            "source": self.plan.source,
            "split": unit.split,
            "source_id": unit.item.source_id,
            "content_id": unit.content_id,
            "difficulty": task.difficulty,
            "prompt_tokens": fitted.prompt_tokens,
            "partner_content_id": partner.content_id if partner else "",
            "source_split": unit.item.split or "",
            "puzzle_k": unit.k,
            "image_scale": round(fitted.scale, 6),
            "prompt_tokens_exact": self.counter.exact,
        }
        images = fitted.images
        if self.plan.control == "grey":
            images = [Image.new("RGB", image.size, CONTROL_GREY) for image in images]
        return make_row(task=task.name, puzzle=puzzle, images=images, image_format=self.plan.image_format, info=info)

    def pair_up(self, pending: list[Unit], units: list[Unit], errors: list[str]) -> tuple[list[Outcome], list[Unit]]:
        """Pair ``units`` (in order) with each other and with ``pending`` ones of the same task and split.

        A unit pairs with the earliest waiting unit that shows a different picture; if making the pair fails
        for one side, that side is skipped and the other keeps waiting. Returns the outcomes and the units
        still waiting.
        """
        outcomes: list[Outcome] = []
        waiting = list(pending)
        for unit in units:
            while True:
                partner = next((w for w in waiting if _can_pair(w, unit)), None)
                if partner is None:
                    waiting.append(unit)
                    break
                waiting.remove(partner)
                outcome, failed = self.pair(partner, unit, errors)
                if outcome is not None:
                    outcomes.append(outcome)
                    break
                outcomes.extend(Outcome(skip=reason) for _, reason in failed)
                failed_units = [u for u, _ in failed]
                if partner not in failed_units:
                    waiting.insert(0, partner)  # keeps its place: it was the earliest
                if unit in failed_units:
                    break
        return outcomes, waiting

    def pair(self, a: Unit, b: Unit, errors: list[str]) -> tuple[Outcome | None, list[tuple[Unit, str]]]:
        """The two puzzles the task's ``pair_roles`` makes of two units; or the unit that failed, with its reason."""
        task = a.task
        # The coin of tasks that assign roles at random is fixed by the pair's ids.
        coin = self.plan.rng(task.name, "pair", 0, a.item.source_id, a.k, b.item.source_id, b.k).random()
        units = (a, b)
        roles = self.tasks[task.name].pair_roles(coin)
        rows = []
        for role in roles:
            unit = units[role.picture]
            partner = units[1 - role.picture] if role.with_partner else None
            try:
                rows.append(self.row(unit, partner, dict(role.knobs)))
            except PuzzleSkip as skip:
                return None, [(unit, str(skip))]
            except Exception as error:  # noqa: BLE001 - see single()
                return None, [(unit, self._task_error(unit, error, errors))]
        keys = [units[role.picture].key for role in roles]
        return Outcome(rows=rows, keys=keys, roles=[role.name for role in roles]), []

    def _task_error(self, unit: Unit, error: Exception, errors: list[str]) -> str:
        if self.plan.strict:
            raise error
        if len(errors) < 3:
            errors.append(f"{unit.task.name} on {unit.item.source_id}:\n{traceback.format_exc()}")
        return f"task error ({type(error).__name__})"


def _can_pair(a: Unit, b: Unit) -> bool:
    if a.task.name != b.task.name or a.split != b.split:
        return False
    if a.content_id == b.content_id or a.group == b.group:
        return False
    assert a.thumb is not None and b.thumb is not None
    return float(np.abs(a.thumb - b.thumb).mean()) >= NEAR_DUPLICATE


def thumbnail(image: Image.Image) -> np.ndarray:
    """16x16 grey thumbnail for the near-duplicate test.

    Shrunk by whole-block averaging before the grey conversion (``reducing_gap``: Pillow first reduces by an
    integer factor), which costs a fraction of converting the full-resolution picture; averaging commutes with
    the linear luma weights, so this differs from "grey first" only by rounding, far below NEAREST_DUPLICATE.
    """
    small = image.resize((16, 16), Image.Resampling.BOX, reducing_gap=1.0)
    return np.asarray(small.convert("L"), dtype=np.float32)


def reduce_picture(image: Image.Image, hint: SourceHint) -> Image.Image:
    """Shrink a picture above ``hint.max_pixels`` towards that size (never enlarges).

    An integer box reduction (``Image.reduce``, several times faster than a filtered resize) is used whenever
    it keeps at least 1/1.15 of the target side, so large pictures are shrunk cheaply for a small loss of
    resolution. What is left (a ratio under 2.3) is area-averaged (box filter: a third cheaper than bilinear,
    and as good for shrinking by less than 2.3) only for tasks whose output grows with the source
    (``hint.exact``): there it makes the budget fit a no-op instead of a resize of every output image; for the
    others (fixed-size views) it would be a full-picture resize that saves nothing.
    """
    max_pixels = hint.max_pixels
    pixels = image.width * image.height
    if pixels <= max_pixels:
        return image
    ratio = math.sqrt(pixels / max_pixels)
    factor = math.floor(ratio * 1.15)
    if factor >= 2:
        image = image.reduce(factor)
        pixels = image.width * image.height
        if pixels <= max_pixels:
            return image
        ratio = math.sqrt(pixels / max_pixels)
    if not hint.exact:
        return image
    size = (max(1, math.floor(image.width / ratio)), max(1, math.floor(image.height / ratio)))
    return image.resize(size, Image.Resampling.BOX)


# ---- process-pool plumbing: one Worker per process, created by the pool initializer

_WORKER: Worker | None = None


def init_worker(plan: BuildPlan, source_hints: dict[str, SourceHint], tasks: dict[str, Task]) -> None:
    global _WORKER
    # OpenCV (used by some tasks) would start a thread per core in every worker process; one each is enough.
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    _WORKER = Worker(plan, source_hints, tasks)


def run_chunk(chunk: list[RawItem]) -> ChunkResult:
    assert _WORKER is not None, "init_worker was not called in this process"
    return _WORKER.process_chunk(chunk)
