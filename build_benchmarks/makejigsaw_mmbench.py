"""Build the jigsaw puzzle dataset from MMBench (dev -> val split, test -> train split).

    python build_benchmarks/makejigsaw_mmbench.py [--input P] [--output D] [--seed S] [--workers N] [--limit K]

Defaults: --input datasets/MMBench, --output datasets/ssl/mmbench_jigsaw.
"""

import sys

from verl_ext.builder.cli import benchmark_main

if __name__ == "__main__":
    sys.exit(benchmark_main("jigsaw"))
