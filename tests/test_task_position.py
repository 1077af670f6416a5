"""Position puzzles on real photographs: template matching must find the crop inside the cell the answer names."""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pytest
from task_photos import flat, ordinary, photos, puzzle_bytes

from verl_ext.answers import normalize
from verl_ext.images import PHOTOMETRIC_OPS, grid_edges
from verl_ext.tasks import PuzzleSkip, get_task
from verl_ext.tasks.base import FORMAT_INSTRUCTION
from verl_ext.tasks.position import cell_names

TASK = get_task("position")


def _locate(full: np.ndarray, crop: np.ndarray) -> tuple[int, int]:
    """Top-left corner of the best match of ``crop`` in ``full`` (normalised cross-correlation, gray)."""
    gray = [cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) for a in (full, crop)]
    scores = cv2.matchTemplate(gray[0], gray[1], cv2.TM_CCOEFF_NORMED)
    _, _, _, (x, y) = cv2.minMaxLoc(scores)
    return x, y


def _cell_at(x: int, y: int, width: int, height: int, rows: int, cols: int) -> int:
    xs, ys = grid_edges(width, cols), grid_edges(height, rows)
    col = max(i for i in range(cols) if xs[i] <= x)
    row = max(i for i in range(rows) if ys[i] <= y)
    return row * cols + col


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket", "wide", "tall"])
def test_template_matching_finds_the_crop_in_the_answered_cell(name: str, difficulty: str) -> None:
    image = photos()[name]
    knobs = TASK.knobs_for(difficulty)
    rows, cols = knobs["rows"], knobs["cols"]
    full = np.asarray(image)
    for seed in range(8):
        try:
            puzzle = TASK.make(image, np.random.default_rng(seed), **knobs)
        except PuzzleSkip as skip:  # thin photos cannot hold a 28 px crop in a 3x3 cell
            assert str(skip) == "crop under 28 px" and name in ("wide", "tall") and rows == 3
            return
        assert puzzle.images[0].size == image.size
        crop = np.asarray(puzzle.images[1])
        left, top, right, bottom = puzzle.params["crop_box"]
        cl, ct, cr, cb = puzzle.params["cell_box"]
        assert cl <= left < right <= cr and ct <= top < bottom <= cb  # fully inside its cell
        low, high = knobs["crop_fraction"]
        for side, cell_side in ((right - left, cr - cl), (bottom - top, cb - ct)):
            assert side >= 28
            assert side <= round(high * cell_side) and (side >= round(low * cell_side) - 1 or side == 28)
        if not puzzle.params["augmentations"]:
            assert np.array_equal(crop, full[top:bottom, left:right])
        x, y = _locate(full, crop)
        assert abs(x - left) <= 1 and abs(y - top) <= 1
        found = _cell_at(x, y, image.width, image.height, rows, cols)
        assert cell_names(rows, cols)[found] == puzzle.answer
        assert found == puzzle.params["cell"]


def test_augmentations_are_exactly_what_the_prompt_states() -> None:
    image = photos()["astronaut"]
    knobs = TASK.knobs_for("hard")
    assert knobs["augment"]
    ops_seen = Counter()
    for seed in range(30):
        puzzle = TASK.make(image, np.random.default_rng(seed), **knobs)
        left, top, right, bottom = puzzle.params["crop_box"]
        expected = np.asarray(image)[top:bottom, left:right]
        for step in puzzle.params["augmentations"]:
            factor = step["factor"]
            assert 0.1 <= abs(factor - 1) <= 0.5 + 1e-9
            said = "colour saturation" if step["op"] == "saturation" else step["op"]
            assert f"{said} was multiplied by {factor:.2f}" in puzzle.prompt
            expected = PHOTOMETRIC_OPS[step["op"]](expected, factor)
            ops_seen[step["op"]] += 1
        assert np.array_equal(np.asarray(puzzle.images[1]), expected)
        if not puzzle.params["augmentations"]:
            assert "unchanged" in puzzle.prompt and "multiplied" not in puzzle.prompt
    assert set(ops_seen) == {"brightness", "contrast", "saturation"}
    plain = TASK.make(image, np.random.default_rng(0), **TASK.knobs_for("easy"))
    assert "multiplied" not in plain.prompt and "unchanged" not in plain.prompt


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_presets_are_deterministic_and_well_formed(difficulty: str) -> None:
    knobs = TASK.knobs_for(difficulty)
    for image in ordinary():
        first = TASK.make(image, np.random.default_rng(5), **knobs)
        assert puzzle_bytes(first) == puzzle_bytes(TASK.make(image, np.random.default_rng(5), **knobs))
        assert first.prompt.count("<image>") == 2 == len(first.images)
        assert first.prompt.endswith(FORMAT_INSTRUCTION)
        json.dumps(first.params)
        labels = TASK.labels(first.params)
        assert first.answer in labels and all(name in first.prompt for name in labels)
        assert TASK.score(first.answer, first.answer, first.params).acc == 1.0


def test_answers_are_roughly_uniform() -> None:
    image = photos()["coffee"]
    counts = Counter(TASK.make(image, np.random.default_rng(seed)).answer for seed in range(800))
    assert set(counts) == {"top-left", "top-right", "bottom-left", "bottom-right"}
    assert all(150 <= c <= 250 for c in counts.values()), counts


@pytest.mark.parametrize("rows,cols", [(2, 2), (3, 3), (2, 3), (1, 4)])
def test_labels_never_share_a_spelling(rows: int, cols: int) -> None:
    labels = TASK.labels({"rows": rows, "cols": cols})
    assert len(labels) == rows * cols
    owner: dict[str, str] = {}
    for canonical, aliases in labels.items():
        for spelling in (canonical, *aliases):
            assert owner.setdefault(normalize(spelling), canonical) == canonical, spelling


def test_scoring_accepts_common_spellings_only_for_the_right_cell() -> None:
    params = {"rows": 2, "cols": 2}
    assert TASK.score("Upper Left", "top-left", params).acc == 1.0
    assert TASK.score("top left", "top-left", params).acc == 1.0
    assert TASK.score("top right", "top-left", params).acc == 0.0
    params = {"rows": 3, "cols": 3}
    assert TASK.score("centre", "center", params).acc == 1.0
    assert TASK.score("middle left", "middle-left", params).acc == 1.0
    assert TASK.score("top middle", "top-center", params).acc == 1.0


def test_skips_with_stable_reasons() -> None:
    with pytest.raises(PuzzleSkip, match="^crop under 28 px$"):
        TASK.make(photos()["tiny"], np.random.default_rng(0))
    with pytest.raises(PuzzleSkip, match="^flat crop$"):
        TASK.make(flat(), np.random.default_rng(0))


def test_bad_knobs_are_configuration_errors() -> None:
    with pytest.raises(ValueError, match="two cells"):
        TASK.make(photos()["coffee"], np.random.default_rng(0), rows=1, cols=1)
    with pytest.raises(ValueError, match="crop_fraction"):
        TASK.make(photos()["coffee"], np.random.default_rng(0), crop_fraction=(0.8, 0.2))
