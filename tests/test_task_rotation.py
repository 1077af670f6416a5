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


def _turn_back(array: np.ndarray, angle: float, shift: list[float]) -> np.ndarray:
    """Undo "turn ``angle`` counter-clockwise about the centre, then move by ``shift``"."""
    side = array.shape[0]
    forward = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, 1.0)
    forward[:, 2] += shift
    return cv2.warpAffine(array, cv2.invertAffineTransform(forward), (side, side), flags=cv2.INTER_LINEAR)


def _sharpness(image: Image.Image) -> float:
    """Mean absolute Laplacian inside the disc: how crisp a picture looks."""
    gray = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    side = gray.shape[0]
    yy, xx = np.mgrid[:side, :side]
    inner = np.hypot(xx - (side - 1) / 2, yy - (side - 1) / 2) < side / 2 - 4
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[inner].mean())


@pytest.mark.parametrize("form", ["single", "pair"])
def test_hard_preset_masks_every_angle_and_the_true_angle_fits_best(form: str) -> None:
    image = photos()["astronaut"].resize((256, 256), Image.Resampling.BOX)
    knobs = {**TASK.knobs_for("hard"), "form": form}
    assert any(a % 90 for a in knobs["angles"])
    side = 256
    yy, xx = np.mgrid[:side, :side]
    radius = np.hypot(xx - (side - 1) / 2, yy - (side - 1) / 2)
    outside, inner = radius > side / 2 + 1, radius < side / 2 - 3
    for seed in range(10):
        puzzle = TASK.make(image, np.random.default_rng(seed), **knobs)
        assert puzzle.params["masked"] and len(puzzle.params["shifts"]) == len(puzzle.images)
        reference = _square(image, puzzle.params["crop_box"]).astype(np.float32)
        turns = [0, int(puzzle.answer)] if form == "pair" else [int(puzzle.answer)]
        for shown_image, turn, shift in zip(puzzle.images, turns, puzzle.params["shifts"]):
            shown = np.asarray(shown_image).astype(np.float32)
            assert shown.shape[:2] == (side, side)
            # The same black frame whatever the angle: the corners carry no information.
            assert np.all(shown[outside] == 0)
            assert all(0 <= d < 1 for d in shift)
            # Invert: turned back by the true angle (and shift), the picture matches the source square best.
            errors = {a: np.abs(_turn_back(shown, a, shift)[inner] - reference[inner]).mean() for a in knobs["angles"]}
            assert min(errors, key=errors.get) == turn
            assert errors[turn] < 8


def test_hard_preset_quarter_turns_are_as_soft_as_off_axis_turns() -> None:
    """A bare transpose is sharper than a 45-degree interpolation; the hard preset resamples every angle alike."""
    image = photos()["coffee"].resize((300, 200), Image.Resampling.BOX)
    knobs = TASK.knobs_for("hard")
    groups: dict[bool, list[float]] = {True: [], False: []}
    for seed in range(80):
        puzzle = TASK.make(image, np.random.default_rng(seed), **knobs)
        groups[int(puzzle.answer) % 90 == 0].append(_sharpness(puzzle.images[0]))
    quarter, off_axis = np.mean(groups[True]), np.mean(groups[False])
    assert abs(quarter - off_axis) < 0.12 * off_axis, (quarter, off_axis)
    # Without the shared resampling the quarter turns would stand out (this is what the test guards against).
    square = image.crop((0, 0, 200, 200))
    assert _sharpness(square) > 1.2 * off_axis


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
