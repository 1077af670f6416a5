"""The verl reward function: per-task tables, configuration errors, kwargs, fuzzing of its promises."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from verl_ext import reward
from verl_ext.reward import RESULT_KEYS, RewardConfig, compute_score
from verl_ext.tasks import TASKS, Puzzle, PuzzleSkip, Task

THINK = "<think>I compare the images.</think>\n"


def respond(answer: str, think: bool = True) -> str:
    return f"{THINK if think else ''}<answer>{answer}</answer>"


# ------------------------------------------------------------------------------ a task of our own
# Independent of the real tasks: pins the reward's contract with the Task base class.


class ToyLabelTask(Task):
    name = "toy_label"

    def labels(self, params: Mapping[str, Any]) -> Mapping[str, Sequence[str]]:
        return {c: [f"choice {c}"] for c in params["choices"]}


class ToyPermutationTask(Task):
    name = "toy_permutation"
    answer_kind = "permutation"


class BrokenTask(Task):
    name = "toy_broken"

    def score(self, answer: str, ground_truth: str, params: Mapping[str, Any]):  # type: ignore[override]
        raise RuntimeError("bug in a task")


@pytest.fixture
def toy_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    for task in (ToyLabelTask(), ToyPermutationTask(), BrokenTask()):
        monkeypatch.setitem(TASKS, task.name, task)


TOY_LABEL = {"task": "toy_label", "params": json.dumps({"choices": ["red", "green", "blue"]})}
TOY_PERM = {"task": "toy_permutation", "params": json.dumps({"num_tiles": 4})}

# Default weights: acc 0.9, format 0.1, partial scale 0.2.
TOY_CASES = [
    # kind, response, truth, expected (score, acc, format, partial, answered)
    ("right", respond("green"), "green", (1.0, 1, 1, 1, 1)),
    ("alias", respond("Choice Green."), "green", (1.0, 1, 1, 1, 1)),
    ("wrong", respond("red"), "green", (0.1, 0, 1, 0, 1)),
    ("ambiguous", respond("green or red"), "green", (0.1, 0, 1, 0, 1)),
    ("every label", respond("red, green, blue"), "green", (0.1, 0, 1, 0, 1)),
    ("no think", respond("green", think=False), "green", (0.9, 1, 0, 1, 1)),
    ("no tags", "green", "green", (0.0, 0, 0, 0, 0)),
    ("two answers", THINK + "<answer>red</answer><answer>green</answer>", "green", (0.0, 0, 0, 0, 0)),
    ("empty", "", "green", (0.0, 0, 0, 0, 0)),
    ("perm right", respond("2,4,1,3"), "2,4,1,3", (1.0, 1, 1, 1, 1)),
    ("perm partial", respond("2,4,3,1"), "2,4,1,3", (0.1 + 0.9 * 0.2 * 0.5, 0, 1, 0.5, 1)),
    ("perm all wrong", respond("1,2,3,4"), "2,4,1,3", (0.1, 0, 1, 0, 1)),
    ("perm repeated", respond("2,2,2,2"), "2,4,1,3", (0.1, 0, 1, 0, 1)),
    ("perm hedge", respond("2,4,1,3 or 2,4,3,1"), "2,4,1,3", (0.1, 0, 1, 0, 1)),
    ("perm short", respond("2,4,1"), "2,4,1,3", (0.1, 0, 1, 0, 1)),
]


@pytest.mark.parametrize("kind, response, truth, expected", TOY_CASES, ids=[c[0] for c in TOY_CASES])
def test_toy_tasks(toy_tasks: None, kind: str, response: str, truth: str, expected: tuple) -> None:
    extra_info = TOY_PERM if kind.startswith("perm") else TOY_LABEL
    result = compute_score("ssl_toy", response, truth, extra_info)
    assert tuple(result) == RESULT_KEYS
    assert result["score"] == pytest.approx(expected[0])
    assert (result["acc"], result["format"], result["partial"], result["answered"]) == pytest.approx(expected[1:])


# ---------------------------------------------------------------------------------- configuration


def test_missing_or_unknown_task_raises_naming_the_valid_tasks() -> None:
    for extra_info in (None, {}, {"params": "{}"}, {"task": "rotatoin"}, {"task": None}):
        with pytest.raises(ValueError) as error:
            compute_score("ssl_rotation", respond("90"), "90", extra_info)
        assert "task" in str(error.value)
    with pytest.raises(ValueError, match="rotation"):
        compute_score("ssl_rotation", respond("90"), "90", {"task": "rotatoin"})


def test_data_source_is_not_used_to_pick_the_task(toy_tasks: None) -> None:
    assert compute_score("ssl_rotation", respond("green"), "green", TOY_LABEL)["acc"] == 1.0


@pytest.mark.parametrize(
    "extra_info",
    [
        {"task": "toy_label", "params": "{not json"},
        {"task": "toy_label", "params": "[1, 2]"},
        {"task": "toy_label", "params": 3},
        {"task": "toy_permutation", "params": "{}"},
    ],
)
def test_unreadable_params_raise(toy_tasks: None, extra_info: dict) -> None:
    with pytest.raises(ValueError, match="params"):
        compute_score("ssl_toy", respond("x"), "x", extra_info)


def test_params_may_be_a_dict(toy_tasks: None) -> None:
    extra_info = {"task": "toy_label", "params": {"choices": ["a", "b"]}}
    assert compute_score("ssl_toy", respond("b"), "b", extra_info)["acc"] == 1.0


def test_missing_ground_truth_raises(toy_tasks: None) -> None:
    with pytest.raises(ValueError, match="ground_truth"):
        compute_score("ssl_toy", respond("b"), None, TOY_LABEL)


def test_task_errors_on_model_output_score_zero_and_are_logged(toy_tasks: None, caplog) -> None:
    result = compute_score("ssl_toy", respond("x"), "x", {"task": "toy_broken", "params": "{}"})
    assert result["acc"] == 0.0 and result["format"] == 1.0
    assert "bug in a task" in caplog.text


# ------------------------------------------------------------------------------------ reward kwargs


def test_weights(toy_tasks: None) -> None:
    right_no_think = respond("green", think=False)
    assert compute_score("s", right_no_think, "green", TOY_LABEL, format_weight=0.5, acc_weight=0.5)["score"] == 0.5
    assert compute_score("s", right_no_think, "green", TOY_LABEL, format_weight=0)["score"] == 1.0
    # weights need not sum to 1: the score is normalised by their sum
    assert compute_score("s", respond("red"), "green", TOY_LABEL, format_weight=1, acc_weight=3)["score"] == 0.25


def test_require_think_false_accepts_a_bare_answer(toy_tasks: None) -> None:
    result = compute_score("s", "<answer>green</answer>", "green", TOY_LABEL, require_think=False)
    assert result["format"] == 1.0 and result["score"] == 1.0


def test_format_gate_zeroes_a_right_answer_in_the_wrong_format(toy_tasks: None) -> None:
    result = compute_score("s", respond("green", think=False), "green", TOY_LABEL, format_gate=True)
    assert result["score"] == 0.0 and result["acc"] == 1.0


def test_partial_scale(toy_tasks: None) -> None:
    half = respond("2,4,3,1")
    assert compute_score("s", half, "2,4,1,3", TOY_PERM, partial_scale=1.0, format_weight=0)["score"] == 0.5
    assert compute_score("s", half, "2,4,1,3", TOY_PERM, partial_scale=0.0, format_weight=0)["score"] == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"format_weigth": 0.1},
        {"format_weight": -1},
        {"format_weight": float("nan")},
        {"acc_weight": 0, "format_weight": 0},
        {"partial_scale": 2},
        {"require_think": "yes"},
        {"format_gate": 1},
        {"acc_weight": [1]},
        {"acc_weight": True},
    ],
)
def test_bad_kwargs_raise(toy_tasks: None, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="reward kwarg"):
        compute_score("s", respond("green"), "green", TOY_LABEL, **kwargs)


def test_verl_router_kwargs_are_ignored(toy_tasks: None) -> None:
    result = compute_score(
        "s", respond("green"), "green", TOY_LABEL, reward_router_address=None, reward_model_tokenizer=None
    )
    assert result["score"] == 1.0


def test_default_config_is_documented_choice() -> None:
    config = RewardConfig()
    assert (config.acc_weight, config.format_weight, config.partial_scale) == (0.9, 0.1, 0.2)
    assert config.require_think and not config.format_gate


# ---------------------------------------------------------------------------------- the real tasks


def photo_like(seed: int, size: tuple[int, int] = (448, 384)) -> Image.Image:
    """A textured, non-flat RGB image: smooth colour blobs plus fine noise (no two seeds alike)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((6, 7, 3))
    w, h = size
    big = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC), float)
    noise = rng.normal(0, 18, (h, w, 3))
    return Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8))


def make_puzzle(task: Task, difficulty: str, seed: int = 0) -> Puzzle:
    for attempt in range(10):
        partner = photo_like(1000 + seed + attempt) if task.needs_partner else None
        try:
            return task.make(
                photo_like(seed + attempt),
                np.random.default_rng(seed + attempt),
                partner=partner,
                **task.knobs_for(difficulty),
            )
        except PuzzleSkip:
            continue
    pytest.skip(f"{task.name} {difficulty}: no puzzle from synthetic images")


def real_task_cases(kind: str | None = None) -> list[tuple[str, str]]:
    return [
        (name, difficulty)
        for name, task in sorted(TASKS.items())
        if kind is None or task.answer_kind == kind
        for difficulty in task.presets
    ]


def other_label(task: Task, puzzle: Puzzle) -> str:
    return next(label for label in task.labels(puzzle.params) if label != puzzle.answer)


def swap_two(answer: str) -> str:
    tiles = answer.split(",")
    tiles[0], tiles[1] = tiles[1], tiles[0]
    return ",".join(tiles)


def table_for(task: Task, puzzle: Puzzle) -> list[tuple[str, str, float, float, float]]:
    """(kind, response, acc, format, partial) rows for one real puzzle."""
    truth = puzzle.answer
    rows = [
        ("right", respond(truth), 1, 1, 1),
        ("right, no think", respond(truth, think=False), 1, 0, 1),
        ("right, text after the answer", respond(truth) + " Done.", 0, 0, 0),
        ("badly formatted", truth, 0, 0, 0),
        ("two answer blocks", THINK + f"<answer>{truth}</answer><answer>{truth}</answer>", 0, 0, 0),
        ("tag flood", "<think>" * 10_000 + respond(truth), 0, 0, 0),
        ("binary junk", "\x00\xff" * 1000, 0, 0, 0),
    ]
    if task.answer_kind == "permutation":
        n = int(puzzle.params["num_tiles"])
        tiles = truth.split(",")
        identity = ",".join(str(i) for i in range(1, n + 1))
        rows += [
            ("right, spaced in brackets", respond("[" + " ".join(tiles) + "]"), 1, 1, 1),
            ("partially right", respond(swap_two(truth)), 0, 1, (n - 2) / n),
            ("not a permutation", respond(",".join(["1"] * n)), 0, 1, 0),
            ("too short", respond(",".join(tiles[:-1])), 0, 1, 0),
            ("ambiguous", respond(f"{truth} or {swap_two(truth)}"), 0, 1, 0),
        ]
        if identity != truth:
            right = sum(a == b for a, b in zip(identity.split(","), tiles))
            rows.append(("wrong", respond(identity), 0, 1, right / n))
    else:
        labels = list(task.labels(puzzle.params))
        wrong = other_label(task, puzzle)
        rows += [
            ("right, shouted", respond(truth.upper() + "."), 1, 1, 1),
            ("wrong", respond(wrong), 0, 1, 0),
            ("ambiguous", respond(f"{truth} or {wrong}"), 0, 1, 0),
            ("ambiguous slash", respond(f"{truth}/{wrong}"), 0, 1, 0),
            ("every label", respond(", ".join(labels)), 0, 1, 0),
        ]
    return rows


@pytest.mark.parametrize("name, difficulty", real_task_cases())
def test_real_task_table(name: str, difficulty: str) -> None:
    task = TASKS[name]
    puzzle = make_puzzle(task, difficulty)
    extra_info = {"task": name, "params": json.dumps(puzzle.params)}
    for kind, response, acc, fmt, partial in table_for(task, puzzle):
        result = compute_score(f"ssl_{name}", response, puzzle.answer, extra_info)
        got = (result["acc"], result["format"], result["partial"])
        assert got == pytest.approx((acc, fmt, partial)), f"{name}/{difficulty}: {kind}: {response[:80]!r} -> {result}"
        assert 0.0 <= result["score"] <= 1.0


SPELLINGS = {
    # task: (ground truth, answers that must count as right, answers that must not)
    "rotation": ("90", ["90°", "90 degrees", "90deg", " 90. ", "-270"], ["-90", "0 or 90", "90 or 180", "270"]),
    "position": (
        "top-left",
        ["Top Left", "TOP-LEFT", "top_left", "upper left"],
        ["top-left/top-right", "top-right", "left"],
    ),
    "contrastive": ("yes", ["Yes", "YES.", "same"], ["yes or no", "no", "not the same", "yes/no"]),
    "inpainting": ("B", ["b", "(B)", "Option B"], ["B or C", "A, B, C, D", "C"]),
}


@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_real_task_spellings(name: str) -> None:
    if name not in TASKS:
        pytest.skip(f"task {name} not registered")
    task = TASKS[name]
    truth, right, wrong = SPELLINGS[name]
    for attempt in range(40):
        puzzle = make_puzzle(task, task.default_difficulty, seed=attempt)
        if puzzle.answer == truth:
            break
    else:
        pytest.skip(f"no {name} puzzle with answer {truth!r}")
    extra_info = {"task": name, "params": json.dumps(puzzle.params)}
    for answer in right:
        assert compute_score("s", respond(answer), truth, extra_info)["acc"] == 1.0, answer
    for answer in wrong:
        assert compute_score("s", respond(answer), truth, extra_info)["acc"] == 0.0, answer


def flip_spellings(truth: str) -> tuple[list[str], list[str]]:
    tile, direction = truth.split()
    other = "vertical" if direction == "horizontal" else "horizontal"
    right = [truth.upper(), f"tile {tile}, {direction}", f"{tile}{direction[0]}", f"{tile} {direction}ly"]
    wrong = [f"{tile} {other}", tile, direction, f"{truth} or {tile} {other}", f"{int(tile) + 1} {direction}"]
    return right, wrong


def letter_spellings(truth: str) -> tuple[list[str], list[str]]:
    other = "B" if truth != "B" else "A"
    return [truth.lower(), f"({truth})", f"Option {truth}."], [other, f"{truth} or {other}", f"{truth}/{other}", ""]


RELATIVE_SPELLINGS = {"flip": flip_spellings, "correspondence": letter_spellings, "inpainting": letter_spellings}


@pytest.mark.parametrize("name", sorted(RELATIVE_SPELLINGS))
def test_real_task_spellings_relative_to_the_truth(name: str) -> None:
    if name not in TASKS:
        pytest.skip(f"task {name} not registered")
    task = TASKS[name]
    puzzle = make_puzzle(task, task.default_difficulty)
    right, wrong = RELATIVE_SPELLINGS[name](puzzle.answer)
    extra_info = {"task": name, "params": json.dumps(puzzle.params)}
    for answer in right:
        assert compute_score("s", respond(answer), puzzle.answer, extra_info)["acc"] == 1.0, answer
    for answer in wrong:
        assert compute_score("s", respond(answer), puzzle.answer, extra_info)["acc"] == 0.0, answer


@pytest.mark.parametrize("name, difficulty", real_task_cases("label"))
def test_real_task_labels_never_collide(name: str, difficulty: str) -> None:
    """No spelling of one label normalises to a spelling of another (it would make both unanswerable)."""
    from verl_ext.answers import label_index

    task = TASKS[name]
    puzzle = make_puzzle(task, difficulty)
    index = label_index(task.labels(json.loads(json.dumps(puzzle.params))))
    assert all(isinstance(v, str) for v in index.values()), index


# ------------------------------------------------------------------------------------ properties

extra_infos = st.sampled_from([TOY_LABEL, TOY_PERM, {"task": "toy_label", "params": {"choices": []}}])
responses = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    st.none(),
    st.integers(),
    st.lists(
        st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "green", "2,4,1,3", " ", "x"]), max_size=12
    ).map("".join),
)
kwargs_strategy = st.fixed_dictionaries(
    {},
    optional={
        "acc_weight": st.floats(0.01, 5),
        "format_weight": st.floats(0, 5),
        "partial_scale": st.floats(0, 1),
        "require_think": st.booleans(),
        "format_gate": st.booleans(),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    response=responses,
    extra_info=extra_infos,
    truth=st.sampled_from(["green", "2,4,1,3", "", "red"]),
    kwargs=kwargs_strategy,
)
def test_compute_score_promises(toy_tasks: None, response: Any, extra_info: dict, truth: str, kwargs: dict) -> None:
    start = time.perf_counter()
    result = compute_score("ssl_toy", response, truth, extra_info, **kwargs)
    elapsed = time.perf_counter() - start
    assert tuple(result) == RESULT_KEYS
    assert all(isinstance(v, float) for v in result.values())
    assert 0.0 <= result["score"] <= 1.0
    assert result["acc"] in (0.0, 1.0) and result["format"] in (0.0, 1.0) and result["answered"] in (0.0, 1.0)
    assert 0.0 <= result["partial"] <= 1.0
    assert elapsed < 1.0  # generous: the benchmark has the real figure (tens of microseconds)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_huge_outputs_are_fast_for_every_real_task(name: str) -> None:
    task = TASKS[name]
    puzzle = make_puzzle(task, task.default_difficulty)
    extra_info = {"task": name, "params": json.dumps(puzzle.params)}
    for response in (
        "<" * 1_000_000,
        THINK + "<answer>" + "1," * 500_000 + "</answer>",
        "a" * (reward.__dict__.get("MAX_RESPONSE_CHARS", 200_000) - 100) + respond(puzzle.answer),
    ):
        start = time.perf_counter()
        result = compute_score("s", response, puzzle.answer, extra_info)
        assert time.perf_counter() - start < 1.0
        assert tuple(result) == RESULT_KEYS
