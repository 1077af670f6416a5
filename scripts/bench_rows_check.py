"""How fast the launcher's row check (verl_ext/launch/rows_check.py) reads puzzle files, pictures decoded included.

Builds puzzles from the bundled demo pictures (several per picture), then checks the training file with 1 and
with 2 worker processes and prints rows per second:

    python scripts/bench_rows_check.py [--task rotation] [--puzzles-per-image 40]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from verl_ext.builder import BuildConfig, build
from verl_ext.launch.rows_check import check_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="rotation")
    parser.add_argument("--puzzles-per-image", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        config = BuildConfig(
            task=args.task,
            source="demo",
            output=out,
            workers=1,
            progress=False,
            puzzles_per_image=args.puzzles_per_image,
        )
        build(config)
        train = out / "train.parquet"
        size_mb = train.stat().st_size / 1e6
        for workers in (1, min(2, os.cpu_count() or 1)):
            started = time.perf_counter()
            report = check_file(train, workers=workers)
            seconds = time.perf_counter() - started
            print(
                f"{args.task}: {report.rows} rows ({size_mb:.1f} MB), {workers} worker(s): {seconds:.2f} s, "
                f"{report.rows / seconds:.0f} rows/s, {report.bad_rows} bad"
            )


if __name__ == "__main__":
    main()
