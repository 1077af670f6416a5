"""Every row of a training or validation parquet file checked before the run starts, not when verl reaches it.

verl reads a row's pictures and the reward reads its task and ground truth only when that row's batch comes
up, which can be an hour into a run; a parquet file from elsewhere (or edited by hand) can hold a row that
then ends the run with a trace deep inside a Ray worker. Each row is checked here for what the run will need:

* ``extra_info.task`` names a registered task and ``extra_info.params`` are readable (the reward's own check);
* ``reward_model.ground_truth`` is present and is an answer the task itself scores as right;
* every picture has bytes (verl opens the ``bytes`` field whenever the column has one) that decode in full;
* the prompt has one ``<image>`` placeholder per picture (otherwise the processor fails on the row).

Decoding a JPEG in full at 1/8 scale (the decoder's draft mode) still reads every byte, so a truncated file is
caught, at a small part of a full decode's cost. ``scripts/bench_rows_check.py`` measures the rate.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_PLACEHOLDER = "<image>"
_BATCH_ROWS = 256


@dataclass(frozen=True)
class RowProblem:
    file: Path
    row: int  # position in the file, from 0
    problem: str

    def __str__(self) -> str:
        return f"{self.file}, row {self.row}: {self.problem}"


@dataclass(frozen=True)
class RowsReport:
    file: Path
    rows: int
    problems: list[RowProblem]  # the first ones found (at most the limit asked for)
    bad_rows: int  # all rows with a problem


def _image_problem(image: Any) -> str | None:
    from PIL import Image

    from verl_ext.sources.decode import load_whole

    if not isinstance(image, Mapping):
        return f"is a {type(image).__name__}, not a {{'bytes', 'path'}} record"
    data = image.get("bytes")
    if not data:
        where = f" (its path {image.get('path')!r} is not read: verl opens the bytes)" if image.get("path") else ""
        return f"has no bytes{where}"
    try:
        with Image.open(io.BytesIO(data)) as picture:
            if picture.format == "JPEG":
                picture.draft("RGB", (max(1, picture.width // 8), max(1, picture.height // 8)))
            load_whole(picture)
    except Exception as error:  # noqa: BLE001 - any failure to decode is this row's problem
        return f"does not decode ({type(error).__name__}: {error})"
    return None


def _prompt_text(prompt: Any) -> str | None:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        return "".join(str(m.get("content", "")) for m in prompt if isinstance(m, Mapping))
    return None


def row_problems(row: Mapping[str, Any]) -> list[str]:
    """What in one row (a dict of the verl columns) would stop or spoil training; empty when nothing."""
    from verl_ext.reward import compute_score, task_and_params

    problems: list[str] = []
    extra = row.get("extra_info")
    reward_model = row.get("reward_model")
    truth = reward_model.get("ground_truth") if isinstance(reward_model, Mapping) else None
    task = None
    if isinstance(extra, Mapping) and extra.get("task") in (None, ""):
        problems.append("extra_info.task is missing (the reward reads the puzzle's task from it)")
    else:
        try:
            task, _ = task_and_params(extra)
        except (ValueError, KeyError) as error:
            problems.append(str(error).strip("'\""))
    if truth is None or str(truth).strip() == "":
        problems.append("reward_model.ground_truth is missing")
    elif task is not None:
        response = f"<think>check</think> <answer>{truth}</answer>"
        try:
            right = compute_score(row.get("data_source"), response, truth, extra)["acc"] == 1.0
        except ValueError as error:
            problems.append(str(error))
        else:
            if not right:
                problems.append(f"ground truth {str(truth)!r:.80} is not an answer task {task.name!r} scores as right")
    images = row.get("images")
    images = [] if images is None else list(images)
    for index, image in enumerate(images):
        problem = _image_problem(image)
        if problem:
            problems.append(f"image {index + 1} of {len(images)} {problem}")
    text = _prompt_text(row.get("prompt"))
    if text is None:
        problems.append("the prompt is not a list of chat messages")
    elif text.count(IMAGE_PLACEHOLDER) != len(images):
        problems.append(
            f"the prompt has {text.count(IMAGE_PLACEHOLDER)} {IMAGE_PLACEHOLDER} placeholder(s) for {len(images)} "
            "picture(s)"
        )
    return problems


_COLUMNS = ["data_source", "prompt", "images", "reward_model", "extra_info"]


def _check_groups(path: Path, groups: list[int], max_problems: int) -> tuple[int, int, list[RowProblem]]:
    """(rows, bad rows, first problems) of some row groups of ``path``; row numbers count from the file's start."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    present = [c for c in _COLUMNS if c in parquet.schema_arrow.names]
    first = sum(parquet.metadata.row_group(g).num_rows for g in range(groups[0])) if groups else 0
    rows = bad = 0
    problems: list[RowProblem] = []
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, row_groups=groups, columns=present):
        for row in batch.to_pylist():
            found = row_problems(row)
            if found:
                bad += 1
                if len(problems) < max_problems:
                    problems.append(RowProblem(path, first + rows, "; ".join(found)))
            rows += 1
    return rows, bad, problems


def check_file(path: Path, max_problems: int = 10, workers: int = 1) -> RowsReport:
    """Check every row of one parquet file, over ``workers`` processes for a file of many row groups.

    Raises OSError/ValueError (pyarrow's) when the file itself cannot be read as parquet.
    """
    import pyarrow.parquet as pq

    groups = list(range(pq.ParquetFile(path).num_row_groups))
    # Contiguous runs of row groups, so each worker's row numbers continue from the run before.
    parts = max(1, min(workers, len(groups)))
    runs = [groups[i * len(groups) // parts : (i + 1) * len(groups) // parts] for i in range(parts)]
    if parts == 1:
        results = [_check_groups(path, groups, max_problems)]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # no fork of a process that may hold library threads
        with ProcessPoolExecutor(parts, mp_context=context) as pool:
            results = list(pool.map(_check_groups, [path] * parts, runs, [max_problems] * parts))
    problems = [problem for _, _, found in results for problem in found][:max_problems]
    return RowsReport(path, sum(r[0] for r in results), problems, sum(r[1] for r in results))


def describe(reports: list[RowsReport]) -> str:
    """One message for the rows with problems across ``reports``."""
    lines = []
    for report in reports:
        if report.bad_rows:
            lines.append(f"{report.file}: {report.bad_rows} of {report.rows} rows cannot be trained on, e.g.")
            lines += [f"  row {p.row}: {p.problem}" for p in report.problems]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m verl_ext.launch.rows_check FILE.parquet ...``: exit 1 when a row has a problem."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    reports = [check_file(path) for path in args.files]
    message = describe(reports)
    if message:
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
