#!/usr/bin/env bash
# GRPO on position puzzles made from MMBench images: the model learns to tell which quadrant a crop was taken from.
# Trains on puzzles from MMBench test images and validates on puzzles from MMBench dev images (ALLOW_EVAL_IMAGES=1
# also trains on the dev ones, as SSL4RL did). INPUT: the MMBench files, needed once to build the puzzles.
# Environment variables and Hydra overrides as for scripts/run_grpo.sh, e.g.
#   INPUT=data/mmbench MODEL_PATH=models/Qwen2.5-VL-3B-Instruct bash scripts/run_mmbench_position.sh trainer.total_training_steps=300
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_grpo.sh" position mmbench "$@"
