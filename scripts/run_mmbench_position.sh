#!/usr/bin/env bash
# GRPO on position puzzles made from MMBench images: the model learns to tell which quadrant a crop came from.
# Trains on puzzles from MMBench test images, validates on puzzles from MMBench dev images (ALLOW_EVAL_IMAGES=1
# also trains on the dev ones, as SSL4RL did). The puzzles are built once from INPUT, the MMBench HF parquet
# folder (default datasets/MMBench), into datasets/ssl/mmbench_position. Other settings: see scripts/run_grpo.sh.
#   MODEL_PATH=models/Qwen2.5-VL-3B-Instruct bash scripts/run_mmbench_position.sh trainer.total_training_steps=300
export INPUT="${INPUT:-$(dirname "${BASH_SOURCE[0]}")/../datasets/MMBench}"
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_grpo.sh" position mmbench "$@"
