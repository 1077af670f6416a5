#!/usr/bin/env python
"""One results table from VLMEvalKit's score files.

    python scripts/collect_results.py --work-dir outputs/downstream --model base --model trained --out DIR \
        [--data MMBench_DEV_EN SEEDBench_IMG ...]

Reads ``<model>_<dataset>_acc.csv`` (and MME-RealWorld's ``_rating.json``) under WORK_DIR/<model>/, newest first,
and writes DIR/results.json and DIR/results.md (percent; Δ columns against the first model).
"""

import sys

from verl_ext.evaluation.downstream import main

if __name__ == "__main__":
    sys.exit(main(["collect", *sys.argv[1:]]))
