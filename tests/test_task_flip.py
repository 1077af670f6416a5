"""Flip puzzles on real photographs: un-mirroring the named tile restores the photo; labels stay unambiguous."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from task_photos import flat, photos, puzzle_bytes

from verl_ext.answers import normalize
from verl_ext.tasks import PuzzleSkip, get_task
from verl_ext.tasks.base import FORMAT_INSTRUCTION
from verl_ext.tasks.flip import DIRECTIONS, FlipTask, mirror, tile_box
from verl_ext.tasks.inpainting import visible_difference

TASK = FlipTask()
# Arrays of the ordinary photos, as the inverse checks compare pixels.
PHOTOS = {name: np.asarray(photos()[name]) for name in ("astronaut", "chelsea", "coffee", "rocket")}


def _make(image: Image.Image, seed: int, difficulty: str = "medium", **overrides):
    return TASK.make(image, np.random.default_rng(seed), **TASK.knobs_for(difficulty, **overrides))


def _unflipped(puzzle) -> np.ndarray:
    """The trimmed photograph rebuilt from the puzzle image with the named tile mirrored back."""
    params, shown = puzzle.params, np.asarray(puzzle.images[0])
    tile_w, tile_h = params["tile_size"]
    rows, cols = params["rows"], params["cols"]
    out = np.zeros((rows * tile_h, cols * tile_w, 3), np.uint8)
    tile_text, direction = puzzle.answer.split()
    for k in range(1, rows * cols + 1):
        left, top, right, bottom = tile_box(params, k)
        tile = shown[top:bottom, left:right]
        if k == int(tile_text):
            tile = mirror(tile, direction)
        r, c = divmod(k - 1, cols)
        out[r * tile_h : (r + 1) * tile_h, c * tile_w : (c + 1) * tile_w] = tile
    return out


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_unmirroring_the_named_tile_restores_the_photo(name: str, difficulty: str) -> None:
    source = PHOTOS[name]
    for seed in range(4):
        puzzle = _make(Image.fromarray(source), seed, difficulty)
        left, top, right, bottom = puzzle.params["trim_box"]
        trimmed = source[top:bottom, left:right]
        assert (_unflipped(puzzle) == trimmed).all()
        # The named tile really changed, by more than noise; no other tile did.
        k = puzzle.params["tile"]
        x0, y0, x1, y1 = tile_box(puzzle.params, k)
        shown = np.asarray(puzzle.images[0])[y0:y1, x0:x1]
        # An independent measure (OpenCV area resize of the tile itself) agrees with the task's thumbnail test,
        # give or take rounding.
        assert visible_difference(shown, mirror(shown, puzzle.params["direction"])) >= 11.0
        assert puzzle.answer == f"{k} {puzzle.params['direction']}"


def test_tiles_sit_on_the_jpeg_block_grid() -> None:
    """Tile sides and grid origin are multiples of 16 px, so a mirrored tile keeps the JPEG block pattern."""
    for name, source in PHOTOS.items():
        for difficulty in ("easy", "medium", "hard"):
            params = _make(Image.fromarray(source), 0, difficulty).params
            left, top = params["trim_box"][:2]
            assert all(v % 16 == 0 for v in (left, top, *params["tile_size"])), (name, difficulty, params)


def test_grid_lines_only_when_drawn() -> None:
    image = Image.fromarray(PHOTOS["coffee"])
    drawn = _make(image, 1, "medium")
    hidden = _make(image, 1, "medium", draw_grid=False)
    assert drawn.params["draw_grid"] and drawn.params["gap"] >= 4
    tile_w, tile_h = drawn.params["tile_size"]
    gap = drawn.params["gap"]
    assert drawn.images[0].size == (3 * tile_w + 2 * gap, 3 * tile_h + 2 * gap)
    shown = np.asarray(drawn.images[0])
    assert (shown[:, tile_w : tile_w + gap] == 255).all() and (shown[tile_h : tile_h + gap] == 255).all()
    assert "white lines separate" in drawn.prompt and "not drawn" not in drawn.prompt
    assert hidden.images[0].size == (3 * tile_w, 3 * tile_h) and hidden.params["gap"] == 0
    assert "grid is not drawn" in hidden.prompt
    assert "not drawn" in _make(image, 1, "hard").prompt


def test_prompt_params_and_determinism() -> None:
    image = Image.fromarray(PHOTOS["astronaut"])
    a, b = _make(image, 9, "hard"), _make(image, 9, "hard")
    assert puzzle_bytes(a) == puzzle_bytes(b)
    assert a.prompt.count("<image>") == len(a.images) == 1
    assert a.prompt.endswith(FORMAT_INSTRUCTION) and "reading order" in a.prompt and "1 to 16" in a.prompt
    assert json.loads(json.dumps(a.params)) == a.params
    assert {a.params["rows"], a.params["cols"]} == {4} and a.params["num_tiles"] == 16
    assert len({_make(image, seed).answer for seed in range(10)}) > 3


def test_odd_shapes_and_modes() -> None:
    shots = photos()
    shapes = {
        "tall": shots["tall"],
        "wide": shots["wide"],
        "gray": shots["astronaut"].convert("L"),
        "rgba": shots["coffee"].convert("RGBA"),
        "odd size": Image.fromarray(PHOTOS["coffee"][:397, :599]),
    }
    for name, image in shapes.items():
        rows, cols = (3, 1) if name == "tall" else (2, 3)  # the tall strip is only 100 px wide
        puzzle = _make(image, 2, "medium", rows=rows, cols=cols)
        source = np.asarray(image.convert("RGB"))
        left, top, right, bottom = puzzle.params["trim_box"]
        assert (_unflipped(puzzle) == source[top:bottom, left:right]).all(), name


def test_skips_with_reasons() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(PuzzleSkip, match="tile under 28 px"):
        TASK.make(photos()["tall"], rng, **TASK.knobs_for("hard"))
    with pytest.raises(PuzzleSkip, match="tile under 28 px"):
        TASK.make(photos()["tiny"], rng, **TASK.knobs_for("easy"))
    with pytest.raises(PuzzleSkip, match="symmetric tiles"):
        TASK.make(flat(), rng)
    # A picture whose every tile is mirror-symmetric both ways (a centred disc per tile) cannot be asked about.
    yy, xx = np.mgrid[:96, :96]  # tiles of 96 px: on the 16 px grid the task aligns tiles to
    disc = ((xx - 47.5) ** 2 + (yy - 47.5) ** 2 < 35**2).astype(np.uint8) * 200
    tiled = np.tile(np.repeat(disc[..., None], 3, axis=2), (2, 2, 1))
    with pytest.raises(PuzzleSkip, match="symmetric tiles"):
        TASK.make(Image.fromarray(tiled), rng, rows=2, cols=2)
    # One asymmetric tile among symmetric ones: it must be the answer, in the direction that shows.
    tiled[8:88, 100:120] = 255  # a bar near the left edge of tile 2, centred vertically
    puzzle = TASK.make(Image.fromarray(tiled), rng, rows=2, cols=2)
    assert puzzle.answer == "2 horizontal"


def test_bad_knobs_are_configuration_errors() -> None:
    image, rng = Image.fromarray(PHOTOS["chelsea"]), np.random.default_rng(0)
    for knobs in ({"rows": 1, "cols": 1}, {"rows": 7}, {"cols": 0}):
        with pytest.raises(ValueError):
            TASK.make(image, rng, **knobs)
    with pytest.raises(ValueError):
        mirror(np.zeros((4, 4, 3), np.uint8), "diagonal")


def test_answers_roughly_uniform() -> None:
    image = Image.fromarray(PHOTOS["astronaut"])
    rng = np.random.default_rng(7)
    puzzles = [TASK.make(image, rng, **TASK.knobs_for("easy")) for _ in range(800)]
    tiles = Counter(p.params["tile"] for p in puzzles)
    directions = Counter(p.params["direction"] for p in puzzles)
    assert set(tiles) == {1, 2, 3, 4} and all(150 <= c <= 250 for c in tiles.values()), tiles
    assert set(directions) == set(DIRECTIONS) and all(340 <= c <= 460 for c in directions.values()), directions


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_labels_unambiguous_after_normalisation(difficulty: str) -> None:
    puzzle = _make(Image.fromarray(PHOTOS["chelsea"]), 0, difficulty)
    labels = TASK.labels(puzzle.params)
    n = puzzle.params["num_tiles"]
    assert set(labels) == {f"{t} {d}" for t in range(1, n + 1) for d in DIRECTIONS}
    owners: dict[str, set[str]] = {}
    for canonical, aliases in labels.items():
        for spelling in (canonical, *aliases):
            owners.setdefault(normalize(spelling), set()).add(canonical)
    assert all(len(names) == 1 for names in owners.values()), [f for f, o in owners.items() if len(o) > 1]


def test_scoring() -> None:
    puzzle = _make(Image.fromarray(PHOTOS["coffee"]), 3, "hard", draw_grid=True)
    params = dict(puzzle.params, tile=13, direction="horizontal")
    truth = "13 horizontal"
    for said in (
        truth,
        "13 Horizontal.",
        "tile 13, horizontally",
        "13h",
        "13 H",
        "13 left-right",
        "Tile 13 - mirrored horizontally",
        "horizontal 13",
    ):
        assert TASK.score(said, truth, params).acc == 1.0, said
    for said in (
        "3 horizontal",
        "1 3 horizontal",
        "13 vertical",
        "13",
        "horizontal",
        "13 horizontal or 13 vertical",
        "17 horizontal",
        "131 horizontal",
    ):
        assert TASK.score(said, truth, params).acc == 0.0, said


def test_registered() -> None:
    assert isinstance(get_task("flip"), FlipTask)
