"""Table-driven tests of the answer-letter extraction used before VLMEvalKit's exact matching."""

from __future__ import annotations

import pytest

from verl_ext.evaluation.extract import LETTERS, answer_tags, extract_choice, parse_choice

ABCD = LETTERS[:4]

# (response, letters, expected answer, expected method or failure reason)
LETTER_CASES = [
    ("<think>It is not an apple.</think> <answer>B</answer>", ABCD, "B", "tag"),
    ("<answer>B</answer>", ABCD, "B", "tag"),
    ("<answer> B </answer>", ABCD, "B", "tag"),
    ("<answer>\n  C\n</answer>", ABCD, "C", "tag"),
    ("<answer>(B)</answer>", ABCD, "B", "tag"),
    ("<answer>[D]</answer>", ABCD, "D", "tag"),
    ("<answer>B.</answer>", ABCD, "B", "tag"),
    ("<answer>B)</answer>", ABCD, "B", "tag"),
    ("<answer>B:</answer>", ABCD, "B", "tag"),
    ("<answer>B. A red car</answer>", ABCD, "B", "tag"),
    ("<answer>B) a red car</answer>", ABCD, "B", "tag"),
    ("<answer>(C) two dogs</answer>", ABCD, "C", "tag"),
    ("<answer>b</answer>", ABCD, "B", "tag"),
    ("<answer>(d)</answer>", ABCD, "D", "tag"),
    ("<answer>**A**</answer>", ABCD, "A", "tag"),
    ("<answer>`A`</answer>", ABCD, "A", "tag"),
    ('<answer>"C"</answer>', ABCD, "C", "tag"),
    ("<answer>\\boxed{C}</answer>", ABCD, "C", "tag"),
    ("<answer>\\boxed{\\text{D}}</answer>", ABCD, "D", "tag"),
    ("<answer>Option B</answer>", ABCD, "B", "tag"),
    ("<answer>Answer: (C)</answer>", ABCD, "C", "tag"),
    ("<answer>The answer is D.</answer>", ABCD, "D", "tag"),
    ("<answer>The correct option is a</answer>", ABCD, "A", "tag"),
    ("<ANSWER>C</ANSWER>", ABCD, "C", "tag"),
    ("< answer >C< / answer >", ABCD, "C", "tag"),
    # Options beyond D.
    ("<answer>E</answer>", LETTERS[:5], "E", "tag"),
    ("<answer>(F)</answer>", LETTERS[:6], "F", "tag"),
    ("<answer>E</answer>", ABCD, None, "invalid_option"),
    ("<answer>Z</answer>", ABCD, None, "invalid_option"),
    # Several tags: the last closed one wins (also over an unclosed one after it).
    ("<answer>A</answer> wait, no. <answer>C</answer>", ABCD, "C", "tag"),
    ("<answer>A</answer> <answer>C", ABCD, "A", "tag"),
    ("<think>maybe <answer>A</answer>?</think> <answer>D</answer>", ABCD, "D", "tag"),
    # The last tag decides even when it is unreadable: no hunting through earlier tags.
    ("<answer>B</answer> <answer>I am not sure</answer>", ABCD, None, "unparseable"),
    # Text that only starts with a letter-like word is not a letter.
    ("<answer>A cat on a mat</answer>", ABCD, None, "unparseable"),
    ("<answer>a dog</answer>", ABCD, None, "unparseable"),
    ("<answer>Answering this needs more context</answer>", ABCD, None, "unparseable"),
    ("<answer>e.g. the left one</answer>", ABCD, None, "unparseable"),
    ("<answer></answer>", ABCD, None, "empty"),
    ("<answer>   </answer>", ABCD, None, "empty"),
    # No closed tag: only a sole letter after </think> is taken, and counted as a fallback.
    ("B", ABCD, "B", "fallback"),
    ("(B)", ABCD, "B", "fallback"),
    ("  c.  ", ABCD, "C", "fallback"),
    ("<think>The car is red.</think> B", ABCD, "B", "fallback"),
    ("<think>The car is red.</think>\nThe answer is B.", ABCD, "B", "fallback"),
    ("<think>So the answer is B.</think>", ABCD, None, "no_tag"),
    ("The answer is B because the car is red.", ABCD, None, "no_tag"),
    ("B. A red car", ABCD, None, "no_tag"),
    ("<answer>B", ABCD, None, "no_tag"),
    ("", ABCD, None, "no_tag"),
    ("E", ABCD, None, "invalid_option"),
]


@pytest.mark.parametrize(("response", "letters", "answer", "how"), LETTER_CASES)
def test_letter_extraction(response, letters, answer, how):
    got = extract_choice(response, letters)
    assert got.answer == answer
    if answer is None:
        assert got.reason == how and got.method is None and not got.ok
    else:
        assert got.method == how and got.reason is None and got.ok


def test_fallback_can_be_turned_off():
    assert extract_choice("B", ABCD, fallback=False).reason == "no_tag"
    assert extract_choice("<answer>B</answer>", ABCD, fallback=False).answer == "B"


OPTIONS = {"A": "Yes", "B": "No"}
TEXT_CASES = [
    ("<answer>No</answer>", OPTIONS, "B"),
    ("<answer>yes.</answer>", OPTIONS, "A"),
    ("<answer>B</answer>", OPTIONS, "B"),
    ("<answer>Maybe</answer>", OPTIONS, None),
    ("<answer>Point B</answer>", {"A": "Point A", "B": "Point B"}, "B"),
    ("<answer>the red car</answer>", {"A": "The red car", "B": "The blue car"}, "A"),
    # Two options with the same text: ambiguous, so no answer.
    ("<answer>cat</answer>", {"A": "cat", "B": "Cat"}, None),
    # Only exact text: a longer answer that mentions an option is not matched.
    ("<answer>I think no</answer>", OPTIONS, None),
]


@pytest.mark.parametrize(("response", "options", "answer"), TEXT_CASES)
def test_option_text_match(response, options, answer):
    assert extract_choice(response, sorted(options), options).answer == answer


YES_NO_CASES = [
    ("<answer>Yes</answer>", "Yes", "tag"),
    ("<answer>no</answer>", "No", "tag"),
    ("<answer> NO. </answer>", "No", "tag"),
    ("<answer>Yes, there is a dog.</answer>", "Yes", "tag"),
    ("<answer>Not really</answer>", None, "unparseable"),
    ("<answer>Nope</answer>", None, "unparseable"),
    ("<think>hmm</think> yes", "Yes", "fallback"),
    ("Yes, there is a dog.", None, "no_tag"),
]


@pytest.mark.parametrize(("response", "answer", "how"), YES_NO_CASES)
def test_yes_no(response, answer, how):
    got = extract_choice(response, yes_no=True)
    assert got.answer == answer
    assert (got.method if answer else got.reason) == how


def test_answer_tags_in_order():
    assert answer_tags("<answer>1</answer> x <answer> 2 </answer>") == ["1", " 2 "]
    assert answer_tags("no tags") == []
    assert answer_tags(None) == []


def test_parse_choice_sole_only_rejects_text():
    assert parse_choice("B. red", ABCD, sole_only=True) == (None, "unparseable")
    assert parse_choice("B. red", ABCD) == ("B", None)


def test_non_string_response_is_no_tag():
    # Prediction cells read back from a spreadsheet can be NaN/None/numbers.
    assert extract_choice(None, ABCD).reason == "no_tag"
    assert extract_choice(float("nan"), ABCD).reason == "no_tag"
