"""Flip: one tile of a grid over the photo is mirrored in place; which tile, and which way?

The picture is trimmed evenly on both sides to a multiple of the grid (as the jigsaw does, but with tiles on
the JPEG block grid) and cut into ``rows`` x ``cols`` equal tiles, numbered 1..N in reading order. One tile is
mirrored horizontally (left and right swapped) or vertically (top and bottom swapped). With ``draw_grid`` the
tiles are shown apart, separated by white gaps of ``gap`` pixels (inserted, so no content is hidden under the
lines); without it the picture is shown whole and the prompt says the grid is not drawn. The answer is
``"<tile> <direction>"``, e.g. ``"3 horizontal"``.

A tile that looks the same mirrored (sky, a symmetric object) would make the answer unknowable, so the
(tile, direction) pair is drawn among those whose mirror image differs visibly; an image with none is skipped
as ``"symmetric tiles"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from verl_ext.images import to_rgb
from verl_ext.qwen_vision import FACTOR
from verl_ext.tasks.base import FORMAT_INSTRUCTION, Puzzle, PuzzleSkip, Task

MAX_GRID = 6
MIN_TILE = FACTOR  # one image token's side
DIRECTIONS = ("horizontal", "vertical")
_TRANSPOSE = {"horizontal": Image.Transpose.FLIP_LEFT_RIGHT, "vertical": Image.Transpose.FLIP_TOP_BOTTOM}
# Side, in thumbnail pixels, of each tile when judging whether its mirror image differs visibly.
CELLS = 16
# Other words for each direction, used in the accepted spellings of an answer.
_DIRECTION_WORDS = {
    "horizontal": ("h", "horizontally", "left-right", "left right", "lr", "horizontal flip", "mirrored horizontally"),
    "vertical": (
        "v",
        "vertically",
        "top-bottom",
        "top bottom",
        "up-down",
        "up down",
        "tb",
        "vertical flip",
        "mirrored vertically",
    ),
}

Box = tuple[int, int, int, int]  # left, top, right, bottom


def mirror(tile: np.ndarray, direction: str) -> np.ndarray:
    """``tile`` mirrored: "horizontal" swaps left and right, "vertical" swaps top and bottom (its own inverse)."""
    if direction == "horizontal":
        return np.ascontiguousarray(tile[:, ::-1])
    if direction == "vertical":
        return np.ascontiguousarray(tile[::-1])
    raise ValueError(f"unknown mirror direction {direction!r}; choose from {DIRECTIONS}")


def tile_box(params: Mapping[str, Any], tile: int) -> Box:
    """Where tile ``tile`` (1-based, reading order) lies in the puzzle image."""
    cols = int(params["cols"])
    tile_w, tile_h = params["tile_size"]
    gap = int(params["gap"]) if params["draw_grid"] else 0
    row, col = divmod(tile - 1, cols)
    left, top = col * (tile_w + gap), row * (tile_h + gap)
    return (left, top, left + tile_w, top + tile_h)


class FlipTask(Task):
    """Name the mirrored tile and the direction it was mirrored in."""

    name = "flip"
    answer_kind = "label"
    presets = {
        "easy": {"rows": 2, "cols": 2, "draw_grid": True},
        "medium": {"rows": 3, "cols": 3, "draw_grid": True},
        # More, smaller tiles and no lines: the model must find the tile edges from the seams themselves.
        "hard": {"rows": 4, "cols": 4, "draw_grid": False},
    }
    # More tiles first, then the grid lines go.
    ladder = (presets["easy"], presets["medium"], {"rows": 4, "cols": 4, "draw_grid": True}, presets["hard"])

    def make(
        self,
        image: Image.Image,
        rng: np.random.Generator,
        partner: Image.Image | None = None,
        *,
        rows: int = 3,
        cols: int = 3,
        draw_grid: bool = True,
        min_diff: float = 12.0,
        min_tile: int = MIN_TILE,
    ) -> Puzzle:
        """Build a puzzle; ``min_diff`` is the smallest mean absolute difference (0-255) between a tile and its
        mirror image, both area-averaged to ``CELLS`` x ``CELLS``, for the tile to be asked about."""
        rows, cols = int(rows), int(cols)
        if not (1 <= rows <= MAX_GRID and 1 <= cols <= MAX_GRID) or rows * cols < 2:
            raise ValueError(
                f"flip grid must be 1..{MAX_GRID} x 1..{MAX_GRID} with at least 2 tiles, got {rows}x{cols}"
            )
        image = to_rgb(image)
        tile_w, tile_h = image.width // cols, image.height // rows
        if min(tile_w, tile_h) < min_tile:
            raise PuzzleSkip(f"tile under {min_tile} px")
        # Tiles and grid origin on multiples of JPEG's 16 px (4:2:0) block grid, so a mirrored tile's compression
        # blocks still line up with its neighbours' in pictures that were never resized: otherwise the seam in
        # the block pattern would mark the tile for a model that learns to look at such things.
        align = 16 if min(tile_w, tile_h) >= 64 else 8 if min(tile_w, tile_h) >= 32 else 1
        tile_w, tile_h = tile_w - tile_w % align, tile_h - tile_h % align
        # Trim the remainder evenly from both sides so the grid sits in the centre of the picture.
        left = (image.width - tile_w * cols) // 2 // align * align
        top = (image.height - tile_h * rows) // 2 // align * align
        trim_box = (left, top, left + tile_w * cols, top + tile_h * rows)
        # Whether a mirror shows is judged on a thumbnail with CELLS x CELLS area-averaged pixels per tile (what a
        # viewer sees, without pixel noise). Box averaging commutes with mirroring a tile, so mirroring a tile's
        # cell block gives the thumbnail of the mirrored tile (up to the rounding of Pillow's fast pre-reduction).
        thumb = image.resize((cols * CELLS, rows * CELLS), Image.Resampling.BOX, box=trim_box, reducing_gap=2.0)
        thumb = np.asarray(thumb, dtype=np.float32)
        # Visit (tile, direction) pairs in random order and keep the first whose mirror is visible: every pair
        # is equally likely on images where all mirrors show.
        for pair in rng.permutation(2 * rows * cols):
            index, direction = divmod(int(pair), 2)
            direction_name = DIRECTIONS[direction]
            r, c = divmod(index, cols)
            cell = thumb[r * CELLS : (r + 1) * CELLS, c * CELLS : (c + 1) * CELLS]
            if float(np.abs(cell - mirror(cell, direction_name)).mean()) >= min_diff:
                break
        else:
            raise PuzzleSkip("symmetric tiles")

        # Gaps scale with the tile so they survive the builder's downscaling; white reads as "not picture".
        gap = max(4, min(tile_w, tile_h) // 25) if draw_grid else 0
        if draw_grid:
            shown = Image.new("RGB", (cols * tile_w + (cols - 1) * gap, rows * tile_h + (rows - 1) * gap), "white")
            for k in range(rows * cols):
                r, c = divmod(k, cols)
                x, y = left + c * tile_w, top + r * tile_h
                shown.paste(image.crop((x, y, x + tile_w, y + tile_h)), (c * (tile_w + gap), r * (tile_h + gap)))
        else:
            shown = image.crop(trim_box)
        params = {
            "rows": rows,
            "cols": cols,
            "num_tiles": rows * cols,
            "tile": index + 1,
            "direction": direction_name,
            "trim_box": list(trim_box),
            "tile_size": [tile_w, tile_h],
            "draw_grid": bool(draw_grid),
            "gap": gap,
        }
        box = tile_box(params, index + 1)
        shown.paste(shown.crop(box).transpose(_TRANSPOSE[direction_name]), box[:2])
        answer = f"{index + 1} {direction_name}"
        return Puzzle(images=[shown], prompt=_prompt(rows, cols, draw_grid), answer=answer, params=params)

    def labels(self, params: Mapping[str, Any]) -> Mapping[str, Sequence[str]]:
        out: dict[str, list[str]] = {}
        for tile in range(1, int(params["num_tiles"]) + 1):
            for direction in DIRECTIONS:
                words = (direction, *_DIRECTION_WORDS[direction])
                aliases = [f"{tile}{direction[0]}", f"{direction} {tile}", f"{direction[0]}{tile}"]
                for word in words:
                    # Punctuation is normalised away by the reward, so "tile 3, horizontal" needs no entry.
                    aliases += [f"{tile} {word}", f"tile {tile} {word}"]
                aliases.remove(f"{tile} {direction}")
                out[f"{tile} {direction}"] = aliases
        return out


def _prompt(rows: int, cols: int, draw_grid: bool) -> str:
    n = rows * cols
    if draw_grid:
        grid = (
            f"The photograph is shown cut into a grid of {rows} rows and {cols} columns ({n} equal tiles); "
            "thin white lines separate the tiles."
        )
    else:
        grid = (
            f"Think of the photograph as cut into a grid of {rows} rows and {cols} columns ({n} equal tiles). "
            "The grid is not drawn: the tile borders are not marked in the image."
        )
    return (
        "Image: <image>\n"
        f"{grid}\n"
        f"The tiles are numbered 1 to {n} in reading order: the top row from left to right, then the next row "
        "down, and so on.\n"
        "Exactly one tile has been mirrored in place, either horizontally (its left and right sides swapped) or "
        "vertically (its top and bottom swapped). Every other tile is unchanged.\n"
        "Which tile was mirrored, and which way? Answer with the tile number followed by the direction, "
        'in the form "<number> horizontal" or "<number> vertical".\n'
        f"{FORMAT_INSTRUCTION}"
    )
