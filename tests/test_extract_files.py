"""Rewriting VLMEvalKit prediction files (xlsx and tsv made here in VLMEvalKit's shapes)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from verl_ext.evaluation.predictions import (
    HOW_COLUMN,
    NO_ANSWER,
    RAW_COLUMN,
    read_table,
    rewrite_file,
    rewrite_predictions,
)
from verl_ext.evaluation.predictions import main as extract_main


def mmbench_like() -> pd.DataFrame:
    """Rows as VLMEvalKit's infer step writes them for an MCQ benchmark (image column dropped)."""
    nan = float("nan")
    return pd.DataFrame(
        {
            "index": [0, 1, 2, 3, 4, 1000001, 6],
            "question": ["q0", "q1", "q2", "q3", "q4", "q1 rotated", "q6"],
            "hint": [nan, "h", nan, nan, nan, "h", nan],
            "A": ["cat", "red", "Yes", "one", "None", "blue", "up"],
            "B": ["dog", "blue", "No", "two", "All", "red", "down"],
            "C": ["bird", nan, nan, "three", nan, nan, "left"],
            "D": ["fish", nan, nan, "four", nan, nan, "right"],
            "answer": ["B", "A", "B", "C", "A", "B", "D"],
            "category": ["c"] * 7,
            "prediction": [
                "<think>It barks.</think> <answer>B</answer>",
                "<think>...</think><answer>(A) red</answer>",
                "<think>no dog</think> <answer>No</answer>",
                "<think>I see three.</think> <answer>C</answer> <answer>D</answer>",
                "<think>hmm</think> <answer>None</answer>",
                "B",
                "<think>The arrow points right so the answer is D.</think>",
            ],
        }
    )


EXPECTED = ["B", "A", "B", "D", "A", "B", NO_ANSWER]
EXPECTED_HOW = ["tag", "tag", "tag", "tag", "tag", "fallback", "no_tag"]


@pytest.mark.parametrize("suffix", [".xlsx", ".tsv"])
def test_rewrite_file_round_trip(tmp_path, suffix):
    src = tmp_path / f"model_MMBench_DEV_EN{suffix}"
    df = mmbench_like()
    if suffix == ".xlsx":
        df.to_excel(src, index=False)
    else:
        df.to_csv(src, sep="\t", index=False)
    dst = tmp_path / f"out{suffix}"
    report = rewrite_file(src, dst)
    out = read_table(dst)
    assert list(out["prediction"]) == EXPECTED
    assert list(out[HOW_COLUMN]) == EXPECTED_HOW
    assert list(out[RAW_COLUMN]) == list(df["prediction"])
    # The option text "None" survives the round trip as text, and absent options stay empty.
    assert out.loc[4, "A"] == "None"
    assert math.isnan(out.loc[1, "C"])
    # Other columns are untouched.
    assert list(out["index"]) == list(df["index"]) and list(out["answer"]) == list(df["answer"])
    assert report.rows == 7 and report.answered == 6 and report.unanswered == 1
    assert report.by_method == {"tag": 5, "fallback": 1}
    assert report.failures == {"no_tag": 1}
    assert report.examples[0]["index"] == 6


def test_rewrite_in_place_is_idempotent(tmp_path):
    path = tmp_path / "p.xlsx"
    mmbench_like().to_excel(path, index=False)
    rewrite_file(path, path)
    first = read_table(path)
    rewrite_file(path, path)
    second = read_table(path)
    pd.testing.assert_frame_equal(first, second)
    assert list(second[RAW_COLUMN]) == list(mmbench_like()["prediction"])


def test_options_beyond_d_and_invalid_letters():
    # MME-RealWorld rows have five options; a letter outside a row's options is not an answer.
    df = pd.DataFrame(
        {
            "index": [1, 2, 3],
            "A": ["a", "a", "a"],
            "B": ["b", "b", "b"],
            "C": ["c", "c", "c"],
            "D": ["d", "d", "d"],
            "E": ["e", "e", float("nan")],
            "answer": ["E", "A", "A"],
            "prediction": ["<answer>E</answer>", "<answer>(e)</answer>", "<answer>E</answer>"],
        }
    )
    out, report = rewrite_predictions(df)
    assert list(out["prediction"]) == ["E", "E", NO_ANSWER]
    assert report.failures == {"invalid_option": 1}


def test_yes_no_rows_without_options():
    df = pd.DataFrame(
        {
            "index": [1, 2, 3],
            "question": ["Is there a dog?"] * 3,
            "answer": ["Yes", "No", "No"],
            "prediction": ["<answer>yes</answer>", "<think>x</think> no", "<answer>dunno</answer>"],
        }
    )
    out, report = rewrite_predictions(df)
    assert list(out["prediction"]) == ["Yes", "No", NO_ANSWER]
    assert report.by_method == {"tag": 1, "fallback": 1}


def test_letters_when_options_live_in_the_question():
    # Options only inside the question text (no option columns): any letter is accepted.
    df = pd.DataFrame({"index": [1], "answer": ["C"], "prediction": ["<answer>C</answer>"]})
    out, _ = rewrite_predictions(df, mode="letter")
    assert list(out["prediction"]) == ["C"]


def test_missing_predictions_are_counted_not_crashed():
    df = pd.DataFrame({"index": [1, 2], "A": ["x", "x"], "B": ["y", "y"], "prediction": [float("nan"), None]})
    out, report = rewrite_predictions(df)
    assert list(out["prediction"]) == [NO_ANSWER, NO_ANSWER]
    assert report.failures == {"no_tag": 2}


def test_no_fallback_mode():
    out, report = rewrite_predictions(mmbench_like(), fallback=False)
    assert out.loc[5, "prediction"] == NO_ANSWER and report.failures["no_tag"] == 2


def test_missing_prediction_column_is_a_clear_error():
    with pytest.raises(ValueError, match="no 'prediction' column"):
        rewrite_predictions(pd.DataFrame({"index": [1]}))


def test_cli(tmp_path, capsys):
    src = tmp_path / "m_SEEDBench_IMG.xlsx"
    mmbench_like().to_excel(src, index=False)
    report_path = tmp_path / "r.json"
    assert extract_main([str(src), str(src), "--report", str(report_path)]) == 0
    printed = capsys.readouterr().out
    assert "7 rows: 6 answered" in printed and "1 without an answer" in printed
    assert json.loads(report_path.read_text())["unanswered"] == 1
    assert list(read_table(src)["prediction"]) == EXPECTED


def test_cli_rejects_unknown_suffix(tmp_path, capsys):
    src = tmp_path / "p.json"
    src.write_text("{}")
    assert extract_main([str(src), str(tmp_path / "o.xlsx")]) == 2
    assert "unsupported prediction file type" in capsys.readouterr().err
