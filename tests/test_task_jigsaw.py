"""Jigsaw puzzles on real photographs: the tiles put back as the answer says must rebuild the trimmed picture."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from task_photos import flat, ordinary, photos, puzzle_bytes

from verl_ext.tasks import PuzzleSkip, get_task
from verl_ext.tasks.base import FORMAT_INSTRUCTION

TASK = get_task("jigsaw")
GRIDS = [(1, 2), (2, 1), (1, 3), (3, 1), (2, 2), (2, 3), (3, 3), (4, 4), (5, 3), (6, 6)]


def _reassemble(puzzle) -> np.ndarray:
    """Place shown tile number answer[p] at grid position p (reading order), as the prompt defines the answer."""
    rows, cols = puzzle.params["rows"], puzzle.params["cols"]
    tiles = [np.asarray(im) for im in puzzle.images]
    answer = [int(k) for k in puzzle.answer.split(",")]
    grid = [[tiles[answer[r * cols + c] - 1] for c in range(cols)] for r in range(rows)]
    return np.concatenate([np.concatenate(row, axis=1) for row in grid], axis=0)


@pytest.mark.parametrize("rows,cols", GRIDS)
def test_reassembling_by_the_answer_gives_the_centred_trimmed_picture(rows: int, cols: int) -> None:
    # (The rocket photo's sky gives near-blank tiles at 6x6; blank-tile skips are tested below.)
    for name in ("astronaut", "chelsea", "coffee"):
        image = photos()[name]
        puzzle = TASK.make(image, np.random.default_rng(rows * 10 + cols), rows=rows, cols=cols)
        n = rows * cols
        assert len(puzzle.images) == n == puzzle.params["num_tiles"]
        assert sorted(int(k) for k in puzzle.answer.split(",")) == list(range(1, n + 1))
        left, top, right, bottom = puzzle.params["trim_box"]
        # The remainder is trimmed evenly: the two sides differ by at most one pixel.
        assert abs(left - (image.width - right)) <= 1 and abs(top - (image.height - bottom)) <= 1
        assert (right - left) % cols == 0 and (bottom - top) % rows == 0
        assert image.width - (right - left) < cols and image.height - (bottom - top) < rows
        assert {im.size for im in puzzle.images} == {tuple(puzzle.params["tile_size"])}
        assert np.array_equal(_reassemble(puzzle), np.asarray(image)[top:bottom, left:right])


def test_order_param_says_where_each_shown_tile_came_from() -> None:
    image = photos()["coffee"]
    puzzle = TASK.make(image, np.random.default_rng(3), rows=3, cols=3)
    tile_w, tile_h = puzzle.params["tile_size"]
    left, top = puzzle.params["trim_box"][:2]
    for shown, position in zip(puzzle.images, puzzle.params["order"]):
        r, c = divmod(position, 3)
        box = (left + c * tile_w, top + r * tile_h, left + (c + 1) * tile_w, top + (r + 1) * tile_h)
        assert shown.tobytes() == image.crop(box).tobytes()


def test_shuffle_is_never_the_identity_from_three_tiles_and_uniform_otherwise() -> None:
    image = photos()["chelsea"].resize((120, 120))
    counts = Counter(TASK.make(image, np.random.default_rng(seed)).answer for seed in range(920))
    identity = "1,2,3,4"
    all_others = {",".join(map(str, p)) for p in itertools.permutations(range(1, 5))} - {identity}
    assert set(counts) == all_others  # 23 answers, the identity never
    assert all(20 <= c <= 62 for c in counts.values()), counts  # 40 expected each
    for grid in [(1, 3), (3, 1)]:
        answers = {TASK.make(image, np.random.default_rng(s), rows=grid[0], cols=grid[1]).answer for s in range(200)}
        assert "1,2,3" not in answers and len(answers) == 5
    # With two tiles, excluding the identity would make every answer "2,1": both stay possible.
    strip = Counter(TASK.make(image, np.random.default_rng(s), rows=1, cols=2).answer for s in range(200))
    assert set(strip) == {"1,2", "2,1"} and min(strip.values()) > 60


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_presets_are_deterministic_and_well_formed(difficulty: str) -> None:
    knobs = TASK.knobs_for(difficulty)
    for image in ordinary():
        first = TASK.make(image, np.random.default_rng(11), **knobs)
        assert puzzle_bytes(first) == puzzle_bytes(TASK.make(image, np.random.default_rng(11), **knobs))
        n = knobs["rows"] * knobs["cols"]
        assert first.prompt.count("<image>") == n == len(first.images)
        assert first.prompt.endswith(FORMAT_INSTRUCTION)
        json.dumps(first.params)
        assert TASK.answer_kind == "permutation"
        assert TASK.score(first.answer, first.answer, first.params).acc == 1.0
    assert TASK.knobs_for("easy")["rows"] == TASK.knobs_for("easy")["cols"] == 2


def test_prompt_example_and_scoring() -> None:
    puzzle = TASK.make(photos()["rocket"], np.random.default_rng(0))
    assert "2,3,4,1" in puzzle.prompt and "top-left" in puzzle.prompt
    for k in range(1, 5):
        assert f"Tile {k}: <image>" in puzzle.prompt
    truth = puzzle.answer
    assert TASK.score(truth.replace(",", ", "), truth, puzzle.params).acc == 1.0
    wrong = ",".join(reversed(truth.split(",")))
    assert TASK.score(wrong, truth, puzzle.params).acc == 0.0
    assert TASK.score("1,1,1,1", truth, puzzle.params).partial == 0.0  # not a permutation


def test_skips_with_stable_reasons() -> None:
    with pytest.raises(PuzzleSkip, match="^tile under 28 px$"):
        TASK.make(photos()["tiny"], np.random.default_rng(0))
    with pytest.raises(PuzzleSkip, match="^tile under 28 px$"):
        TASK.make(photos()["wide"], np.random.default_rng(0), rows=5, cols=5)  # 120 px / 5 rows = 24 px
    with pytest.raises(PuzzleSkip, match="^blank tiles$"):
        TASK.make(flat(), np.random.default_rng(0))
    # Half blank (a white margin under a photo): the two bottom tiles could swap unseen.
    half = np.asarray(photos()["coffee"]).copy()
    half[200:] = 255
    with pytest.raises(PuzzleSkip, match="^blank tiles$"):
        TASK.make(Image.fromarray(half), np.random.default_rng(0))
    # One blank tile alone is not ambiguous.
    TASK.make(Image.fromarray(half), np.random.default_rng(0), rows=1, cols=3)


def test_bad_grids_are_configuration_errors() -> None:
    for rows, cols in [(1, 1), (0, 3), (7, 2)]:
        with pytest.raises(ValueError, match="jigsaw grid"):
            TASK.make(photos()["astronaut"], np.random.default_rng(0), rows=rows, cols=cols)
