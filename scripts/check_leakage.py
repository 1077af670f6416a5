#!/usr/bin/env python
"""Do training puzzles use pictures of an evaluation benchmark?

    python scripts/check_leakage.py TRAIN.parquet [TRAIN2.parquet ...] --benchmark EVAL_FILE \
        [--split dev] [--json R.json]

EVAL_FILE is a benchmark file or folder (e.g. LMUData/MMBench_DEV_EN.tsv, the BLINK parquet folder) or a puzzle
parquet (e.g. the val split a run validates on). Prints the overlap (count, fractions, example ids) and exits 1
when there is one, 0 when there is none, 2 on errors. With --guard, ALLOW_EVAL_IMAGES=1 turns an overlap into a
warning (exit 0): the mode run scripts use (see scripts/lib/leakage_check.sh).
"""

import sys

from verl_ext.evaluation.leakage import main

if __name__ == "__main__":
    sys.exit(main())
