"""Inpainting: a square of the photo is painted flat grey; pick the patch that was there from lettered options.

The model sees ``[holed image, option A, option B, ...]``, one ``<image>`` each. Options are separate images
rather than tiles of one labelled sheet: every option keeps its exact pixels (no rendered text to misread, no
border between tiles to confuse with an edge of the patch) and its letter comes from the prompt text.

Distractors are chosen to be hard rather than random: the true region rotated or mirrored, the region shifted
partly into the hole or to just outside it, or a same-sized region from elsewhere in the photo. Every option
must differ visibly from every other (:func:`visible_difference`, which ignores pixel noise), so a flat region
(sky, wall) that cannot tell its variants apart is retried at another spot and finally skipped as
``"flat region"``. Where mid grey would blend into the hole's surroundings, a darker or lighter grey is used.

``params["options"]`` records, per letter, the source box and orientation of the option, so every option can
be recreated from the source picture (:func:`option_pixels`); the true one has ``kind == "true"``.
"""

from __future__ import annotations

import string
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image

from verl_ext.images import to_rgb
from verl_ext.tasks.base import FORMAT_INSTRUCTION, Puzzle, PuzzleSkip, Task

# Neutral greys the hole may be filled with, in order of preference: mid grey unless the hole's surroundings
# are themselves close to it (concrete, overcast sky), where the hole would hardly show; then a darker or
# lighter grey. The prompt names the value used.
FILLS = (128, 40, 215)
# Smallest mean absolute difference (0-255) between the fill and the hole's surroundings for the fill to stand out.
_FILL_CONTRAST = 40.0
# Smallest hole side in pixels; the builder's 28 px patch floor applies after its common rescale.
MIN_HOLE = 28
# Distractor kinds a preset may draw from.
KINDS = ("rotate", "flip", "shift_in", "shift_out", "elsewhere")
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
    """Choose, among ``num_options`` lettered patches, the one that fills the grey square."""

    name = "inpainting"
    answer_kind = "label"
    presets = {
        # Big hole, few options, distractors that differ in content or orientation.
        "easy": {"num_options": 3, "hole_fraction": 0.3, "kinds": ("elsewhere", "rotate", "shift_out"),
                 "shift": (0.4, 0.6)},
        "medium": {"num_options": 4, "hole_fraction": 0.25, "kinds": KINDS, "shift": (0.25, 0.5)},
        # Small hole, more options, only near-miss distractors with small shifts.
        "hard": {"num_options": 6, "hole_fraction": 0.2, "kinds": ("rotate", "flip", "shift_in", "shift_out"),
                 "shift": (0.15, 0.3)},
    }

    def make(
        self,
        image: Image.Image,
        rng: np.random.Generator,
        partner: Image.Image | None = None,
        *,
        num_options: int = 4,
        hole_fraction: float = 0.25,
        kinds: Sequence[str] = KINDS,
        shift: Sequence[float] = (0.25, 0.5),
        min_diff: float = 12.0,
        attempts: int = 8,
    ) -> Puzzle:
        """Build a puzzle; ``shift`` bounds the in-hole shift as a fraction of the hole side, ``min_diff`` is the
        smallest :func:`visible_difference` (0-255) allowed between any two options."""
        if not 2 <= num_options <= len(_LETTERS):
            raise ValueError(f"num_options must be in 2..{len(_LETTERS)}, got {num_options}")
        if not 0 < hole_fraction <= 0.5:
            raise ValueError(f"hole_fraction must be in (0, 0.5], got {hole_fraction}")
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {tuple(kinds)}")
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
            distractors = _pick_distractors(source, hole, rng, num_options - 1, tuple(kinds), (lo, hi), min_diff)
            if distractors is not None:
                break
        else:
            raise PuzzleSkip("flat region")

        truth = {"kind": "true", "box": list(hole), "rot90": 0, "flip": None}
        answer_index = int(rng.integers(0, num_options))
        options = list(distractors)
        options.insert(answer_index, truth)
        for letter, option in zip(_LETTERS, options):
            option["label"] = letter

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
        prompt = _prompt(num_options, fill)
        return Puzzle(images=images, prompt=prompt, answer=_LETTERS[answer_index], params=params)

    def labels(self, params: Mapping[str, Any]) -> Mapping[str, Sequence[str]]:
        letters = _LETTERS[: int(params["num_options"])]
        return {
            letter: [f"({letter})", f"option {letter}", f"patch {letter}", f"candidate {letter}", f"image {letter}"]
            for letter in letters
        }


def _fill_for(source: Image.Image, hole: Box) -> int:
    """The grey level of :data:`FILLS` that stands out from a band of pixels around the hole."""
    x0, y0, x1, y1 = hole
    band = max(2, (x1 - x0) // 8)
    window = (max(0, x0 - band), max(0, y0 - band), min(source.width, x1 + band), min(source.height, y1 + band))
    around = np.asarray(source.crop(window), dtype=np.float32)
    inner = around[y0 - window[1] : y1 - window[1], x0 - window[0] : x1 - window[0]]
    # Mean colour of the band alone: the window's sum minus the hole's sum.
    count = around.shape[0] * around.shape[1] - inner.shape[0] * inner.shape[1]
    colour = (around.sum(axis=(0, 1)) - inner.sum(axis=(0, 1))) / max(count, 1)
    contrast = [float(np.abs(colour - level).mean()) for level in FILLS]
    for level, value in zip(FILLS, contrast):
        if value >= _FILL_CONTRAST:
            return level
    return FILLS[int(np.argmax(contrast))]


def _prompt(num_options: int, fill: int) -> str:
    letters = _LETTERS[:num_options]
    option_lines = "\n".join(f"Option {letter}: <image>" for letter in letters)
    return (
        "Picture: <image>\n"
        f"In this picture one square region has been painted over with a flat, uniform grey (RGB {fill}, {fill}, "
        f"{fill}).\n"
        f"Below are {num_options} candidate patches of the same size, labelled {letters[0]} to {letters[-1]}.\n"
        f"{option_lines}\n"
        "Exactly one candidate is the content that was under the grey square, in its original orientation and "
        "position; the others are rotated, mirrored, shifted, or taken from another part of the picture. "
        "Which option fills the grey square? Answer with its letter only.\n"
        f"{FORMAT_INSTRUCTION}"
    )


def _pick_distractors(
    source: Image.Image,
    hole: Box,
    rng: np.random.Generator,
    count: int,
    kinds: tuple[str, ...],
    shift: tuple[float, float],
    min_diff: float,
) -> list[dict[str, Any]] | None:
    """``count`` distractor specs that differ visibly from the truth and from each other, or None.

    Kinds are used round-robin from a shuffled order, so a puzzle mixes kinds instead of repeating one.
    """
    accepted = [_coarse(np.asarray(source.crop(hole)))]
    specs: list[dict[str, Any]] = []
    order = [kinds[i] for i in rng.permutation(len(kinds))]
    tries = 0
    while len(specs) < count and tries < 6 * count + 6:
        kind = order[tries % len(order)]
        tries += 1
        spec = _candidate(kind, source.width, source.height, hole, rng, shift)
        if spec is None:
            continue
        coarse = _coarse(option_pixels(source, spec))
        if all(float(np.abs(coarse - other).mean()) >= min_diff for other in accepted):
            accepted.append(coarse)
            specs.append(spec)
    return specs if len(specs) == count else None


def _candidate(
    kind: str, width: int, height: int, hole: Box, rng: np.random.Generator, shift: tuple[float, float]
) -> dict[str, Any] | None:
    """One distractor spec of ``kind`` (box in the source plus orientation); None when it does not fit."""
    x0, y0, x1, y1 = hole
    side = x1 - x0
    if kind == "rotate":
        return {"kind": kind, "box": list(hole), "rot90": int(rng.integers(1, 4)), "flip": None}
    if kind == "flip":
        return {"kind": kind, "box": list(hole), "rot90": 0, "flip": ("horizontal", "vertical")[rng.integers(0, 2)]}
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
        return {"kind": kind, "box": box, "rot90": 0, "flip": None, "offset": [dx * step, dy * step]}
    if kind == "elsewhere":
        # Anywhere that does not overlap the hole at all.
        for _ in range(10):
            ex = int(rng.integers(0, width - side + 1))
            ey = int(rng.integers(0, height - side + 1))
            if abs(ex - x0) >= side or abs(ey - y0) >= side:
                return {"kind": kind, "box": [ex, ey, ex + side, ey + side], "rot90": 0, "flip": None}
        return None
    raise ValueError(f"unknown distractor kind {kind!r}; choose from {KINDS}")
