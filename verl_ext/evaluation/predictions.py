"""Rewrite the prediction column of a VLMEvalKit prediction file to the option the model chose.

VLMEvalKit's ``--mode infer`` writes ``<model>_<dataset>.xlsx`` (or ``.tsv`` with ``PRED_FORMAT=tsv``): the
benchmark's rows (``index``, ``question``, option columns ``A``…, ``answer``, …) plus a ``prediction`` column with
the raw model output. :func:`rewrite_predictions` replaces each prediction by the letter (or Yes/No) found by
:mod:`verl_ext.evaluation.extract`, so that ``--mode eval --judge exact_matching`` scores it without a judge model.

* The raw output is kept in ``raw_prediction``; rewriting a file twice reads from that column, so it is idempotent.
* ``extraction`` records per row how the answer was found (``tag``/``fallback``) or why not.
* Rows without an answer get ``Z``: VLMEvalKit's own "no valid option" letter, which its matcher maps to ``Z`` and
  scores wrong (an empty cell would come back as NaN, and free text could still be matched to an option text).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from verl_ext.evaluation.extract import LETTERS, extract_choice

NO_ANSWER = "Z"
RAW_COLUMN = "raw_prediction"
HOW_COLUMN = "extraction"
Mode = Literal["auto", "letter", "yesno"]


@dataclass
class RewriteReport:
    """Counts of one rewrite: how many rows got an answer, and how."""

    rows: int = 0
    answered: int = 0
    by_method: Counter = field(default_factory=Counter)  # tag / fallback
    failures: Counter = field(default_factory=Counter)  # no_tag / unparseable / invalid_option / empty
    examples: list[dict] = field(default_factory=list)  # a few failed rows, for a person to look at

    @property
    def unanswered(self) -> int:
        return self.rows - self.answered

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "answered": self.answered,
            "unanswered": self.unanswered,
            "by_method": dict(self.by_method),
            "failures": dict(self.failures),
            "examples": self.examples,
        }

    def summary(self) -> str:
        methods = ", ".join(f"{k} {v}" for k, v in sorted(self.by_method.items())) or "none"
        fails = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "none"
        return (
            f"{self.rows} rows: {self.answered} answered ({methods}); "
            f"{self.unanswered} without an answer, written as {NO_ANSWER!r} ({fails})"
        )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read an xlsx or tsv prediction file, keeping texts such as ``None``/``NA`` as text."""
    path = Path(path)
    suffix = path.suffix.lower()
    # Only empty cells are missing: an option whose text is "None" must stay an option.
    na = {"keep_default_na": False, "na_values": [""]}
    if suffix == ".xlsx":
        return pd.read_excel(path, **na)
    if suffix in (".tsv", ".csv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", **na)
    raise ValueError(f"{path}: unsupported prediction file type {suffix!r} (expected .xlsx or .tsv)")


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write an xlsx (every cell as its value, never a formula) or tsv prediction file."""
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".xlsx":
        with pd.ExcelWriter(path, engine="openpyxl") as writer:
            df.to_excel(writer, index=False)
            # openpyxl stores a text starting with "=" as a formula: it would read back as NaN (no cached value)
            # and a spreadsheet would run it. Model outputs are text, whatever they start with.
            for sheet in writer.sheets.values():
                for row in sheet.iter_rows():
                    for cell in row:
                        if cell.data_type == "f":
                            cell.data_type = "s"
    elif suffix in (".tsv", ".csv"):
        df.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    else:
        raise ValueError(f"{path}: unsupported output file type {suffix!r} (expected .xlsx or .tsv)")


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value)) and str(value).strip() != ""


def _row_options(row: pd.Series, option_columns: list[str]) -> dict[str, str]:
    return {c: str(row[c]) for c in option_columns if _present(row[c])}


def _is_yes_no(value) -> bool:
    return _present(value) and str(value).strip().lower() in ("yes", "no")


def rewrite_predictions(
    df: pd.DataFrame,
    *,
    mode: Mode = "auto",
    fallback: bool = True,
    max_examples: int = 5,
) -> tuple[pd.DataFrame, RewriteReport]:
    """A copy of ``df`` with ``prediction`` rewritten, and the counts.

    ``mode="auto"`` decides per row: rows with option columns (``A``, ``B``, … non-empty) are read as letters;
    rows without options whose ``answer`` is Yes/No are read as yes/no; rows without options whose answer is a
    letter (options only inside the question text) accept any letter A–Z.
    """
    if "prediction" not in df.columns:
        raise ValueError(f"no 'prediction' column; columns are {list(df.columns)}")
    out = df.copy()
    if RAW_COLUMN not in out.columns:
        out[RAW_COLUMN] = out["prediction"]
    option_columns = [c for c in LETTERS if c in out.columns]
    report = RewriteReport()
    predictions: list[str] = []
    hows: list[str] = []
    for _, row in out.iterrows():
        raw = row[RAW_COLUMN]
        raw_text = str(raw) if _present(raw) else ""
        options = _row_options(row, option_columns)
        yes_no = mode == "yesno" or (mode == "auto" and not options and _is_yes_no(row.get("answer")))
        letters = sorted(options) if options else list(LETTERS)
        got = extract_choice(raw_text, letters, options or None, yes_no=yes_no, fallback=fallback)
        report.rows += 1
        if got.ok:
            report.answered += 1
            report.by_method[got.method] += 1
            predictions.append(got.answer)
            hows.append(got.method)
        else:
            report.failures[got.reason] += 1
            predictions.append(NO_ANSWER)
            hows.append(got.reason)
            if len(report.examples) < max_examples:
                report.examples.append(
                    {"index": _jsonable(row.get("index")), "reason": got.reason, "prediction": raw_text[-300:]}
                )
    out["prediction"] = predictions
    out[HOW_COLUMN] = hows
    return out, report


def _jsonable(value):
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def rewrite_file(src: str | Path, dst: str | Path, **kwargs) -> RewriteReport:
    """Read ``src``, rewrite its predictions, write ``dst`` (may be ``src`` itself)."""
    df = read_table(src)
    out, report = rewrite_predictions(df, **kwargs)
    write_table(out, dst)
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line of ``verl-ext-extract-answers`` (``python -m verl_ext.evaluation.predictions``)."""
    parser = argparse.ArgumentParser(
        prog="verl-ext-extract-answers",
        description="Rewrite the prediction column of a VLMEvalKit prediction file to the chosen option letter.",
    )
    parser.add_argument("src", type=Path, help="VLMEvalKit prediction file (.xlsx or .tsv)")
    parser.add_argument("dst", type=Path, help="output file (.xlsx or .tsv); may equal src")
    parser.add_argument(
        "--mode",
        choices=["auto", "letter", "yesno"],
        default="auto",
        help="auto: letters when the row has options, yes/no when its answer is Yes/No",
    )
    parser.add_argument(
        "--no-fallback", action="store_true", help="do not accept a sole letter when the response has no <answer> tag"
    )
    parser.add_argument("--report", type=Path, help="write the counts as JSON here")
    args = parser.parse_args(argv)
    if not args.src.is_file():
        parser.error(f"{args.src}: no such file")
    try:
        report = rewrite_file(args.src, args.dst, mode=args.mode, fallback=not args.no_fallback)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.src.name}: {report.summary()}")
    for ex in report.examples:
        print(f"  no answer (index {ex['index']}, {ex['reason']}): ...{ex['prediction'][-120:]!r}")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
