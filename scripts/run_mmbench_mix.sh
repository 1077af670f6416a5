#!/usr/bin/env bash
# GRPO on a mix of puzzle tasks made from MMBench images (one dataset, tasks interleaved), TASKS to choose them.
# Split and validation rules as in the single-task scripts; environment variables and Hydra overrides as for
# scripts/run_grpo.sh, e.g.
#   INPUT=data/mmbench TASKS=rotation,position bash scripts/run_mmbench_mix.sh
export TASKS="${TASKS:-rotation,jigsaw,position,contrastive}"
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_grpo.sh" mix mmbench "$@"
