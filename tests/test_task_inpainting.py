"""Inpainting puzzles on real photographs: the true option is the removed region, distractors differ visibly."""

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
from verl_ext.tasks.inpainting import FILLS, InpaintingTask, option_pixels, visible_difference

TASK = InpaintingTask()
# Arrays of the ordinary photos, as the inverse checks compare pixels.
PHOTOS = {name: np.asarray(photos()[name]) for name in ("astronaut", "chelsea", "coffee", "rocket")}


def _odd_shapes() -> dict[str, Image.Image]:
    """Shapes a benchmark can throw at a task: tall, wide, grayscale, with alpha."""
    shots = photos()
    return {
        "tall": shots["tall"],
        "wide": shots["wide"],
        "gray": shots["astronaut"].convert("L"),
        "rgba": shots["coffee"].convert("RGBA"),
    }


def _make(image: Image.Image, seed: int, difficulty: str = "medium"):
    return TASK.make(image, np.random.default_rng(seed), **TASK.knobs_for(difficulty))


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_true_option_is_the_removed_region(name: str, difficulty: str) -> None:
    source = PHOTOS[name]
    for seed in range(4):
        puzzle = _make(Image.fromarray(source), seed, difficulty)
        holed = np.asarray(puzzle.images[0])
        x0, y0, x1, y1 = puzzle.params["hole"]
        fill = puzzle.params["fill"]
        assert fill[0] in FILLS and (holed[y0:y1, x0:x1] == fill).all()
        assert f"RGB {fill[0]}, {fill[1]}, {fill[2]}" in puzzle.prompt
        outside = np.ones(holed.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert (holed[outside] == source[outside]).all()
        # Pasting the option named by the answer back into the hole restores the photograph pixel for pixel.
        letter_index = ord(puzzle.answer) - ord("A")
        restored = holed.copy()
        restored[y0:y1, x0:x1] = np.asarray(puzzle.images[1 + letter_index])
        assert (restored == source).all()
        assert puzzle.params["options"][letter_index]["kind"] == "true"


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_every_option_is_recreated_from_params_and_differs_visibly(difficulty: str) -> None:
    knobs = TASK.knobs_for(difficulty)
    for name, source in PHOTOS.items():
        puzzle = _make(Image.fromarray(source), 11, difficulty)
        options = puzzle.params["options"]
        count = knobs["num_regions"] * knobs["num_orientations"]
        assert len(options) == len(puzzle.images) - 1 == count == puzzle.params["num_options"]
        assert [o["label"] for o in options] == [chr(ord("A") + i) for i in range(len(options))]
        pixels = [np.asarray(im) for im in puzzle.images[1:]]
        for option, shown in zip(options, pixels):
            assert (option_pixels(source, option) == shown).all()
            assert option["region"] == "true" or option["region"] in knobs["region_kinds"]
        for i in range(len(pixels)):
            for j in range(i):
                assert visible_difference(pixels[i], pixels[j]) >= 12.0, (name, i, j)
        assert sum(o["kind"] == "true" for o in options) == 1


def test_options_are_every_region_in_every_orientation() -> None:
    """The regions x orientations grid: each region shown in the same set of orientations, the truth's too."""
    seen = Counter()
    for seed in range(30):
        puzzle = _make(Image.fromarray(PHOTOS["chelsea"]), seed, "medium")
        hole = puzzle.params["hole"]
        side = hole[2] - hole[0]
        regions: dict[tuple, set] = {}
        for option in puzzle.params["options"]:
            region, box = option["region"], option["box"]
            regions.setdefault(tuple(box), set()).add((option["rot90"], option["flip"]))
            seen[option["kind"]] += 1
            dx, dy = box[0] - hole[0], box[1] - hole[1]
            overlaps = abs(dx) < side and abs(dy) < side
            if region == "true":
                assert box == hole
            elif region == "shift_in":
                assert overlaps and (dx, dy) != (0, 0) and [dx, dy] == option["offset"]
            elif region == "shift_out":
                assert not overlaps and max(abs(dx), abs(dy)) <= 1.25 * side + 1
            else:
                assert region == "elsewhere" and not overlaps
            turned = "rotate" in option["kind"]
            mirrored = "flip" in option["kind"]
            assert (option["rot90"] != 0) == turned and (option["flip"] is not None) == mirrored
        assert len(regions) == 2 and len({frozenset(v) for v in regions.values()}) == 1
        assert all((0, None) in v and len(v) == 2 for v in regions.values())
    assert {"true", "rotate", "flip", "shift_in", "shift_out", "elsewhere"} <= set(seen)
    assert {"shift_in+rotate", "elsewhere+flip"} <= set(seen)


def test_options_alone_do_not_reveal_the_answer() -> None:
    """A solver that ignores the picture and looks only at how options relate (same region turned, or shared
    content in the same orientation) does no better than chance: no option is the hub of the set."""
    for difficulty in ("medium", "hard"):
        rng = np.random.default_rng(4)
        for _ in range(40):
            options = TASK.make(Image.fromarray(PHOTOS["coffee"]), rng, **TASK.knobs_for(difficulty)).params["options"]
            links = []
            for a in options:
                turned = [b for b in options if b is not a and b["box"] == a["box"]]
                shared = [
                    b
                    for b in options
                    if b["box"] != a["box"]
                    and (b["rot90"], b["flip"]) == (a["rot90"], a["flip"])
                    and abs(b["box"][0] - a["box"][0]) < a["box"][2] - a["box"][0]
                    and abs(b["box"][1] - a["box"][1]) < a["box"][3] - a["box"][1]
                ]
                links.append(len(turned) + len(shared))
            assert len(set(links)) == 1, links  # every option is linked to as many others as the truth


def test_prompt_and_params() -> None:
    puzzle = _make(Image.fromarray(PHOTOS["coffee"]), 2, "hard")
    assert puzzle.prompt.count("<image>") == len(puzzle.images) == 7
    assert puzzle.prompt.endswith(FORMAT_INSTRUCTION)
    assert "grey" in puzzle.prompt and "Option F: <image>" in puzzle.prompt and "rotated or mirrored" in puzzle.prompt
    assert "rotated" not in _make(Image.fromarray(PHOTOS["coffee"]), 2, "easy").prompt
    assert json.loads(json.dumps(puzzle.params)) == puzzle.params
    assert puzzle.params["image_size"] == [600, 400]
    side = puzzle.params["hole"][2] - puzzle.params["hole"][0]
    assert side == round(0.2 * 400)
    assert all(im.mode == "RGB" and im.size == (side, side) for im in puzzle.images[1:])


def test_deterministic_for_a_seed() -> None:
    image = Image.fromarray(PHOTOS["astronaut"])
    a, b, c = _make(image, 5), _make(image, 5), _make(image, 6)
    assert puzzle_bytes(a) == puzzle_bytes(b)
    assert a.params != c.params


@pytest.mark.parametrize("shape", ["tall", "wide", "gray", "rgba"])
def test_odd_shapes_and_modes(shape: str) -> None:
    image = _odd_shapes()[shape]
    for difficulty in ("easy", "medium", "hard"):
        puzzle = _make(image, 3, difficulty)
        source = np.asarray(image.convert("RGB"))
        x0, y0, x1, y1 = puzzle.params["hole"]
        assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
        letter_index = ord(puzzle.answer) - ord("A")
        assert (np.asarray(puzzle.images[1 + letter_index]) == source[y0:y1, x0:x1]).all()


def test_skips_with_reasons() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(PuzzleSkip, match="flat region"):
        TASK.make(flat(), rng)
    # A wall with sensor noise: its variants differ only by noise, which a viewer cannot tell apart.
    noisy = np.clip(rng.normal(128, 8, (300, 400, 3)), 0, 255).astype(np.uint8)
    with pytest.raises(PuzzleSkip, match="flat region"):
        TASK.make(Image.fromarray(noisy), rng)
    with pytest.raises(PuzzleSkip, match="image too small"):
        TASK.make(photos()["tiny"], rng)
    # A small but usable picture gets the smallest hole instead of a skip.
    puzzle = TASK.make(Image.fromarray(PHOTOS["astronaut"][100:190, 150:300]), rng, **TASK.knobs_for("hard"))
    assert puzzle.params["hole"][2] - puzzle.params["hole"][0] == 28


def test_bad_knobs_are_configuration_errors() -> None:
    image, rng = Image.fromarray(PHOTOS["chelsea"]), np.random.default_rng(0)
    for knobs in (
        {"num_regions": 1, "num_orientations": 1},
        {"num_regions": 3, "num_orientations": 3},
        {"num_regions": 0, "num_orientations": 4},
        {"hole_fraction": 0.7},
        {"region_kinds": ("warp",)},
        {"region_kinds": ()},
        {"orientation_kinds": ("shear",)},
        {"num_orientations": 6},
        {"orientation_kinds": ("flip",), "num_orientations": 4},
        {"shift": (0.5, 1.2)},
    ):
        with pytest.raises(ValueError):
            TASK.make(image, rng, **knobs)


def test_answers_roughly_uniform() -> None:
    image = Image.fromarray(PHOTOS["chelsea"])
    rng = np.random.default_rng(123)
    counts = Counter(TASK.make(image, rng, **TASK.knobs_for("medium")).answer for _ in range(400))
    assert set(counts) == set("ABCD")
    assert all(60 <= c <= 140 for c in counts.values()), counts


def test_labels_and_scoring() -> None:
    puzzle = _make(Image.fromarray(PHOTOS["rocket"]), 1, "hard")
    labels = TASK.labels(puzzle.params)
    assert list(labels) == list("ABCDEF")
    # Every spelling names exactly one letter after the reward's normalisation.
    owners: dict[str, set[str]] = {}
    for canonical, aliases in labels.items():
        for spelling in (canonical, *aliases):
            owners.setdefault(normalize(spelling), set()).add(canonical)
    assert all(len(names) == 1 for names in owners.values()), owners
    truth = puzzle.answer
    wrong = next(letter for letter in labels if letter != truth)
    for said in (truth, truth.lower(), f"({truth})", f"Option {truth}", f"option {truth.lower()}."):
        assert TASK.score(said, truth, puzzle.params).acc == 1.0, said
    for said in (wrong, f"{truth} or {wrong}", "G", "", "the grey one"):
        assert TASK.score(said, truth, puzzle.params).acc == 0.0, said


def test_registered() -> None:
    assert isinstance(get_task("inpainting"), InpaintingTask)


def test_fill_stands_out_from_grey_surroundings() -> None:
    rng = np.random.default_rng(0)
    # A mid-grey textured wall: a mid-grey hole would hardly show, so a darker or lighter grey is used.
    wall = np.clip(128 + rng.normal(0, 25, (60, 80, 1)), 0, 255).astype(np.uint8).repeat(5, 0).repeat(5, 1)
    wall = np.repeat(wall, 3, axis=2)
    puzzle = TASK.make(Image.fromarray(wall), rng)
    assert puzzle.params["fill"][0] != 128
    # Where mid grey stands out (a red saucer, a brown table), it is kept.
    fills = Counter(_make(Image.fromarray(PHOTOS["coffee"]), seed).params["fill"][0] for seed in range(20))
    assert fills[128] >= 15, fills
