"""Rotation puzzles on real photographs: turned back, they must give the original square; nothing may leak."""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pytest
from PIL import Image
from task_photos import flat, ordinary, photos, puzzle_bytes

from verl_ext.tasks import PuzzleSkip, get_task
from verl_ext.tasks.base import FORMAT_INSTRUCTION

TASK = get_task("rotation")


def _square(image: Image.Image, box: list[int]) -> np.ndarray:
    left, top, right, bottom = box
    return np.asarray(image)[top:bottom, left:right]


@pytest.mark.parametrize("form", ["pair", "single"])
@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket", "wide", "tall"])
def test_quarter_turns_invert_exactly(name: str, form: str) -> None:
    image = photos()[name]
    seen = set()
    for seed in range(12):
        puzzle = TASK.make(image, np.random.default_rng(seed), form=form)
        angle = int(puzzle.answer)
        assert angle == puzzle.params["angle"] and angle in (0, 90, 180, 270)
        seen.add(angle)
        square = _square(image, puzzle.params["crop_box"])
        assert square.shape[0] == square.shape[1] == min(image.size)
        turned = np.asarray(puzzle.images[-1])
        # np.rot90 with k > 0 turns counter-clockwise as displayed: undo it with -k.
        assert np.array_equal(np.rot90(turned, -angle // 90), square)
        if form == "pair":
            assert np.array_equal(np.asarray(puzzle.images[0]), square)
        # No size leak: every shown image is the same square whatever the angle.
        assert {im.size for im in puzzle.images} == {(square.shape[1], square.shape[0])}
    assert len(seen) >= 3


def test_square_offset_is_random_along_the_long_side() -> None:
    image = photos()["coffee"]
    lefts = {TASK.make(image, np.random.default_rng(seed)).params["crop_box"][0] for seed in range(20)}
    assert len(lefts) > 5 and max(lefts) <= image.width - image.height


def _turn_back(array: np.ndarray, angle: float) -> np.ndarray:
    side = array.shape[0]
    matrix = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), -angle, 1.0)
    return cv2.warpAffine(array, matrix, (side, side), flags=cv2.INTER_LINEAR)


def test_hard_preset_masks_every_angle_and_the_true_angle_fits_best() -> None:
    image = photos()["astronaut"]
    knobs = TASK.knobs_for("hard")
    assert any(a % 90 for a in knobs["angles"])
    outside = None
    for seed in range(16):
        puzzle = TASK.make(image, np.random.default_rng(seed), **knobs)
        assert puzzle.params["masked"] and puzzle.params["form"] == "single"
        shown = np.asarray(puzzle.images[0]).astype(np.float32)
        side = shown.shape[0]
        assert shown.shape[:2] == (side, side) == (min(image.size) // 2,) * 2
        yy, xx = np.mgrid[:side, :side]
        radius = np.hypot(xx - (side - 1) / 2, yy - (side - 1) / 2)
        if outside is None:
            outside = radius > side / 2 + 1
        # The same black frame whatever the angle: the corners carry no information.
        assert np.all(shown[outside] == 0)
        # Invert: the square cut from the source, halved, matches the picture turned back by the answer best.
        reference = np.asarray(Image.fromarray(_square(image, puzzle.params["crop_box"])).reduce(2)).astype(np.float32)
        inner = radius < side / 2 - 3
        errors = {a: np.abs(_turn_back(shown, a)[inner] - reference[inner]).mean() for a in knobs["angles"]}
        assert min(errors, key=errors.get) == int(puzzle.answer)
        assert errors[int(puzzle.answer)] < 8


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_presets_are_deterministic_and_well_formed(difficulty: str) -> None:
    knobs = TASK.knobs_for(difficulty)
    for image in ordinary():
        first = TASK.make(image, np.random.default_rng(7), **knobs)
        again = TASK.make(image, np.random.default_rng(7), **knobs)
        assert puzzle_bytes(first) == puzzle_bytes(again)
        assert first.prompt.count("<image>") == len(first.images) == (2 if knobs["form"] == "pair" else 1)
        assert first.prompt.endswith(FORMAT_INSTRUCTION)
        assert all(im.mode == "RGB" for im in first.images)
        json.dumps(first.params)
        assert first.answer in TASK.labels(first.params)
        assert TASK.score(first.answer, first.answer, first.params).acc == 1.0


def test_answers_are_roughly_uniform() -> None:
    image = photos()["chelsea"].resize((120, 80))
    counts = Counter(TASK.make(image, np.random.default_rng(seed)).answer for seed in range(800))
    assert set(counts) == {"0", "90", "180", "270"}
    assert all(150 <= c <= 250 for c in counts.values()), counts


def test_labels_and_scoring() -> None:
    params = TASK.make(photos()["rocket"], np.random.default_rng(0)).params
    labels = TASK.labels(params)
    assert set(labels) == {"0", "90", "180", "270"}
    assert TASK.score("90°", "90", params).acc == 1.0
    assert TASK.score("90 degrees", "90", params).acc == 1.0
    assert TASK.score("-90", "270", params).acc == 1.0  # a quarter turn clockwise is 270 counter-clockwise
    assert TASK.score("90", "270", params).acc == 0.0
    assert TASK.score("0 or 90", "90", params).acc == 0.0


def test_skips_with_stable_reasons() -> None:
    with pytest.raises(PuzzleSkip, match="^image under 56 px$"):
        TASK.make(photos()["tiny"], np.random.default_rng(0))
    with pytest.raises(PuzzleSkip, match="^flat image$"):
        TASK.make(flat(), np.random.default_rng(0))


def test_bad_knobs_are_configuration_errors() -> None:
    with pytest.raises(ValueError, match="form"):
        TASK.make(photos()["rocket"], np.random.default_rng(0), form="triple")
    with pytest.raises(ValueError, match="two distinct angles"):
        TASK.make(photos()["rocket"], np.random.default_rng(0), angles=(0, 360))
    with pytest.raises(TypeError):
        TASK.make(photos()["rocket"], np.random.default_rng(0), grid=3)


def test_non_rgb_input_is_accepted() -> None:
    gray = photos()["astronaut"].convert("L")
    puzzle = TASK.make(gray, np.random.default_rng(1))
    assert all(im.mode == "RGB" for im in puzzle.images)
