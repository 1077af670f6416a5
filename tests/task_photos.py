"""Real photographs for the task tests: scikit-image's bundled colour photos (public domain / CC0) and odd
shapes cut from them. Nothing is downloaded: these loaders read files inside the installed package."""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image
from skimage import data


@cache
def photos() -> dict[str, Image.Image]:
    """name -> RGB photo: four ordinary ones plus a very wide, a very tall and a tiny one."""
    coffee, rocket = data.coffee(), data.rocket()
    shots = {
        "astronaut": data.astronaut(),  # 512x512
        "chelsea": data.chelsea(),  # 451x300
        "coffee": coffee,  # 600x400
        "rocket": rocket,  # 640x427
        "wide": coffee[140:260],  # 600x120
        "tall": np.ascontiguousarray(rocket[:, 280:380]),  # 100x427
    }
    out = {name: Image.fromarray(np.ascontiguousarray(array)) for name, array in shots.items()}
    out["tiny"] = out["astronaut"].resize((40, 40), Image.Resampling.BOX)
    return out


def ordinary() -> list[Image.Image]:
    """The four photos of ordinary shape."""
    shots = photos()
    return [shots[name] for name in ("astronaut", "chelsea", "coffee", "rocket")]


def flat(width: int = 300, height: int = 200) -> Image.Image:
    """A picture with nothing in it (a gray wall with faint sensor noise)."""
    noise = np.random.default_rng(0).integers(-1, 2, size=(height, width, 3))
    return Image.fromarray((128 + noise).astype(np.uint8))


def puzzle_bytes(puzzle) -> tuple:
    """Everything a puzzle consists of, as comparable values (pixels as raw bytes)."""
    return (
        [(im.mode, im.size, im.tobytes()) for im in puzzle.images],
        puzzle.prompt,
        puzzle.answer,
        repr(puzzle.params),
    )
