#!/usr/bin/env bash
# Does the tiny model learn a puzzle? GRPO on CPU (about 25 minutes on 2 cores) on the easiest honest setting we
# know: single-picture rotation with angles {0, 180}, where an upright photograph has its sky on top. Held-out
# puzzles (the val split: other photographs) are scored greedily before training and every VAL_EVERY steps;
# the script prints their accuracy before and after, against chance and against always giving the most common
# answer, and draws the curves. A benchmark, not a test: whatever the number, nothing fails on it.
#
# Usage: bash scripts/bench_learning.sh [HYDRA_OVERRIDE ...]
# Environment (all optional):
#   STEPS        GRPO steps                                       [120]
#   VAL_EVERY    held-out evaluation every this many steps        [20]
#   BENCH_DIR    model, puzzles, logs and plots                   [outputs/bench_learning]
#   RUN_TIMEOUT  stop the training run after this long            [40m]
#   PYTHON       interpreter of an environment with the CPU stack [python]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
STEPS="${STEPS:-120}"
VAL_EVERY="${VAL_EVERY:-20}"
source "$REPO/scripts/lib/cpu_env.sh"
source "$REPO/scripts/lib/common.sh"
OUT="$(abspath "${BENCH_DIR:-$REPO/outputs/bench_learning}")"
lock_folder "$OUT" "a learning benchmark" "wait for it to end, or set BENCH_DIR to another folder"
ensure_demo_model "$OUT/model"  # the demo's starting point: answer format partly learned, no puzzle knowledge
# run_grpo.sh builds the puzzles the first time: 6 per photograph (each its own crop and angle), 240 training and
# 60 held-out puzzles, each counted exactly with the model's processor (233 tokens), so the prompt length of 256
# set below (which run_grpo.sh also hands the builder) holds them all.
export BUILD_ARGS="--option form=\"single\" --option angles=[0,180] --puzzles-per-image 6 --tokenizer $OUT/model"

rm -rf "$OUT/checkpoints" "$OUT/metrics.jsonl" "$OUT/plots"
start=$SECONDS
# Same optimiser settings as scripts/demo.sh (see the reasons there); the held-out split is validated greedily.
(
  cd "$OUT"  # Hydra writes its outputs/ folder into the working directory
  DEVICE=cpu MODEL_PATH="$OUT/model" DATA_DIR="$OUT/data" SAVE_DIR="$OUT/checkpoints" \
    EXPERIMENT_NAME="bench_learning" VERL_FILE_LOGGER_PATH="$OUT/metrics.jsonl" RUN_TIMEOUT="${RUN_TIMEOUT:-40m}" \
    bash "$REPO/scripts/run_grpo.sh" rotation demo trainer.total_training_steps="$STEPS" trainer.save_freq=-1 \
    trainer.test_freq="$VAL_EVERY" trainer.val_before_train=true trainer.resume_mode=disable \
    actor_rollout_ref.actor.optim.lr=5e-4 actor_rollout_ref.rollout.n=8 trainer.total_epochs=100 \
    data.max_prompt_length=256 "$@" > "$OUT/train_console.log" 2>&1
) || { tail -n 40 "$OUT/train_console.log" >&2; echo "[bench_learning.sh] training failed (log: $OUT/train_console.log)" >&2; exit 1; }
[[ "${DRY_RUN:-0}" == 1 ]] && { cat "$OUT/train_console.log"; exit 0; }  # the launcher's checks only
echo "run: $((SECONDS - start)) s wall for $STEPS steps (log: $OUT/train_console.log)"
"$PYTHON" -m verl_ext.evaluation.run_log heldout "$OUT/metrics.jsonl" --val-data "$OUT/data/val.parquet"
"$PYTHON" "$REPO/scripts/plot_run.py" "$OUT/metrics.jsonl" --out "$OUT/plots" > /dev/null
echo "curves: $OUT/plots/overview.png (held-out accuracy: $OUT/plots/validation_accuracy.png)"
