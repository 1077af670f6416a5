"""Correspondence puzzles on real photographs: the stored homography made the view and maps R onto the answer."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import cv2
import numpy as np
import pytest
from PIL import Image
from task_photos import flat, photos, puzzle_bytes

from verl_ext.answers import normalize
from verl_ext.tasks import PuzzleSkip, get_task
from verl_ext.tasks.base import FORMAT_INSTRUCTION
from verl_ext.tasks.correspondence import CorrespondenceTask, apply_homography

TASK = CorrespondenceTask()
# Arrays of the ordinary photos, as the inverse checks compare pixels.
PHOTOS = {name: np.asarray(photos()[name]) for name in ("astronaut", "chelsea", "coffee", "rocket")}
# Drawn centres are rounded to 1/16 px: at most half a step off along each axis.
ROUNDING = math.hypot(1 / 32, 1 / 32) + 1e-9


def _make(image: Image.Image, seed: int, difficulty: str = "medium", **overrides):
    return TASK.make(image, np.random.default_rng(seed), **TASK.knobs_for(difficulty, **overrides))


def _near_markers(shape: tuple[int, int], points: list[list[float]], radius: int) -> np.ndarray:
    """Pixels a marker (ring plus label at its upper right) may touch: a generous box around each centre."""
    mask = np.zeros(shape, bool)
    reach = 3 * radius + 4
    for x, y in points:
        mask[max(0, int(y) - reach) : int(y) + reach + 1, max(0, int(x) - reach) : int(x) + reach + 1] = True
    return mask


def _check_puzzle(source: np.ndarray, puzzle) -> None:
    params = puzzle.params
    homography = np.array(params["homography"])
    candidates = params["candidates"]
    truth = next(c for c in candidates if c["label"] == puzzle.answer)
    assert truth["kind"] == "true" and sum(c["kind"] == "true" for c in candidates) == 1

    # Mapping the reference through the stored homography lands on the answer's ring centre ...
    landed = apply_homography(homography, params["reference"])
    assert math.dist(landed, truth["xy"]) <= ROUNDING
    # ... and on no other: every other candidate is at least the minimum distance away.
    for a, b in itertools.combinations(candidates, 2):
        assert math.dist(a["xy"], b["xy"]) >= params["min_distance_px"] - 2 * ROUNDING

    # The view is exactly the photo warped by the stored homography, except where rings were drawn.
    view_w, view_h = params["view_size"]
    shown = np.asarray(puzzle.images[1])
    assert shown.shape == (view_h, view_w, 3)
    rewarped = cv2.warpPerspective(
        np.ascontiguousarray(source),
        homography,
        (view_w, view_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    radius = params["marker_radius"]
    changed = (shown != rewarped).any(axis=2)
    assert not (changed & ~_near_markers(changed.shape, [c["xy"] for c in candidates], radius)).any()
    assert changed.mean() < 0.25
    # Image 1 is the photo with only the reference ring added.
    first = np.asarray(puzzle.images[0])
    changed = (first != source).any(axis=2)
    assert changed.any()
    assert not (changed & ~_near_markers(changed.shape, [params["reference"]], radius)).any()

    # Every ring lies fully inside its image.
    x, y = params["reference"]
    assert radius < x < source.shape[1] - radius and radius < y < source.shape[0] - radius
    for c in candidates:
        assert radius < c["xy"][0] < view_w - radius and radius < c["xy"][1] < view_h - radius


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_homography_maps_reference_onto_the_answer(name: str, difficulty: str) -> None:
    source = PHOTOS[name]
    for seed in range(3):
        puzzle = _make(Image.fromarray(source), seed, difficulty)
        assert len(puzzle.params["candidates"]) == TASK.presets[difficulty]["num_candidates"]
        _check_puzzle(source, puzzle)


def test_transform_strength_follows_the_knobs() -> None:
    image = Image.fromarray(PHOTOS["coffee"])
    easy = [_make(image, seed, "easy").params["view"] for seed in range(20)]
    assert all(abs(v["rotation_deg"]) <= 15 and not v["mirrored"] and v["perspective"] == 0 for v in easy)
    mirrored = _make(image, 0, "medium", flip_probability=1.0)
    assert mirrored.params["view"]["mirrored"]
    # A mirror reverses orientation: the homography's Jacobian at the reference has a negative determinant.
    for puzzle, sign in ((mirrored, -1), (_make(image, 0, "medium", flip_probability=0.0), 1)):
        h = np.array(puzzle.params["homography"])
        x, y = puzzle.params["reference"]
        step = 1.0
        centre = apply_homography(h, (x, y))
        jacobian = np.stack([apply_homography(h, (x + step, y)) - centre, apply_homography(h, (x, y + step)) - centre])
        assert np.sign(np.linalg.det(jacobian)) == sign
    hard_kinds = Counter(c["kind"] for seed in range(10) for c in _make(image, seed, "hard").params["candidates"])
    assert hard_kinds["decoy"] > 0 and hard_kinds["near"] == 10 and hard_kinds["companion"] == 20
    easy_kinds = Counter(c["kind"] for seed in range(10) for c in _make(image, seed, "easy").params["candidates"])
    assert set(easy_kinds) == {"true", "far"}


def test_prompt_params_and_determinism() -> None:
    image = Image.fromarray(PHOTOS["chelsea"])
    a, b = _make(image, 4, "hard"), _make(image, 4, "hard")
    assert puzzle_bytes(a) == puzzle_bytes(b)
    assert a.prompt.count("<image>") == len(a.images) == 2
    assert a.prompt.endswith(FORMAT_INSTRUCTION)
    assert "labelled R" in a.prompt and "A to F" in a.prompt and "mirrored" in a.prompt
    assert "mirrored" not in _make(image, 4, "easy").prompt
    assert json.loads(json.dumps(a.params)) == a.params
    assert a.params["image_size"] == [451, 300]


def test_odd_shapes_and_modes() -> None:
    astronaut, coffee = PHOTOS["astronaut"], PHOTOS["coffee"]
    shapes = {
        "tall": astronaut[:, 180:330],
        "wide": np.asarray(photos()["wide"]),
        "small": astronaut[150:270, 150:280],
    }
    for _name, array in shapes.items():
        for difficulty in ("easy", "medium", "hard"):
            _check_puzzle(array, _make(Image.fromarray(array), 1, difficulty))
    for image in (Image.fromarray(astronaut).convert("L"), Image.fromarray(coffee).convert("RGBA")):
        puzzle = _make(image, 1, "hard")
        _check_puzzle(np.asarray(image.convert("RGB")), puzzle)


def test_skips_with_reasons() -> None:
    rng = np.random.default_rng(0)
    for name in ("tiny", "tall"):  # 40x40 and 100x427: no room for a view with several rings
        with pytest.raises(PuzzleSkip, match="image too small"):
            TASK.make(photos()[name], rng)
    with pytest.raises(PuzzleSkip, match="flat region"):
        TASK.make(flat(), rng)


def test_bad_knobs_are_configuration_errors() -> None:
    image, rng = Image.fromarray(PHOTOS["chelsea"]), np.random.default_rng(0)
    for knobs in (
        {"num_candidates": 1},
        {"num_candidates": 9},
        {"scale": (0, 1)},
        {"crop": (0.5, 1.2)},
        {"perspective": 0.5},
        {"flip_probability": 2.0},
        {"cluster": 0},
        {"num_candidates": 5, "cluster": 2},
    ):
        with pytest.raises(ValueError):
            TASK.make(image, rng, **knobs)


def test_answers_roughly_uniform() -> None:
    image = Image.fromarray(PHOTOS["astronaut"])
    rng = np.random.default_rng(5)
    counts = Counter(TASK.make(image, rng, **TASK.knobs_for("medium")).answer for _ in range(200))
    assert set(counts) == set("ABCD") and all(28 <= c <= 72 for c in counts.values()), counts


def test_layout_does_not_give_the_answer_away() -> None:
    """Layout-only guesses (the most central ring, a ring of the tightest pair) do no better than chance."""
    central = in_tightest_pair = n = 0
    for name in ("astronaut", "coffee"):
        rng = np.random.default_rng(11)
        for _ in range(60):
            puzzle = TASK.make(Image.fromarray(PHOTOS[name]), rng, **TASK.knobs_for("medium"))
            points = np.array([c["xy"] for c in puzzle.params["candidates"]])
            truth = [c["label"] for c in puzzle.params["candidates"]].index(puzzle.answer)
            distances = np.linalg.norm(points[:, None] - points[None], axis=2)
            central += int(np.argmin(distances.sum(axis=1))) == truth
            np.fill_diagonal(distances, np.inf)
            i, j = np.unravel_index(np.argmin(distances), distances.shape)
            in_tightest_pair += truth in (i, j)
            n += 1
    # Chance: 1/4 for one ring of four, 1/2 for a ring of one of two pairs (a truth-only cluster would be ~1).
    assert central / n < 0.36 and in_tightest_pair / n < 0.65, (central / n, in_tightest_pair / n)


def test_labels_and_scoring() -> None:
    puzzle = _make(Image.fromarray(PHOTOS["rocket"]), 2, "hard")
    labels = TASK.labels(puzzle.params)
    assert list(labels) == list("ABCDEF")
    owners: dict[str, set[str]] = {}
    for canonical, aliases in labels.items():
        for spelling in (canonical, *aliases):
            owners.setdefault(normalize(spelling), set()).add(canonical)
    assert all(len(names) == 1 for names in owners.values())
    assert "r" not in owners  # the reference's label is never an answer
    truth = puzzle.answer
    wrong = next(letter for letter in labels if letter != truth)
    for said in (truth, truth.lower(), f"({truth})", f"Point {truth}", f"point {truth.lower()}."):
        assert TASK.score(said, truth, puzzle.params).acc == 1.0, said
    for said in (wrong, "R", f"{truth}, {wrong}", "G", ""):
        assert TASK.score(said, truth, puzzle.params).acc == 0.0, said


def test_registered() -> None:
    assert isinstance(get_task("correspondence"), CorrespondenceTask)
