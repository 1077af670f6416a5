"""Build any puzzle task from any image source, e.g.

    python build_benchmarks/build.py --task rotation --source demo --output datasets/ssl/demo_rotation
    python build_benchmarks/build.py --task jigsaw --source mmbench --input datasets/MMBench \
        --output datasets/ssl/mmbench_jigsaw
    python build_benchmarks/build.py --task mix --tasks rotation:0.5,jigsaw:0.5 --source folder \
        --input coco/val2017 --output datasets/ssl/coco_mix

Run with --help for every option.
"""

import sys

from verl_ext.builder.cli import main

if __name__ == "__main__":
    sys.exit(main())
