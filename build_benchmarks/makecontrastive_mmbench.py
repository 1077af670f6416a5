"""Build the contrastive puzzle dataset from MMBench (dev -> val, test -> train).

    python build_benchmarks/makecontrastive_mmbench.py [--input P] [--output D] [--seed S] [--workers N] [--limit K]

Defaults: --input datasets/MMBench, --output datasets/ssl/mmbench_contrastive.
"""

import sys

from verl_ext.builder.cli import benchmark_main

if __name__ == "__main__":
    sys.exit(benchmark_main("contrastive"))
