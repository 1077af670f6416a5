#!/usr/bin/env bash
# Where a CPU GRPO step's time goes: runs STEPS steps of the demo's training (tiny model, demo puzzles,
# configs/grpo_cpu_tiny.yaml, no checkpoint, no validation) and prints verl's per-phase timers for every step
# and their median over the steady-state steps (step >= 2; step 1 also pays vLLM's and the optimizer's warm-up).
# A benchmark, not a test: nothing fails on a slow number.
#
# Usage: bash scripts/bench_cpu_step.sh [HYDRA_OVERRIDE ...]      e.g. data.train_batch_size=8
# Environment (all optional):
#   STEPS      GRPO steps to time                                 [6]
#   TASK       puzzle task                                        [rotation]
#   BENCH_DIR  model, puzzles and logs (reused when present)      [outputs/bench_cpu_step]
# run_grpo.sh builds the puzzles into BENCH_DIR/data_TASK the first time, sized for the config's prompt length.
#   PYTHON     interpreter of an environment with the CPU stack   [python]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
STEPS="${STEPS:-6}"
TASK="${TASK:-rotation}"
source "$REPO/scripts/lib/cpu_env.sh"
source "$REPO/scripts/lib/common.sh"
OUT="$(abspath "${BENCH_DIR:-$REPO/outputs/bench_cpu_step}")"
lock_folder "$OUT" "a CPU step benchmark" "wait for it to end, or set BENCH_DIR to another folder"
ensure_demo_model "$OUT/model"

rm -rf "$OUT/checkpoints" "$OUT/metrics.jsonl"
start=$SECONDS
(
  cd "$OUT"  # Hydra writes its outputs/ folder into the working directory
  DEVICE=cpu MODEL_PATH="$OUT/model" DATA_DIR="$OUT/data_$TASK" SAVE_DIR="$OUT/checkpoints" \
    EXPERIMENT_NAME="bench_cpu_step" VERL_FILE_LOGGER_PATH="$OUT/metrics.jsonl" RUN_TIMEOUT="${RUN_TIMEOUT:-40m}" \
    exec bash "$REPO/scripts/run_grpo.sh" "$TASK" demo trainer.total_training_steps="$STEPS" trainer.save_freq=-1 \
    trainer.test_freq=-1 trainer.val_before_train=false trainer.resume_mode=disable "$@" > "$OUT/train_console.log" 2>&1
) &
wait_child $! || { tail -n 40 "$OUT/train_console.log" >&2; echo "[bench_cpu_step.sh] training failed (log: $OUT/train_console.log)" >&2; exit 1; }
[[ "${DRY_RUN:-0}" == 1 ]] && { cat "$OUT/train_console.log"; exit 0; }  # the launcher's checks only
echo "run: $((SECONDS - start)) s wall for $STEPS steps, Ray and vLLM start included (log: $OUT/train_console.log)"
"$PYTHON" -m verl_ext.evaluation.run_log times "$OUT/metrics.jsonl"
