#!/usr/bin/env bash
# How long a CPU training run takes to reach its first step, phase by phase: launcher checks, verl and Ray, the
# trainer's setup, the FSDP actor, the vLLM engine, the agent loop, then step 1 itself. Runs one GRPO step of the
# demo's training (tiny model, demo puzzles, configs/grpo_cpu_tiny.yaml, no validation, no checkpoint) with every
# console line stamped by its arrival time (verl_ext/evaluation/startup.py), and prints the table.
# Target: step 1 begins within 60 s of launch on 2 cores. A benchmark, not a test: nothing fails on the number.
#
# Usage: bash scripts/bench_startup.sh [HYDRA_OVERRIDE ...]
# Environment (all optional):
#   TASK       puzzle task                                        [rotation]
#   BENCH_DIR  model, puzzles and logs (reused when present)      [outputs/bench_startup]
#   PYTHON     interpreter of an environment with the CPU stack   [python]
# The model and puzzles are made before the clock starts (the first time only), so they are not counted.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
TASK="${TASK:-rotation}"
source "$REPO/scripts/lib/cpu_env.sh"
source "$REPO/scripts/lib/common.sh"
OUT="$(abspath "${BENCH_DIR:-$REPO/outputs/bench_startup}")"
lock_folder "$OUT" "a start-up benchmark" "wait for it to end, or set BENCH_DIR to another folder"
ensure_demo_model "$OUT/model"
if [[ ! -f "$OUT/data_$TASK/manifest.json" ]]; then
  "$PYTHON" "$REPO/build_benchmarks/build.py" --task "$TASK" --source demo --output "$OUT/data_$TASK" --no-progress \
    > /dev/null || die "building the demo puzzles failed"
fi

rm -rf "$OUT/checkpoints" "$OUT/metrics.jsonl"
launched="$("$PYTHON" -c 'import time; print(f"{time.time():.3f}")')"
status=0
# Every console line is stamped with its arrival time; the stamper reads from a file descriptor of its own, so
# the run is a child this script waits on (a TERM sent to the script stops it: wait_child) and the stamper's
# last lines are in the log before it is read.
exec {stamp_fd}> >("$PYTHON" -u -m verl_ext.evaluation.startup stamp > "$OUT/train_console.log")
stamp_pid=$!
(
  cd "$OUT"  # Hydra writes its outputs/ folder into the working directory
  DEVICE=cpu MODEL_PATH="$OUT/model" DATA_DIR="$OUT/data_$TASK" SAVE_DIR="$OUT/checkpoints" \
    EXPERIMENT_NAME="bench_startup" VERL_FILE_LOGGER_PATH="$OUT/metrics.jsonl" RUN_TIMEOUT="${RUN_TIMEOUT:-15m}" \
    exec bash "$REPO/scripts/run_grpo.sh" "$TASK" demo trainer.total_training_steps=1 trainer.save_freq=-1 \
    trainer.test_freq=-1 trainer.val_before_train=false trainer.resume_mode=disable "$@" >&"$stamp_fd" 2>&1
) &
wait_child $! || status=$?
exec {stamp_fd}>&-
wait "$stamp_pid" || status=$?
if [[ "$status" != 0 ]]; then
  tail -n 40 "$OUT/train_console.log" >&2
  die "the training run failed (log: $OUT/train_console.log)"
fi
"$PYTHON" -m verl_ext.evaluation.startup phases "$OUT/train_console.log" --launched "$launched"
echo "log: $OUT/train_console.log"
