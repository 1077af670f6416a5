"""The ``scenes`` source: procedural outdoor scenes, deterministic from (seed, index), as many as asked for.

Each picture is drawn from its own random generator, seeded by ``(seed, index)`` alone, so any process, order
or machine draws the same scene. Training scenes use indices ``0 ..`` and validation scenes indices from
``VAL_OFFSET`` on: held-out pictures are new scenes, never new crops of training ones.

A scene has the regularities that let a model answer puzzles about real photographs, drawn strong enough for
a small random vision tower to pick up:

* **sky above a horizon**: a blue gradient, darkest at the top and palest at the horizon, over ground of
  another colour. Rotation (``{0, 180}`` and quarter turns) and flip puzzles rest on this cue: which way is up.
* **light from above, and from one side**: a sun in the sky, the sky brighter towards it; objects lit on top
  and on the sun's side, their shadows falling on the ground away from the sun. This backs up the
  up-down cue, and gives left and right something to differ by.
* **objects standing on the ground**: boxes and trees whose base is on the ground, larger nearer the viewer
  (lower in the picture), each casting a shadow. Position puzzles (which quadrant a crop comes from) use
  them together with the sky/ground split: a crop holds a recognisable piece of a one-off layout.
* **texture that gets finer with distance**: ground stripes and speckles whose period shrinks towards the
  horizon, as a perspective view of a field does. Jigsaw tiles can be ordered by it (and by the horizon line
  and objects running across tile borders).

The settings come from the build's ``--input``, as ``key=value`` pairs joined by commas (see
:class:`SceneSettings`), e.g. ``--source scenes --input size=112,train=320,val=80``. Without ``--input`` the
defaults apply. Pictures are ordinary RGB images to every task; their payload is the small recipe
(:class:`SceneRecipe`), drawn when the picture is decoded, so workers draw in parallel.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from verl_ext.sources.base import TRAIN, VAL, RawItem, SkipCounter, SourceSpec

VAL_OFFSET = 1_000_000_000  # first index of a validation scene; training indices stay below it
MIN_SIDE = 56  # the smallest picture Qwen2.5-VL's processor keeps as it is (4 tokens of 28 x 28)


@dataclass(frozen=True)
class SceneSettings:
    """What the ``scenes`` source draws; each field is one ``key=value`` of ``--input``.

    ``size`` is the longer side in pixels; ``aspect`` is width / height (1.0 square, 1.5 landscape, 0.75
    portrait). ``train``/``val`` are the number of scenes of each split, ``seed`` picks another world of scenes
    (independent of the build's ``--seed``, which drives the puzzles).
    """

    size: int = 224
    aspect: float = 1.0
    train: int = 2000
    val: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if not MIN_SIDE <= self.size <= 4096:
            raise ValueError(f"scenes: size must lie in [{MIN_SIDE}, 4096], got {self.size}")
        if not 0.25 <= self.aspect <= 4.0:
            raise ValueError(f"scenes: aspect must lie in [0.25, 4], got {self.aspect}")
        if min(self.width, self.height) < MIN_SIDE:
            raise ValueError(f"scenes: size {self.size} at aspect {self.aspect} gives a side under {MIN_SIDE} px")
        if self.train < 0 or self.val < 0 or self.train + self.val == 0:
            raise ValueError(f"scenes: train and val must be >= 0 and not both 0, got {self.train} and {self.val}")
        if self.train > VAL_OFFSET:
            raise ValueError(f"scenes: at most {VAL_OFFSET} training scenes, got {self.train}")

    @property
    def width(self) -> int:
        return self.size if self.aspect >= 1 else round(self.size * self.aspect)

    @property
    def height(self) -> int:
        return round(self.size / self.aspect) if self.aspect >= 1 else self.size

    @classmethod
    def parse(cls, text: str | Path | None) -> SceneSettings:
        """Settings from ``"size=112,train=320"`` (None or empty: the defaults); unknown keys are refused."""
        if text is None or not str(text).strip():
            return cls()
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, int | float] = {}
        for part in str(text).split(","):
            key, sep, value = part.strip().partition("=")
            if not sep or key not in types:
                raise ValueError(
                    f"scenes: --input takes key=value pairs separated by commas with keys {', '.join(types)};"
                    f" got {part.strip()!r}"
                )
            try:
                values[key] = float(value) if types[key] in ("float", float) else int(value)
            except ValueError:
                raise ValueError(f"scenes: {key} must be a number, got {value!r}") from None
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SceneRecipe:
    """The payload of one scene: everything :func:`render_scene` needs, small enough to pickle cheaply."""

    seed: int
    index: int
    width: int
    height: int

    def key(self) -> bytes:
        return f"scene:{self.seed}:{self.index}:{self.width}x{self.height}".encode()


SPEC = SourceSpec(
    "scenes",
    "procedural outdoor scenes (sky over ground, objects, shadows), deterministic; --input size=..,train=..,val=..",
    train_split=TRAIN,
    val_split=VAL,
    needs_input=False,
    input_is_settings=True,
    licence="cc0-1.0",
    licence_note="The pictures are generated by this toolkit's code from a seed; no rights are reserved in them.",
)


def iter_scenes(settings: SceneSettings, skips: SkipCounter, carve: bool = False) -> Iterator[RawItem]:
    """The validation scenes first, then the training ones (``carve``: both carved by content instead)."""
    for split, first, count in ((VAL, VAL_OFFSET, settings.val), (TRAIN, 0, settings.train)):
        for index in range(first, first + count):
            recipe = SceneRecipe(settings.seed, index, settings.width, settings.height)
            meta = {"origin": f"scenes/seed{settings.seed}/{index}", "license": "generated (no rights reserved)"}
            yield RawItem(f"scenes/{settings.seed}/{index}", None if carve else split, recipe, meta=meta)


# Ground colours (RGB): grass, dry grass, soil, sand, rock; all darker than any sky, so brightness and hue
# agree on which way is up.
_GROUNDS = np.array([(60, 105, 40), (125, 115, 55), (95, 70, 45), (150, 130, 90), (100, 95, 88)], float)
# Object colours: red, blue, yellow, white, dark green (trees), brown.
_OBJECTS = np.array([(190, 50, 40), (50, 70, 170), (220, 190, 40), (225, 225, 220), (30, 90, 40), (120, 70, 40)], float)


def render_scene(recipe: SceneRecipe) -> Image.Image:
    """Draw one scene (see the module docstring for what it holds and why)."""
    rng = np.random.default_rng([recipe.seed, recipe.index])
    w, h = recipe.width, recipe.height
    ys = (np.arange(h, dtype=float) + 0.5)[:, None]
    xs = (np.arange(w, dtype=float) + 0.5)[None, :]
    horizon = h * rng.uniform(0.35, 0.6)
    sun_x = w * (rng.uniform(0.05, 0.35) if rng.random() < 0.5 else rng.uniform(0.65, 0.95))
    sun_y = horizon * rng.uniform(0.15, 0.6)
    sun_side = 1.0 if sun_x > w / 2 else -1.0

    # Sky: deep blue at the top, pale at the horizon, brighter towards the sun.
    top = np.array([80, 135, 220], float) + rng.uniform(-15, 15, 3)
    pale = np.array([205, 222, 245], float) + rng.uniform(-10, 8, 3)
    t = np.clip(ys / horizon, 0, 1)[..., None]
    sky = top * (1 - t) + pale * t
    glow = np.exp(-((xs - sun_x) ** 2 + (ys - sun_y) ** 2) / (2 * (0.25 * w) ** 2))[..., None]
    sky = sky + glow * 50
    sun = ((xs - sun_x) ** 2 + (ys - sun_y) ** 2) < (0.05 * min(w, h)) ** 2
    sky[sun] = (255, 245, 200)
    for _ in range(int(rng.integers(0, 4))):  # soft clouds
        cx, cy = rng.uniform(0, w), rng.uniform(0.05, 0.8) * horizon
        rx, ry = rng.uniform(0.06, 0.18) * w, rng.uniform(0.02, 0.05) * h
        cloud = np.exp(-(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2))[..., None]
        sky = sky * (1 - 0.7 * cloud) + 245 * 0.7 * cloud

    # Ground: a base colour, hazier towards the horizon, with stripes and speckles finer with distance.
    base = _GROUNDS[int(rng.integers(len(_GROUNDS)))] + rng.uniform(-20, 20, 3)
    depth = np.maximum(ys - horizon, 0.5) / h  # 0 at the horizon, about 0.5 at the bottom
    stripes = np.sin(rng.uniform(1.5, 3.0) / depth + rng.uniform(0, 2 * np.pi))  # period shrinks at the horizon
    # Speckle: coarse noise near the viewer, fine far away (block size proportional to the distance below the horizon).
    cells = np.maximum(1, np.round(depth * rng.uniform(18, 30))).astype(int)[:, 0]
    speckle = rng.normal(0, 1, (h, w))
    for row in range(h):
        size = cells[row]
        speckle[row] = np.repeat(speckle[row, ::size], size)[:w]
    ground = base * (0.85 + 0.1 * stripes[..., None] + 0.06 * speckle[..., None])
    haze = np.exp(-depth * 8)[..., None]  # aerial perspective: far ground takes the horizon's colour
    ground = ground * (1 - 0.5 * haze) + pale * 0.5 * haze
    side_light = 1 + 0.08 * sun_side * (xs - w / 2) / w  # the sun's side of the ground is a little brighter
    ground = ground * side_light[..., None] * (1 - 0.35 * np.minimum(depth / 0.6, 1))[..., None]  # darker nearby
    picture = np.where((ys < horizon)[..., None], sky, ground)

    # Objects standing on the ground, drawn far to near; each lit from above and casts a shadow away from the sun.
    count = int(rng.integers(2, 6))
    bases = np.sort(rng.uniform(horizon + 0.05 * h, h * 1.02, count))
    for base_y in bases:
        scale = (base_y - horizon) / (h - horizon)  # 0 at the horizon, 1 at the bottom edge
        obj_h = h * (0.08 + 0.35 * scale) * rng.uniform(0.7, 1.3)
        obj_w = obj_h * rng.uniform(0.4, 1.0)
        cx = rng.uniform(0, w)
        left, right, top_y = cx - obj_w / 2, cx + obj_w / 2, base_y - obj_h
        # Shadow: a dark ellipse on the ground beside the base, away from the sun.
        sx, sy = cx - sun_side * obj_w * 0.6, base_y
        shadow = (((xs - sx) / (obj_w * 0.9)) ** 2 + ((ys - sy) / (obj_h * 0.12 + 1)) ** 2) < 1
        shadow &= ys > horizon
        picture[shadow] *= 0.55
        colour = _OBJECTS[int(rng.integers(len(_OBJECTS)))] + rng.uniform(-15, 15, 3)
        inside_x = (xs >= left) & (xs < right)
        if rng.random() < 0.35:  # a tree: a trunk under a round crown
            trunk = (np.abs(xs - cx) < obj_w * 0.1) & (ys >= top_y + obj_h * 0.45) & (ys < base_y)
            crown = ((xs - cx) / (obj_w / 2)) ** 2 + ((ys - (top_y + obj_h * 0.3)) / (obj_h * 0.32)) ** 2 < 1
            light = 1.25 - 0.5 * np.clip((ys - top_y) / (obj_h * 0.6), 0, 1)
            picture = np.where(trunk[..., None], np.array([90.0, 60.0, 35.0]), picture)
            crown_colour = (colour if rng.random() < 0.3 else _OBJECTS[4]) * light[..., None]  # (h, 1, 3)
            picture = np.where(crown[..., None], crown_colour, picture)
        else:  # a box: bright top face, the sun's side lighter than the other
            body = inside_x & (ys >= top_y) & (ys < base_y)
            shade = 1.0 + 0.15 * sun_side * (xs - cx) / max(obj_w, 1) - 0.25 * np.clip((ys - top_y) / obj_h, 0, 1)
            lit = colour * shade[..., None]
            roof = body & (ys < top_y + max(2.0, obj_h * 0.12))
            picture = np.where(body[..., None], lit, picture)
            picture[roof] = np.minimum(colour * 1.35 + 30, 255)

    picture += rng.normal(0, 3, picture.shape)  # sensor noise
    return Image.fromarray(np.clip(np.rint(picture), 0, 255).astype(np.uint8), "RGB")
