"""Contrastive pairs on real photographs: each view must come from the region of the picture its params name."""

from __future__ import annotations

import io
import json
from collections import Counter

import cv2
import numpy as np
import pytest
from PIL import Image
from task_photos import flat, ordinary, photos, puzzle_bytes

from verl_ext.tasks import PuzzleSkip, get_task
from verl_ext.tasks.base import FORMAT_INSTRUCTION
from verl_ext.tasks.contrastive import render_view

TASK = get_task("contrastive")
NAMES = ["astronaut", "chelsea", "coffee", "rocket"]


def _gray(array: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2GRAY).astype(np.float32)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-9))


def _region(image: Image.Image, view: dict, size: int) -> np.ndarray:
    """The view's crop box cut from ``image`` independently of the task code (OpenCV area resize, numpy flip)."""
    left, top, right, bottom = view["crop"]
    right, bottom = min(right, image.width), min(bottom, image.height)
    array = cv2.resize(np.asarray(image)[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)
    return _gray(array[:, ::-1] if view["flip"] else array)


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_views_come_from_the_pictures_the_params_name(difficulty: str) -> None:
    knobs = TASK.knobs_for(difficulty)
    shots = photos()
    for i, name in enumerate(NAMES):
        image, partner = shots[name], shots[NAMES[(i + 1) % len(NAMES)]]
        for seed in range(6):
            positive = seed % 2 == 0
            puzzle = TASK.make(image, np.random.default_rng(seed), partner=partner, positive=positive, **knobs)
            assert puzzle.answer == ("yes" if positive else "no") and puzzle.params["positive"] is positive
            views = puzzle.params["views"]
            assert [v["source"] for v in views] == (["image", "image"] if positive else ["image", "partner"])
            for shown, view in zip(puzzle.images, views):
                true_source = image if view["source"] == "image" else partner
                other = partner if true_source is image else image
                left, top, right, bottom = view["crop"]
                assert 0 <= left < right <= true_source.width and 0 <= top < bottom <= true_source.height
                # Rebuilt from params alone, the view is the same pixels: the params say everything done to it.
                assert render_view(true_source, view, puzzle.params["size"]).tobytes() == shown.tobytes()
                # Independently: the shown view follows the structure of that region of its own source.
                gray = _gray(np.asarray(shown))
                own = _ncc(gray, _region(true_source, view, shown.width))
                assert own > 0.5, (name, seed, own)
                assert own > _ncc(gray, _region(other, view, shown.width))


def test_strong_preset_crops_smaller_and_augments_more_often_than_normal() -> None:
    image, partner = photos()["coffee"], photos()["rocket"]

    def stats(difficulty: str) -> tuple[float, float]:
        areas, gray = [], 0
        for seed in range(60):
            knobs = TASK.knobs_for(difficulty)
            puzzle = TASK.make(image, np.random.default_rng(seed), partner=partner, positive=True, **knobs)
            for view in puzzle.params["views"]:
                left, top, right, bottom = view["crop"]
                areas.append((right - left) * (bottom - top) / (image.width * image.height))
                gray += view["grayscale"]
        return float(np.mean(areas)), gray / len(areas)

    normal, strong = stats("normal"), stats("strong")
    assert TASK.knobs_for("normal") == TASK.knobs_for("medium") and TASK.knobs_for("strong") == TASK.knobs_for("hard")
    assert strong[0] < 0.3 < normal[0]
    assert strong[1] > 0.6 > 0.35 > normal[1]


def test_negatives_need_a_different_picture() -> None:
    image = photos()["chelsea"]
    with pytest.raises(ValueError, match="partner"):
        TASK.make(image, np.random.default_rng(0), positive=False)
    with pytest.raises(ValueError, match="same content id"):
        TASK.make(image, np.random.default_rng(0), partner=image, positive=False)
    # A lossless re-encoding of the same photo (as another benchmark row would hold it) is the same picture.
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    copy = Image.open(io.BytesIO(buffer.getvalue()))
    with pytest.raises(ValueError, match="same content id"):
        TASK.make(image, np.random.default_rng(0), partner=copy, positive=False)
    # A positive needs no partner and ignores one given.
    assert TASK.make(image, np.random.default_rng(0), positive=True).answer == "yes"


def test_positive_none_is_drawn_about_half_and_half() -> None:
    image, partner = photos()["chelsea"].resize((120, 80)), photos()["coffee"].resize((120, 80))
    counts = Counter(TASK.make(image, np.random.default_rng(s), partner=partner).answer for s in range(240))
    assert 90 <= counts["yes"] <= 150 and counts["yes"] + counts["no"] == 240


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard", "normal", "strong"])
def test_presets_are_deterministic_and_well_formed(difficulty: str) -> None:
    knobs = TASK.knobs_for(difficulty)
    shots = ordinary()
    for i, image in enumerate(shots):
        partner = shots[(i + 1) % len(shots)]
        first = TASK.make(image, np.random.default_rng(9), partner=partner, **knobs)
        again = TASK.make(image, np.random.default_rng(9), partner=partner, **knobs)
        assert puzzle_bytes(first) == puzzle_bytes(again)
        assert first.prompt.count("<image>") == 2 == len(first.images)
        assert first.prompt.endswith(FORMAT_INSTRUCTION)
        assert {im.size for im in first.images} == {(224, 224)} and {im.mode for im in first.images} == {"RGB"}
        json.dumps(first.params)
        assert TASK.score(first.answer, first.answer, first.params).acc == 1.0


def test_view_size_knob() -> None:
    puzzle = TASK.make(photos()["rocket"], np.random.default_rng(0), positive=True, size=336)
    assert {im.size for im in puzzle.images} == {(336, 336)}


def test_labels_and_scoring() -> None:
    params = {"positive": True}
    labels = TASK.labels(params)
    assert set(labels) == {"yes", "no"}
    assert TASK.score("Yes.", "yes", params).acc == 1.0
    assert TASK.score("same", "yes", params).acc == 1.0
    assert TASK.score("different", "no", params).acc == 1.0
    assert TASK.score("different", "yes", params).acc == 0.0
    assert TASK.score("yes or no", "yes", params).acc == 0.0


def test_skips_with_stable_reasons() -> None:
    with pytest.raises(PuzzleSkip, match="^image under 56 px$"):
        TASK.make(photos()["tiny"], np.random.default_rng(0), positive=True)
    with pytest.raises(PuzzleSkip, match="^partner under 56 px$"):
        TASK.make(photos()["coffee"], np.random.default_rng(0), partner=photos()["tiny"], positive=False)
    with pytest.raises(PuzzleSkip, match="^flat partner$"):
        TASK.make(photos()["coffee"], np.random.default_rng(0), partner=flat(), positive=False)
    with pytest.raises(PuzzleSkip, match="^flat image$"):
        TASK.make(flat(), np.random.default_rng(0), positive=True)


def test_odd_shapes_still_give_square_views() -> None:
    for name in ("wide", "tall"):
        puzzle = TASK.make(photos()[name], np.random.default_rng(2), partner=photos()["astronaut"], positive=False)
        assert {im.size for im in puzzle.images} == {(224, 224)}
