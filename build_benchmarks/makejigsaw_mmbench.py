"""Build the jigsaw puzzle dataset from MMBench: `python build_benchmarks/makejigsaw_mmbench.py [--input P] [--output D]`."""

import sys

from verl_ext.build.cli import benchmark_main

if __name__ == "__main__":
    sys.exit(benchmark_main("jigsaw"))
