"""Inpainting: a square of the photo is painted flat grey; pick the patch that was there from lettered options.

The model sees ``[holed image, option A, option B, ...]``, one ``<image>`` each. Options are separate images
rather than tiles of one labelled sheet: every option keeps its exact pixels (no rendered text to misread, no
border between tiles to confuse with an edge of the patch) and its letter comes from the prompt text.

Distractors are hard rather than random: the true region rotated or mirrored, a region shifted partly into
the hole or to just outside it, or a same-sized region from elsewhere in the photo. They are built as a grid
of *regions x orientations* (the hole's region plus ``num_regions - 1`` others, each shown in the upright
orientation plus ``num_orientations - 1`` rotations or mirrors), so every option relates to the others in the
same way: a set with the truth at its hub (the only patch with a rotated copy *and* a shifted neighbour among
the options) could be solved without looking at the picture at all. Every option must differ visibly from
every other (:func:`visible_difference`, which ignores pixel noise), so a flat region (sky, wall) that cannot
tell its variants apart is retried at another spot and finally skipped as ``"flat region"``. Where mid grey
would blend into the hole's surroundings, a darker or lighter grey is used.

``params["options"]`` records, per letter, the source box and orientation of the option, so every option can
be recreated from the source picture (:func:`option_pixels`); the true one has ``kind == "true"``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image

from verl_ext.images import to_rgb
from verl_ext.qwen_vision import FACTOR
from verl_ext.tasks.base import FORMAT_INSTRUCTION, Puzzle, PuzzleSkip, Task

# Neutral greys the hole may be filled with, in order of preference: mid grey unless the hole's surroundings
# are themselves close to it (concrete, overcast sky), where the hole would hardly show; then a darker or
# lighter grey. The prompt names the value used.
FILLS = (128, 40, 215)
# Smallest mean absolute difference (0-255) between the fill and the hole's surroundings for the fill to stand out.
_FILL_CONTRAST = 40.0
# Smallest hole side in pixels; the builder's 28 px patch floor applies after its common rescale.
MIN_HOLE = FACTOR
# Where the other regions may come from, and how options may be turned.
REGION_KINDS = ("shift_in", "shift_out", "elsewhere")
ORIENTATION_KINDS = ("rotate", "flip")
_LETTERS = string.ascii_uppercase[:8]
# The eight compass directions a shifted region may move in.
_DIRECTIONS = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dx, dy) != (0, 0)]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the source image


def _coarse(region: np.ndarray, cells: int = 16) -> np.ndarray:
    """``region`` area-averaged to ``cells`` x ``cells`` (float32): what a viewer sees, without pixel noise."""
    return cv2.resize(region, (cells, cells), interpolation=cv2.INTER_AREA).astype(np.float32)


def visible_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference (0-255) of two equal-sized regions after area-averaging to 16 x 16.

    The averaging keeps shapes, edges and shading and drops pixel noise, so noisy but featureless regions
    (sky, walls) do not pass as "different" when only their noise differs.
    """
    return float(np.abs(_coarse(a) - _coarse(b)).mean())


def _oriented(region: np.ndarray, rot90: int, flip: str | None) -> np.ndarray:
    """``region`` rotated by ``rot90`` quarter turns counter-clockwise, then mirrored (``flip``)."""
    out = np.rot90(region, rot90) if rot90 else region
    if flip == "horizontal":
        out = out[:, ::-1]
    elif flip == "vertical":
        out = out[::-1]
    return np.ascontiguousarray(out)


def option_pixels(source: Image.Image | np.ndarray, option: Mapping[str, Any]) -> np.ndarray:
    """Recreate an option from the source picture and its entry in ``params["options"]`` (the inverse map)."""
    x0, y0, x1, y1 = option["box"]
    # Cropping a Pillow image first converts only the small region to an array, not the whole picture.
    region = np.asarray(source.crop((x0, y0, x1, y1))) if isinstance(source, Image.Image) else source[y0:y1, x0:x1]
    return _oriented(region, int(option.get("rot90", 0)), option.get("flip"))


class InpaintingTask(Task):
    """Choose, among ``num_regions * num_orientations`` lettered patches, the one that fills the grey square."""

    name = "inpainting"
    answer_kind = "label"
    presets = {
        # Big hole; three upright patches that differ in content (just outside the hole or elsewhere).
        "easy": {
            "hole_fraction": 0.3,
            "num_regions": 3,
            "num_orientations": 1,
            "region_kinds": ("shift_out", "elsewhere"),
        },
        # Four patches: the hole's region and one other, each upright and turned or mirrored.
        "medium": {
            "hole_fraction": 0.25,
            "num_regions": 2,
            "num_orientations": 2,
            "region_kinds": REGION_KINDS,
            "shift": (0.25, 0.5),
        },
        # Six patches from a small hole: its region and a slightly shifted one, each in three orientations.
        "hard": {
            "hole_fraction": 0.2,
            "num_regions": 2,
            "num_orientations": 3,
            "region_kinds": ("shift_in",),
            "shift": (0.15, 0.3),
        },
    }

    def make(
        self,
        image: Image.Image,
        rng: np.random.Generator,
        partner: Image.Image | None = None,
        *,
        hole_fraction: float = 0.25,
        num_regions: int = 2,
        num_orientations: int = 2,
        region_kinds: Sequence[str] = REGION_KINDS,
        orientation_kinds: Sequence[str] = ORIENTATION_KINDS,
        shift: Sequence[float] = (0.25, 0.5),
        min_diff: float = 12.0,
        attempts: int = 12,
    ) -> Puzzle:
        """Build a puzzle with ``num_regions * num_orientations`` options (at most 8).

        ``shift`` bounds the in-hole shift as a fraction of the hole side; ``min_diff`` is the smallest
        :func:`visible_difference` (0-255) allowed between any two options.
        """
        num_options = num_regions * num_orientations
        if num_regions < 1 or num_orientations < 1 or not 2 <= num_options <= len(_LETTERS):
            raise ValueError(
                f"num_regions * num_orientations must be in 2..{len(_LETTERS)}, got {num_regions} x {num_orientations}"
            )
        if not 0 < hole_fraction <= 0.5:
            raise ValueError(f"hole_fraction must be in (0, 0.5], got {hole_fraction}")
        if (num_regions > 1 and not region_kinds) or set(region_kinds) - set(REGION_KINDS):
            raise ValueError(f"region_kinds must be a non-empty subset of {REGION_KINDS}, got {tuple(region_kinds)}")
        if (num_orientations > 1 and not orientation_kinds) or set(orientation_kinds) - set(ORIENTATION_KINDS):
            raise ValueError(
                f"orientation_kinds must be a non-empty subset of {ORIENTATION_KINDS}, got {tuple(orientation_kinds)}"
            )
        turns = [t for t in _TURNS if t[0] in orientation_kinds]
        if num_orientations - 1 > len(turns):
            raise ValueError(f"only {len(turns)} orientations besides upright with {tuple(orientation_kinds)}")
        lo, hi = float(shift[0]), float(shift[1])
        if not 0 < lo <= hi < 1:
            raise ValueError(f"shift must satisfy 0 < low <= high < 1 (fraction of the hole side), got {shift}")

        source = to_rgb(image)
        width, height = source.size
        # Small images get the smallest useful hole rather than a skip, as long as shifted copies still fit.
        side = max(MIN_HOLE, int(round(hole_fraction * min(height, width))))
        if 2 * side > min(height, width):
            raise PuzzleSkip("image too small")

        for _ in range(attempts):
            x0 = int(rng.integers(0, width - side + 1))
            y0 = int(rng.integers(0, height - side + 1))
            hole: Box = (x0, y0, x0 + side, y0 + side)
            options = _pick_options(
                source, hole, rng, num_regions, num_orientations, tuple(region_kinds), turns, (lo, hi), min_diff
            )
            if options is not None:
                break
        else:
            raise PuzzleSkip("flat region")

        order = [int(i) for i in rng.permutation(num_options)]
        options = [options[i] for i in order]
        for letter, option in zip(_LETTERS, options):
            option["label"] = letter
        answer = _LETTERS[order.index(0)]  # _pick_options puts the truth first

        fill = _fill_for(source, hole)
        holed = source.copy()
        holed.paste((fill, fill, fill), hole)
        images = [holed] + [Image.fromarray(option_pixels(source, o)) for o in options]
        params = {
            "image_size": [width, height],
            "hole": list(hole),
            "fill": [fill] * 3,
            "num_options": num_options,
            "options": options,
        }
        prompt = _prompt(num_options, fill, num_regions, num_orientations)
        return Puzzle(images=images, prompt=prompt, answer=answer, params=params)

    def labels(self, params: Mapping[str, Any]) -> Mapping[str, Sequence[str]]:
        letters = _LETTERS[: int(params["num_options"])]
        return {
            letter: [f"({letter})", f"option {letter}", f"patch {letter}", f"candidate {letter}", f"image {letter}"]
            for letter in letters
        }


# Orientations an option may be shown in besides upright: (kind, quarter turns counter-clockwise, mirror).
_TURNS = [
    ("rotate", 1, None),
    ("rotate", 2, None),
    ("rotate", 3, None),
    ("flip", 0, "horizontal"),
    ("flip", 0, "vertical"),
]


def _fill_for(source: Image.Image, hole: Box) -> int:
    """The grey level of :data:`FILLS` that stands out from a band of pixels around the hole."""
    x0, y0, x1, y1 = hole
    band = max(2, (x1 - x0) // 8)
    window = (max(0, x0 - band), max(0, y0 - band), min(source.width, x1 + band), min(source.height, y1 + band))
    around = np.asarray(source.crop(window), dtype=np.float32)
    inner = around[y0 - window[1] : y1 - window[1], x0 - window[0] : x1 - window[0]]
    # Mean absolute difference between the level and the band's pixels (the window's minus the hole's), so a
    # band half black and half white does not pass for mid grey.
    count = (around.shape[0] * around.shape[1] - inner.shape[0] * inner.shape[1]) * 3
    contrast = [float((np.abs(around - level).sum() - np.abs(inner - level).sum()) / max(count, 1)) for level in FILLS]
    for level, value in zip(FILLS, contrast):
        if value >= _FILL_CONTRAST:
            return level
    return FILLS[int(np.argmax(contrast))]


# What the prompt says about the wrong options, by (several regions, several orientations).
_OTHERS = {
    (True, False): "each of the others was cut from a different spot of the picture.",
    (False, True): "each of the others is that content rotated or mirrored.",
    (True, True): "each of the others was cut from a different spot of the picture, or rotated or mirrored, or both.",
}


def _prompt(num_options: int, fill: int, num_regions: int, num_orientations: int) -> str:
    letters = _LETTERS[:num_options]
    option_lines = "\n".join(f"Option {letter}: <image>" for letter in letters)
    return (
        "Picture: <image>\n"
        f"In this picture one square region has been painted over with a flat, uniform grey (RGB {fill}, {fill}, "
        f"{fill}).\n"
        f"Below are {num_options} candidate patches of the same size, labelled {letters[0]} to {letters[-1]}.\n"
        f"{option_lines}\n"
        "Exactly one candidate is the content that was under the grey square, exactly as it was there; "
        f"{_OTHERS[(num_regions > 1, num_orientations > 1)]} "
        "Which option fills the grey square? Answer with its letter only.\n"
        f"{FORMAT_INSTRUCTION}"
    )


def _pick_options(
    source: Image.Image,
    hole: Box,
    rng: np.random.Generator,
    num_regions: int,
    num_orientations: int,
    region_kinds: tuple[str, ...],
    turns: list[tuple[str, int, str | None]],
    shift: tuple[float, float],
    min_diff: float,
) -> list[dict[str, Any]] | None:
    """Every (region, orientation) option, the truth (hole region, upright) first; None if two look alike.

    Regions besides the hole's are drawn with kinds in turn from a shuffled order; for more than two regions
    they must not overlap each other, so no region is linked to more others than the hole's region is.
    """
    regions: list[dict[str, Any]] = [{"kind": "true", "box": list(hole)}]
    kinds = [region_kinds[i] for i in rng.permutation(len(region_kinds))] if region_kinds else []
    for tries in range(8 * num_regions):
        if len(regions) == num_regions:
            break
        region = _region(kinds[tries % len(kinds)], source.width, source.height, hole, rng, shift)
        if region is None:
            continue
        if num_regions > 2 and any(_overlaps(region["box"], other["box"]) for other in regions[1:]):
            continue
        regions.append(region)
    else:
        return None
    picked = [turns[i] for i in rng.permutation(len(turns))[: num_orientations - 1]]
    orientations = [("upright", 0, None)] + picked

    options: list[dict[str, Any]] = []
    seen: list[np.ndarray] = []
    for region in regions:
        pixels = np.asarray(source.crop(tuple(region["box"])))
        for turn_kind, rot90, flip in orientations:
            parts = [p for p in (region["kind"], turn_kind) if p not in ("true", "upright")]
            option = {k: v for k, v in region.items() if k != "kind"}
            option.update(kind="+".join(parts) or "true", region=region["kind"], rot90=rot90, flip=flip)
            coarse = _coarse(_oriented(pixels, rot90, flip))
            if any(float(np.abs(coarse - other).mean()) < min_diff for other in seen):
                return None
            seen.append(coarse)
            options.append(option)
    return options


def _overlaps(a: Sequence[int], b: Sequence[int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _region(
    kind: str, width: int, height: int, hole: Box, rng: np.random.Generator, shift: tuple[float, float]
) -> dict[str, Any] | None:
    """A region of ``kind`` the size of the hole (its box in the source); None when none fits."""
    x0, y0, x1, y1 = hole
    side = x1 - x0
    if kind in ("shift_in", "shift_out"):
        # In: the box still overlaps the hole; out: it starts just past the hole's edge (up to a quarter side gap).
        low, high = shift if kind == "shift_in" else (1.0, 1.25)
        step = max(1, int(round(rng.uniform(low, high) * side)))
        if kind == "shift_in":
            step = min(step, side - 1)
        fitting = [
            (dx, dy)
            for dx, dy in _DIRECTIONS
            if 0 <= x0 + dx * step and x1 + dx * step <= width and 0 <= y0 + dy * step and y1 + dy * step <= height
        ]
        if not fitting:
            return None
        dx, dy = fitting[int(rng.integers(0, len(fitting)))]
        box = [x0 + dx * step, y0 + dy * step, x1 + dx * step, y1 + dy * step]
        return {"kind": kind, "box": box, "offset": [dx * step, dy * step]}
    if kind == "elsewhere":
        # Anywhere that does not overlap the hole at all.
        for _ in range(10):
            ex = int(rng.integers(0, width - side + 1))
            ey = int(rng.integers(0, height - side + 1))
            if not _overlaps((ex, ey, ex + side, ey + side), hole):
                return {"kind": kind, "box": [ex, ey, ex + side, ey + side]}
        return None
    raise ValueError(f"unknown region kind {kind!r}; choose from {REGION_KINDS}")
