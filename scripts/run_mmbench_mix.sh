#!/usr/bin/env bash
# GRPO on a mix of puzzle tasks made from MMBench images (one dataset, tasks interleaved); TASKS chooses them,
# optionally weighted (rotation:0.5,position:0.5). Splits, INPUT and settings as in run_mmbench_rotation.sh.
#   TASKS=rotation,position bash scripts/run_mmbench_mix.sh
export TASKS="${TASKS:-rotation,jigsaw,position,contrastive}"
export INPUT="${INPUT:-$(dirname "${BASH_SOURCE[0]}")/../datasets/MMBench}"
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_grpo.sh" mix mmbench "$@"
