"""Answer parsing: response structure, normalisation, label and permutation scoring."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_ext.answers import (
    MAX_ANSWER_CHARS,
    MAX_RESPONSE_CHARS,
    normalize,
    parse_permutation,
    parse_response,
    score_label,
    score_permutation,
)
from verl_ext.tasks.base import AnswerScore

# ----------------------------------------------------------------------------------------- structure

GOOD = [
    ("<think>look</think><answer>90</answer>", "90"),
    ("  <think>\nlook\n</think>\n\n<answer> 90 </answer>\n ", "90"),
    ("<THINK>a</THINK><Answer>top-left</ANSWER>", "top-left"),
    ("<think></think><answer></answer>", ""),
    ("<think>a < b and b > c</think><answer>1,2</answer>", "1,2"),
]


@pytest.mark.parametrize("response, answer", GOOD)
def test_well_formed_responses_pass_format_and_yield_the_answer(response: str, answer: str) -> None:
    parsed = parse_response(response)
    assert parsed.format_ok and parsed.has_think
    assert parsed.answer == answer


# response, answer that is still readable (None: none), format_ok with require_think=True
BAD = [
    ("", None),
    ("90", None),
    ("<answer>90</answer>", "90"),  # no think block: answer readable, format wrong
    ("I think so. <answer>90</answer>", "90"),
    ("<think>a</think>\n<answer>90</answer> because", None),  # text after the answer
    ("<think>a</think><answer>0</answer><answer>90</answer>", None),  # two answers: a hedge
    ("<think>a</think><answer>0<answer>90</answer>", None),  # nested / unbalanced
    ("<think>a</think><answer>90", None),  # unclosed
    ("<think>a</think>90</answer>", None),
    ("</answer><answer>90</answer>", None),
    ("<think>a<think>b</think></think><answer>90</answer>", None),  # five tags
    ("<think>a</think><think>b</think><answer>90</answer>", None),
    ("preamble <think>a</think><answer>90</answer>", "90"),  # text before think
    ("<think>a</think> and more <answer>90</answer>", "90"),  # text between blocks
    ("<think>a<answer>90</answer>", "90"),  # think never closed
    ("</think><think><answer>90</answer>", "90"),  # reversed think tags
    ("<answer>90</answer><think>a</think>", None),  # think after answer
    ("<think>a</think><answer>" + "9" * (MAX_ANSWER_CHARS + 1) + "</answer>", None),
    ("< answer >90</ answer >", None),  # spaces inside tags are not tags
]


@pytest.mark.parametrize("response, answer", BAD)
def test_badly_formed_responses_fail_format(response: str, answer: str | None) -> None:
    parsed = parse_response(response)
    assert not parsed.format_ok
    assert parsed.answer == answer


def test_think_block_can_be_made_optional() -> None:
    assert parse_response("<answer>90</answer>", require_think=False).format_ok
    assert parse_response("reasoning first <answer>90</answer>", require_think=False).format_ok
    assert parse_response("<think>a</think><answer>90</answer>", require_think=False).format_ok
    # a think block that is there must still be well placed
    assert not parse_response("<think>a<answer>90</answer>", require_think=False).format_ok


@pytest.mark.parametrize(
    "response",
    [None, 42, 3.5, ["<answer>1</answer>"], {"a": 1}, object(), b"\xff\xfe\x00", bytearray(b"<answer>1</answer>")],
)
def test_non_string_responses_never_raise(response: object) -> None:
    parsed = parse_response(response)
    assert parsed.answer is None or isinstance(parsed.answer, str)


def test_bytes_are_decoded() -> None:
    assert parse_response(b"<think>\xff</think><answer>90</answer>").answer == "90"


def test_response_over_the_cap_gets_nothing() -> None:
    text = "<think>" + "a" * MAX_RESPONSE_CHARS + "</think><answer>90</answer>"
    parsed = parse_response(text)
    assert parsed.answer is None and not parsed.format_ok


ADVERSARIAL = {
    "tag flood": "<think>" * 200_000,
    "open brackets": "<" * 1_000_000,
    "near tags": "<thin<answe</answe" * 60_000,
    "one bracket then spaces": "<" + " " * 1_000_000,
    "binary": bytes(range(256)) * 4_000,
    "just under the cap, no tags": "x" * (MAX_RESPONSE_CHARS - 40) + "<answer>1</answer>",
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_responses_finish_fast(name: str) -> None:
    start = time.perf_counter()
    parse_response(ADVERSARIAL[name])
    # Generous bound (the benchmark measures the real figure, about a millisecond): catches only blow-ups.
    assert time.perf_counter() - start < 1.0


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.none(), st.integers()), st.booleans())
def test_parse_response_never_raises(response: object, require_think: bool) -> None:
    parsed = parse_response(response, require_think=require_think)
    assert parsed.answer is None or len(parsed.answer) <= MAX_ANSWER_CHARS
    if parsed.format_ok:
        assert parsed.answer is not None


tag_soup = st.lists(
    st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "90", " ", "\n", "x", "<", ">", "/"]),
    max_size=30,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(tag_soup)
def test_tag_soup_format_ok_only_for_the_one_shape(response: str) -> None:
    parsed = parse_response(response)
    if parsed.format_ok:
        stripped = response.strip()
        assert stripped.startswith("<think>") and stripped.endswith("</answer>")
        assert response.count("<think>") == response.count("</think>") == 1
        assert response.count("<answer>") == response.count("</answer>") == 1
        assert response.index("</think>") < response.index("<answer>")


# ------------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Top Left", "top left"),
        ("top-left", "top left"),
        (" TOP_LEFT. ", "top left"),
        ("top–left", "top left"),
        ("90°", "90"),
        ("90 degrees", "90"),
        ("90 Degree", "90"),
        ("90deg", "90"),
        ("90 deg.", "90"),
        ("\\boxed{90}", "90"),
        ("Answer: 90", "90"),
        ("The answer is 90.", "90"),
        ("-90", "-90"),
        ("−90", "-90"),  # unicode minus keeps its sign
        ("(A)", "a"),
        ('"yes"', "yes"),
        ("", ""),
        ("?!.", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


# -------------------------------------------------------------------------------------------- labels

ANGLES = {"0": ["360"], "90": ["-270"], "180": ["-180"], "270": ["-90"]}
CORNERS = {
    "top-left": ["upper left"],
    "top-right": ["upper right"],
    "bottom-left": ["lower left"],
    "bottom-right": ["lower right"],
}

LABEL_CASES = [
    # answer, truth, labels, acc
    ("90", "90", ANGLES, 1.0),
    ("90°", "90", ANGLES, 1.0),
    ("90 degrees", "90", ANGLES, 1.0),
    ("-270", "90", ANGLES, 1.0),
    ("−90", "270", ANGLES, 1.0),
    ("-90", "90", ANGLES, 0.0),  # sign matters
    ("270", "90", ANGLES, 0.0),
    ("0 or 90", "90", ANGLES, 0.0),
    ("90/180", "90", ANGLES, 0.0),
    ("0, 90, 180, 270", "90", ANGLES, 0.0),
    ("90 90", "90", ANGLES, 0.0),
    ("ninety", "90", ANGLES, 0.0),
    ("", "90", ANGLES, 0.0),
    ("Top Left", "top-left", CORNERS, 1.0),
    ("TOP-LEFT", "top-left", CORNERS, 1.0),
    ("upper-left", "top-left", CORNERS, 1.0),
    ("top-left/top-right", "top-left", CORNERS, 0.0),
    ("top-left or top-right", "top-left", CORNERS, 0.0),
    ("top-left top-right bottom-left bottom-right", "top-left", CORNERS, 0.0),
    ("left", "top-left", CORNERS, 0.0),
    ("bottom-right", "top-left", CORNERS, 0.0),
]


@pytest.mark.parametrize("answer, truth, labels, acc", LABEL_CASES)
def test_score_label(answer: str, truth: str, labels: dict, acc: float) -> None:
    assert score_label(answer, truth, labels) == AnswerScore(acc=acc, partial=acc)


def test_a_spelling_two_labels_share_matches_neither() -> None:
    labels = {"a": ["x"], "b": ["x"]}
    assert score_label("x", "a", labels).acc == 0.0
    assert score_label("a", "a", labels).acc == 1.0


@pytest.mark.parametrize("answer", [None, 90, b"90", "9" * (MAX_ANSWER_CHARS + 1)])
def test_score_label_junk(answer: object) -> None:
    assert score_label(answer, "90", ANGLES) == AnswerScore(0.0, 0.0)


# -------------------------------------------------------------------------------------- permutations

PERMUTATION_CASES = [
    # answer, acc, partial (truth 3,1,4,2)
    ("3,1,4,2", 1.0, 1.0),
    ("3, 1, 4, 2", 1.0, 1.0),
    ("[3 1 4 2]", 1.0, 1.0),
    ("(3;1;4;2)", 1.0, 1.0),
    ("3-1-4-2", 1.0, 1.0),
    ("3142", 1.0, 1.0),
    ("\\boxed{3,1,4,2}", 1.0, 1.0),
    ("3,1,2,4", 0.0, 0.5),
    ("1,3,4,2", 0.0, 0.5),
    ("1,2,3,4", 0.0, 0.0),
    ("1,1,1,1", 0.0, 0.0),  # not a permutation: SSL4RL gave this 0.25
    ("3,3,3,3", 0.0, 0.0),
    ("3,1,4", 0.0, 0.0),
    ("3,1,4,2,5", 0.0, 0.0),
    ("0,1,4,2", 0.0, 0.0),
    ("3,1,4,2 or 1,2,3,4", 0.0, 0.0),
    ("3/1/4/2", 0.0, 0.0),
    ("tile 3, tile 1, tile 4, tile 2", 0.0, 0.0),
    ("", 0.0, 0.0),
    ("-3,1,4,2", 1.0, 1.0),  # "-" is a separator, not a sign
]


@pytest.mark.parametrize("answer, acc, partial", PERMUTATION_CASES)
def test_score_permutation(answer: str, acc: float, partial: float) -> None:
    assert score_permutation(answer, "3,1,4,2", n=4) == AnswerScore(acc=acc, partial=partial)


def test_large_grids_need_separators() -> None:
    truth = ",".join(str(i) for i in range(16, 0, -1))
    assert score_permutation(truth.replace(",", " "), truth, n=16).acc == 1.0
    assert score_permutation(truth.replace(",", ""), truth, n=16).acc == 0.0


def test_bad_ground_truth_or_n_scores_zero() -> None:
    assert score_permutation("1,2", "1,1", n=2) == AnswerScore(0.0, 0.0)
    assert score_permutation("1,2", "1,2", n="two") == AnswerScore(0.0, 0.0)  # type: ignore[arg-type]
    assert score_permutation("1,2", "1,2", n=0) == AnswerScore(0.0, 0.0)


@settings(max_examples=300, deadline=None)
@given(st.permutations(list(range(1, 7))), st.permutations(list(range(1, 7))))
def test_partial_credit_is_the_fraction_of_placed_tiles(said: list[int], truth: list[int]) -> None:
    score = score_permutation(",".join(map(str, said)), ",".join(map(str, truth)), n=6)
    right = sum(a == b for a, b in zip(said, truth))
    assert score.partial == right / 6
    assert score.acc == (1.0 if said == truth else 0.0)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.none(), st.binary(max_size=50)), st.integers(-3, 40))
def test_scoring_never_raises(answer: object, n: int) -> None:
    for score in (score_permutation(answer, "1,2,3", n=n), score_label(answer, "90", ANGLES)):
        assert 0.0 <= score.partial <= 1.0 and score.acc in (0.0, 1.0)


def test_parse_permutation_rejects_huge_numbers() -> None:
    assert parse_permutation("1," + "9" * 500, 2) is None
