"""Position: from which cell of a grid over the picture was a crop taken?

The picture is divided into ``rows`` x ``cols`` near-equal cells (2x2 quadrants by default). A cell is drawn
uniformly, then a crop whose sides are a random fraction of the cell's sides (20-80% by default, never under
28 px) is taken from a random place fully inside that cell. The model sees [full picture, crop], both at the
same scale. Optionally the crop's brightness, contrast and colour saturation are changed; the prompt then states
exactly which changes were made and by how much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from verl_ext.images import PHOTOMETRIC_OPS, grid_edges, is_flat, to_rgb
from verl_ext.qwen_vision import FACTOR
from verl_ext.tasks.base import FORMAT_INSTRUCTION, Puzzle, PuzzleSkip, Task

MIN_CROP = FACTOR  # one image token's side
# Tries at a crop with some texture inside the drawn cell before giving up on the image (the cell is kept, so
# retrying does not bias the answer towards textured parts of pictures).
_CROP_TRIES = 6

# Photometric changes the augmentation may make: name -> (smallest change, largest change, word below 1, word above 1).
# The factor is 1 - change or 1 + change (each half the time), so an applied change is always visible.
AUGMENTATIONS: dict[str, tuple[float, float, str, str]] = {
    "brightness": (0.1, 0.3, "darker", "brighter"),
    "contrast": (0.1, 0.3, "flatter", "stronger"),
    "saturation": (0.2, 0.5, "paler colours", "stronger colours"),
}

_ROW_NAMES = {2: ("top", "bottom"), 3: ("top", "middle", "bottom")}
_COL_NAMES = {2: ("left", "right"), 3: ("left", "center", "right")}


def cell_names(rows: int, cols: int) -> list[str]:
    """Canonical answer for each cell in reading order: "top-left" style for 2x2 and 3x3, else "row R, column C"."""
    if rows == cols and rows in _ROW_NAMES:
        names = [f"{r}-{c}" for r in _ROW_NAMES[rows] for c in _COL_NAMES[cols]]
        return ["center" if name == "middle-center" else name for name in names]
    return [f"row {r}, column {c}" for r in range(1, rows + 1) for c in range(1, cols + 1)]


def _aliases(name: str, row: int, col: int) -> list[str]:
    """Other words people use for a cell. Case, hyphens and punctuation need none: the reward's normaliser
    makes "Top-Left", "top left" and "TOP_LEFT." one spelling."""
    if name.startswith("row "):
        return [f"r{row}c{col}", f"({row}, {col})"]
    if name == "center":
        return ["centre", "middle", "middle center", "middle centre", "center center", "central"]
    vertical, horizontal = name.split("-")
    verticals = {vertical, {"top": "upper", "bottom": "lower", "middle": "center"}.get(vertical, vertical)}
    horizontals = {horizontal}
    if horizontal == "center":
        horizontals |= {"centre", "middle"}
    if vertical == "middle":
        verticals.add("centre")
    spellings = {f"{v} {h}" for v in verticals for h in horizontals} | {f"{horizontal} {vertical}"}
    return sorted(spellings - {name.replace("-", " ")})


class PositionTask(Task):
    name = "position"
    presets = {
        "easy": {"rows": 2, "cols": 2, "crop_fraction": (0.2, 0.8), "augment": False},
        "medium": {"rows": 3, "cols": 3, "crop_fraction": (0.2, 0.8), "augment": False},
        "hard": {"rows": 3, "cols": 3, "crop_fraction": (0.2, 0.5), "augment": True},
    }
    # More cells, then smaller crops, then augmented crops: one change per level.
    ladder = (
        presets["easy"],
        {"rows": 2, "cols": 3, "crop_fraction": (0.2, 0.8), "augment": False},
        presets["medium"],
        {"rows": 3, "cols": 3, "crop_fraction": (0.2, 0.5), "augment": False},
        presets["hard"],
    )
    # Default: quadrants and no augmentation, SSL4RL's effective setting (its augmentation was off by default).
    default_difficulty = "easy"

    def make(
        self,
        image: Image.Image,
        rng: np.random.Generator,
        partner: Image.Image | None = None,
        *,
        rows: int = 2,
        cols: int = 2,
        crop_fraction: Sequence[float] = (0.2, 0.8),
        augment: bool = False,
        min_crop: int = MIN_CROP,
    ) -> Puzzle:
        rows, cols = int(rows), int(cols)
        if rows < 1 or cols < 1 or rows * cols < 2:
            raise ValueError(f"position grid needs at least two cells, got {rows}x{cols}")
        low, high = (float(f) for f in crop_fraction)
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_fraction must satisfy 0 < low <= high <= 1, got {crop_fraction}")
        image = to_rgb(image)
        xs, ys = grid_edges(image.width, cols), grid_edges(image.height, rows)
        # Cells differ by at most a pixel; the smallest decides whether a crop of min_crop px fits the range.
        cell_side = min(min(b - a for a, b in zip(xs, xs[1:])), min(b - a for a, b in zip(ys, ys[1:])))
        low = max(low, min_crop / cell_side)
        if low > high:
            raise PuzzleSkip(f"crop under {min_crop} px")

        cell = int(rng.integers(rows * cols))
        row, col = divmod(cell, cols)
        cell_box = (xs[col], ys[row], xs[col + 1], ys[row + 1])
        cell_w, cell_h = cell_box[2] - cell_box[0], cell_box[3] - cell_box[1]
        for _ in range(_CROP_TRIES):
            fraction = float(rng.uniform(low, high))
            crop_w = min(cell_w, max(min_crop, round(fraction * cell_w)))
            crop_h = min(cell_h, max(min_crop, round(fraction * cell_h)))
            left = cell_box[0] + int(rng.integers(cell_w - crop_w + 1))
            top = cell_box[1] + int(rng.integers(cell_h - crop_h + 1))
            crop_box = (left, top, left + crop_w, top + crop_h)
            crop = np.asarray(image.crop(crop_box))
            if not is_flat(np.asarray(Image.fromarray(crop).convert("L"), dtype=np.float32)):
                break
        else:
            raise PuzzleSkip("flat crop")

        changes = self._augmentations(rng) if augment else []
        for op, factor in changes:
            crop = PHOTOMETRIC_OPS[op](crop, factor)

        names = cell_names(rows, cols)
        params = {
            "rows": rows,
            "cols": cols,
            "cell": cell,
            "cell_box": list(cell_box),
            "crop_box": list(crop_box),
            "augment": augment,
            "augmentations": [{"op": op, "factor": factor} for op, factor in changes],
        }
        return Puzzle(
            images=[image, Image.fromarray(crop)],
            prompt=self._prompt(rows, cols, names, changes, augment),
            answer=names[cell],
            params=params,
        )

    @staticmethod
    def _augmentations(rng: np.random.Generator) -> list[tuple[str, float]]:
        """Each change independently with probability 1/2, factors rounded to what the prompt states."""
        changes = []
        for op, (lo, hi, _, _) in AUGMENTATIONS.items():
            applied, change, sign = rng.random() < 0.5, float(rng.uniform(lo, hi)), rng.choice((-1, 1))
            if applied:
                changes.append((op, round(1 + sign * change, 2)))
        return changes

    @staticmethod
    def _prompt(rows: int, cols: int, names: list[str], changes: list[tuple[str, float]], augment: bool) -> str:
        if rows == cols == 2:
            grid = "four equal quadrants"
        else:
            grid = f"a grid of {rows} rows and {cols} columns of equal cells"
        if changes:
            said = [
                f"its {'colour saturation' if op == 'saturation' else op} was multiplied by {factor:.2f} "
                f"({AUGMENTATIONS[op][2] if factor < 1 else AUGMENTATIONS[op][3]})"
                for op, factor in changes
            ]
            altered = " After cutting, " + "; ".join(said) + ". Nothing else was changed."
        elif augment:
            altered = " This time its colours and brightness were left unchanged."
        else:
            altered = ""
        choices = ", ".join(names)
        return (
            "Image 1: <image>\nImage 2: <image>\n"
            f"Image 2 is a rectangular piece cut out of image 1, shown at the same scale, not rotated or flipped."
            f"{altered}\n"
            f"Divide image 1 into {grid}. The piece lies entirely inside one of them. Which one?\n"
            f"Answer with exactly one of: {choices}.\n"
            f"{FORMAT_INSTRUCTION}"
        )

    def labels(self, params: Mapping[str, Any]) -> Mapping[str, Sequence[str]]:
        rows, cols = int(params["rows"]), int(params["cols"])
        names = cell_names(rows, cols)
        return {name: _aliases(name, i // cols + 1, i % cols + 1) for i, name in enumerate(names)}
