"""Jigsaw: put the shuffled tiles of a picture back in place.

The picture is trimmed evenly on both sides to a multiple of the grid, cut into ``rows`` x ``cols`` equal tiles,
and the tiles are shown as separate images in shuffled order, numbered 1..N in the order shown. The answer lists,
for each position of the original grid in reading order (left to right, top to bottom), the number of the shown
tile that belongs there, e.g. ``"3,1,4,2"``.

Identity shuffles: for N >= 3 tiles the shown order is never the original one (a puzzle that is already solved
teaches nothing and "1,2,...,N" would be a free guess); with N = 2 (1x2 and 2x1 strips) the identity stays allowed,
because excluding it would make "2,1" the answer of every puzzle.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from verl_ext.images import FLAT_STD, small_gray, to_rgb
from verl_ext.qwen_vision import FACTOR
from verl_ext.tasks.base import FORMAT_INSTRUCTION, Puzzle, PuzzleSkip, Task

MAX_GRID = 6
MIN_TILE = FACTOR  # one image token's side: smaller tiles would be upsampled into nothing but blur


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def answer_from_order(order: list[int]) -> list[int]:
    """The answer for tiles shown in ``order`` (``order[k]`` = original position of the tile shown as number k+1)."""
    answer = [0] * len(order)
    for shown, position in enumerate(order):
        answer[position] = shown + 1
    return answer


class JigsawTask(Task):
    name = "jigsaw"
    answer_kind = "permutation"
    presets = {
        "easy": {"rows": 2, "cols": 2},
        "medium": {"rows": 3, "cols": 3},
        "hard": {"rows": 4, "cols": 4},
    }
    # One more row or column at a time: 4, 6, 9, 12, 16 tiles.
    ladder = (
        presets["easy"],
        {"rows": 2, "cols": 3},
        presets["medium"],
        {"rows": 3, "cols": 4},
        presets["hard"],
    )
    # 2x2 by default: the grid SSL4RL trained on MMBench pictures, whose small images give 3x3 tiles too few pixels.
    default_difficulty = "easy"

    def make(
        self,
        image: Image.Image,
        rng: np.random.Generator,
        partner: Image.Image | None = None,
        *,
        rows: int = 2,
        cols: int = 2,
        min_tile: int = MIN_TILE,
    ) -> Puzzle:
        rows, cols = int(rows), int(cols)
        if not (1 <= rows <= MAX_GRID and 1 <= cols <= MAX_GRID) or rows * cols < 2:
            raise ValueError(
                f"jigsaw grid must be 1..{MAX_GRID} x 1..{MAX_GRID} with at least 2 tiles, got {rows}x{cols}"
            )
        image = to_rgb(image)
        tile_w, tile_h = image.width // cols, image.height // rows
        if min(tile_w, tile_h) < min_tile:
            raise PuzzleSkip(f"tile under {min_tile} px")
        # Trim the remainder evenly from both sides so the grid sits in the centre of the picture.
        left, top = (image.width - tile_w * cols) // 2, (image.height - tile_h * rows) // 2
        box = (left, top, left + tile_w * cols, top + tile_h * rows)

        n = rows * cols
        if self._ambiguous(image, box, rows, cols):
            raise PuzzleSkip("blank tiles")
        order = [int(i) for i in rng.permutation(n)]
        while n >= 3 and order == list(range(n)):
            order = [int(i) for i in rng.permutation(n)]

        # Pillow crops copy just the tile (a numpy view would first copy the whole picture out of Pillow).
        boxes = [
            (left + c * tile_w, top + r * tile_h, left + (c + 1) * tile_w, top + (r + 1) * tile_h)
            for r in range(rows)
            for c in range(cols)
        ]  # boxes[r * cols + c] is the tile at row r, column c (reading order)
        shown = [image.crop(boxes[position]) for position in order]
        answer = ",".join(str(k) for k in answer_from_order(order))
        params = {
            "rows": rows,
            "cols": cols,
            "num_tiles": n,
            "order": order,
            "trim_box": list(box),
            "tile_size": [tile_w, tile_h],
        }
        return Puzzle(images=shown, prompt=self._prompt(rows, cols), answer=answer, params=params)

    @staticmethod
    def _ambiguous(image: Image.Image, box: tuple[int, int, int, int], rows: int, cols: int) -> bool:
        """True when two or more tiles are blank (no texture), so they could be swapped without anyone seeing it.

        Judged on a small thumbnail of the trimmed grid: each tile keeps at least a few pixels there.
        """
        gray = small_gray(image, side=max(96, 8 * max(rows, cols)), box=box)
        height, width = gray.shape
        blank = 0
        for r in range(rows):
            for c in range(cols):
                cell = gray[r * height // rows : (r + 1) * height // rows, c * width // cols : (c + 1) * width // cols]
                blank += cell.size == 0 or float(cell.std()) < FLAT_STD
        return blank >= 2

    @staticmethod
    def _prompt(rows: int, cols: int) -> str:
        n = rows * cols
        placeholders = "\n".join(f"Tile {k}: <image>" for k in range(1, n + 1))
        if rows == 1:
            grid = f"a row of {n} equal vertical strips"
            places = "from left to right"
        elif cols == 1:
            grid = f"a column of {n} equal horizontal strips"
            places = "from top to bottom"
        else:
            grid = f"a grid of {rows} rows and {cols} columns ({n} equal tiles)"
            places = "in reading order (the top row from left to right, then the next row down, and so on)"
        # A fixed example (a cyclic shift), the same for every puzzle of this grid: it says nothing about the answer.
        example = [k % n + 1 for k in range(1, n + 1)]
        spots = _example_spots(rows, cols)
        explained = "; ".join(f"tile {t} belongs in the {spot}" for t, spot in zip(example, spots))
        return (
            f"{placeholders}\n"
            f"A photograph was cut into {grid}, and the pieces are shown above in shuffled order as tiles 1 to {n}.\n"
            f"Put the photograph back together. Go through the positions of the original photograph {places}, and "
            f"for each position give the number of the tile that belongs there. Write the {n} numbers separated by "
            f"commas; each number from 1 to {n} appears exactly once.\n"
            f"For example, the answer {','.join(map(str, example))} would mean: {explained}"
            f"{'' if len(spots) == n else ', and so on'}.\n"
            f"{FORMAT_INSTRUCTION}"
        )


def _example_spots(rows: int, cols: int) -> list[str]:
    """Names of the first positions in reading order, for the worked example (all of them for small grids)."""
    if rows == 1 or cols == 1:
        n = rows * cols
        unit = "from the left" if rows == 1 else "from the top"
        return [f"{_ordinal(i)} place {unit}" for i in range(1, min(n, 4) + 1)]
    if (rows, cols) == (2, 2):
        return ["top-left position", "top-right position", "bottom-left position", "bottom-right position"]
    spots = [f"position at row {r}, column {c}" for r in range(1, rows + 1) for c in range(1, cols + 1)]
    return spots[: cols + 1]
