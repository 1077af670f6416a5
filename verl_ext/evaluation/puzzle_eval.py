"""Prepare held-out puzzle files for one verl validation-only run, and describe their rows for the report.

``scripts/eval_puzzles.sh`` evaluates several parquet files (one per task/source, as the builders write them)
in a single verl run, so Ray and the rollout engine start once. :func:`prepare_eval_set` concatenates them into
one file and numbers every row in ``extra_info["eval_row"]``; :mod:`verl_ext.evaluation.eval_reward` returns that
number with the reward, and :mod:`verl_ext.evaluation.puzzle_report` joins the validation dump back to
``eval_rows.jsonl`` (task, source, difficulty, file of every row).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from verl_ext.evaluation.eval_reward import ROW_KEY

EVAL_SET = "eval_set.parquet"
ROWS_FILE = "eval_rows.jsonl"
REQUIRED_COLUMNS = ("data_source", "prompt", "reward_model", "extra_info")


def prompt_text(prompt: Any) -> str:
    """The text of a verl ``prompt`` cell (chat messages) without ``<image>`` placeholders, spaces squeezed.

    Used to recognise a row's task in a validation dump that carries no row id (the dump's ``input`` is the
    decoded chat-templated prompt, which contains this text).
    """
    if isinstance(prompt, str):
        texts = [prompt]
    else:
        texts = []
        for message in list(prompt if prompt is not None else []):
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                texts.append(content)
            elif content is not None:  # already a list of {"type": "text", "text": ...} parts
                texts.extend(part.get("text", "") for part in content if isinstance(part, dict))
    return squeeze(" ".join(texts).replace("<image>", " "))


def squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def _plain(value: Any) -> Any:
    """numpy scalars/arrays from a parquet read as plain Python values (for JSON)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def read_puzzle_file(path: str | Path, max_rows: int | None = None) -> pd.DataFrame:
    """One builder parquet file, checked for the columns verl and the report need."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such puzzle file")
    df = pd.read_parquet(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a puzzle file in verl's row format (missing columns {missing})")
    if max_rows is not None:
        df = df.iloc[:max_rows]
    return df.reset_index(drop=True)


def row_records(frames: Sequence[tuple[str, pd.DataFrame]]) -> list[dict[str, Any]]:
    """One description per row of the concatenated files, in order (``eval_row`` = position)."""
    records: list[dict[str, Any]] = []
    for name, df in frames:
        for file_index, row in enumerate(df.itertuples(index=False)):
            info = _plain(row.extra_info) if isinstance(row.extra_info, dict) else {}
            reward_model = _plain(row.reward_model) if isinstance(row.reward_model, dict) else {}
            data_source = str(row.data_source)
            task = info.get("task") or (data_source[4:] if data_source.startswith("ssl_") else data_source)
            records.append(
                {
                    ROW_KEY: len(records),
                    "file": name,
                    "file_index": file_index,
                    "data_source": data_source,
                    "task": str(task),
                    "source": str(info.get("source", "")),
                    "difficulty": str(info.get("difficulty", "")),
                    "split": str(info.get("split", "")),
                    "ground_truth": reward_model.get("ground_truth"),
                    "content_id": str(info.get("content_id", "")),
                    "prompt_text": prompt_text(row.prompt),
                }
            )
    return records


def prepare_eval_set(
    files: Iterable[str | Path], out_dir: str | Path, max_rows_per_file: int | None = None
) -> tuple[Path, Path, int]:
    """Write ``out_dir/eval_set.parquet`` (all rows, numbered) and ``out_dir/eval_rows.jsonl``.

    Returns both paths and the row count. File names must be distinct only in the report (two ``val.parquet``
    files from different build folders are told apart by their parent folder).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(f) for f in files]
    if not paths:
        raise ValueError("no puzzle files given")
    names = _display_names(paths)
    frames = [(name, read_puzzle_file(p, max_rows_per_file)) for name, p in zip(names, paths)]
    records = row_records(frames)
    if not records:
        raise ValueError(f"the puzzle files hold no rows: {[str(p) for p in paths]}")
    combined = pd.concat([df for _, df in frames], ignore_index=True)
    extra = []
    for i, info in enumerate(combined["extra_info"]):
        info = dict(_plain(info)) if isinstance(info, dict) else {}
        info[ROW_KEY] = i
        extra.append(info)
    combined["extra_info"] = extra
    eval_set = out_dir / EVAL_SET
    combined.to_parquet(eval_set, index=False)
    rows_path = out_dir / ROWS_FILE
    with rows_path.open("w") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return eval_set, rows_path, len(records)


def _display_names(paths: Sequence[Path]) -> list[str]:
    """Short names for the files: the file name, or ``parent/file`` when file names repeat."""
    names = [p.name for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{p.name}" for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    return names


def prepare_rows_from_files(files: Iterable[str | Path], max_rows_per_file: int | None = None) -> list[dict[str, Any]]:
    """The row descriptions of puzzle files without writing anything (for dumps of other runs)."""
    paths = [Path(f) for f in files]
    names = _display_names(paths)
    return row_records([(name, read_puzzle_file(p, max_rows_per_file)) for name, p in zip(names, paths)])


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The row descriptions written by :func:`prepare_eval_set`."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """``python -m verl_ext.evaluation.puzzle_eval prepare OUT_DIR FILE... [--max-rows N]``"""
    parser = argparse.ArgumentParser(prog="python -m verl_ext.evaluation.puzzle_eval")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="concatenate and number puzzle files for one evaluation run")
    prep.add_argument("out_dir", type=Path)
    prep.add_argument("files", nargs="+", type=Path)
    prep.add_argument("--max-rows", type=int, default=None, help="use only the first N rows of each file")
    args = parser.parse_args(argv)
    try:
        eval_set, rows_path, n = prepare_eval_set(args.files, args.out_dir, args.max_rows)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{n} puzzles from {len(args.files)} file(s) -> {eval_set}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
