#!/usr/bin/env bash
# Does GRPO teach the tiny model to see? A learning benchmark on CPU with the procedural scenes source
# (verl_ext/sources/scenes.py: sky above a horizon, light from above, objects standing on the ground), whose
# cues a small random vision tower can pick up. Held-out puzzles (the val split: scenes never trained on) are
# scored greedily before training and every VAL_EVERY steps; the script prints their accuracy against chance
# and against always giving the most common answer, with a 95% Wilson interval on the last figure and the
# verdict "learned" when that interval lies above the most-common-answer bar. Then it draws the curves.
#
# CONTROL=grey runs the same benchmark (same seed, settings and prompts) on pictures replaced by flat grey ones
# of the same size: it must stay at the bar; if it learns, the answer leaks through the text.
# The loss trains only the token that starts each response's answer (LOSS_ON=answer, the seeded_answer_token
# agent loop, verl_ext/answer_token_loss.py): trained on every response token, the tiny model did not find the
# cue in 100 steps; on the answer token one run did, and six runs on the split this script builds did not yet
# (docs/cpu-training.md, "Does GRPO teach the tiny model to see?" and "Not reproduced on the benchmark's own split").
# A benchmark, not a test: nothing fails on the number.
#
# Usage: bash scripts/bench_learning.sh [HYDRA_OVERRIDE ...]
# Environment (all optional):
#   SETTING      rotation2 (one picture, {0, 180}), rotation4 (one picture, quarter turns), position (2x2),
#                jigsaw (2x2)                                    [rotation2]
#   SCENES       scene settings: size, aspect, train and val counts, seed      [size=112,train=320,val=80]
#   CONTROL      grey: the control run described above                        [unset]
#   STEPS        GRPO steps                                       [150]
#   VAL_EVERY    held-out evaluation every this many steps        [25]
#   LR           learning rate                                    [2e-4]
#   LOSS_ON      answer: only the token that starts the answer is trained; response: every response token
#                (verl's default)                                 [answer]
#   PROMPTS      prompts per step                                 [16]
#   GROUP        responses per prompt                             [8]
#   BENCH_DIR    model, puzzles, logs and plots                   [outputs/bench_learning/SETTING[_CONTROL]]
#   RUN_TIMEOUT  stop the training run after this long            [45m]
#   PYTHON       interpreter of an environment with the CPU stack [python]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
SETTING="${SETTING:-rotation2}"
SCENES="${SCENES:-size=112,train=320,val=80}"
STEPS="${STEPS:-150}"
VAL_EVERY="${VAL_EVERY:-25}"
LR="${LR:-2e-4}"
PROMPTS="${PROMPTS:-16}"
GROUP="${GROUP:-8}"
source "$REPO/scripts/lib/cpu_env.sh"
source "$REPO/scripts/lib/common.sh"

case "$SETTING" in
  rotation2) TASK=rotation KNOBS=(--option 'form="single"' --option 'angles=[0,180]') ;;
  rotation4) TASK=rotation KNOBS=(--option 'form="single"' --option 'angles=[0,90,180,270]') ;;
  position) TASK=position KNOBS=(--option rows=2 --option cols=2) ;;
  jigsaw) TASK=jigsaw KNOBS=(--option rows=2 --option cols=2) ;;
  *) die "SETTING=$SETTING is not one of rotation2, rotation4, position, jigsaw." ;;
esac
case "${CONTROL:-}" in
  "") suffix="" ;;
  grey) suffix="_grey" KNOBS+=(--control grey) ;;
  *) die "CONTROL=$CONTROL: use CONTROL=grey for the control run, or leave it unset." ;;
esac
case "${LOSS_ON:-answer}" in
  answer) AGENT_LOOP=seeded_answer_token ;;
  response) AGENT_LOOP=seeded_single_turn ;;
  *) die "LOSS_ON=$LOSS_ON is not one of answer, response." ;;
esac
OUT="$(abspath "${BENCH_DIR:-$REPO/outputs/bench_learning/$SETTING$suffix}")"
lock_folder "$OUT" "a learning benchmark" "wait for it to end, or set BENCH_DIR to another folder"
ensure_learning_model "$OUT/model"
# run_grpo.sh builds the puzzles the first time, counted exactly with the model's processor; the prompt length
# of 256 set below (which run_grpo.sh also hands the builder) holds a 112-pixel scene's puzzle. The build is
# balanced (every answer equally frequent, the extra rows dropped and counted) and in stratified order, which
# run_grpo.sh reads as written (data.shuffle=false): every batch holds each answer equally often, so no step
# pushes the policy towards one answer for want of the other (verl_ext/builder/order.py).
export BUILD_ARGS="${KNOBS[*]} --tokenizer $OUT/model --order balanced"
export INPUT="$SCENES"

rm -rf "$OUT/checkpoints" "$OUT/metrics.jsonl" "$OUT/plots"
start=$SECONDS
(
  cd "$OUT"  # Hydra writes its outputs/ folder into the working directory
  DEVICE=cpu MODEL_PATH="$OUT/model" DATA_DIR="$OUT/data" SAVE_DIR="$OUT/checkpoints" \
    EXPERIMENT_NAME="bench_learning_$SETTING$suffix" VERL_FILE_LOGGER_PATH="$OUT/metrics.jsonl" \
    RUN_TIMEOUT="${RUN_TIMEOUT:-45m}" \
    exec bash "$REPO/scripts/run_grpo.sh" "$TASK" scenes trainer.total_training_steps="$STEPS" trainer.save_freq=-1 \
    trainer.test_freq="$VAL_EVERY" trainer.val_before_train=true trainer.resume_mode=disable \
    actor_rollout_ref.actor.optim.lr="$LR" actor_rollout_ref.rollout.n="$GROUP" trainer.total_epochs=1000 \
    actor_rollout_ref.rollout.agent.default_agent_loop="$AGENT_LOOP" \
    data.train_batch_size="$PROMPTS" actor_rollout_ref.actor.ppo_mini_batch_size="$PROMPTS" \
    data.val_batch_size=80 data.max_prompt_length=256 "$@" > "$OUT/train_console.log" 2>&1
) &
wait_child $! || { tail -n 40 "$OUT/train_console.log" >&2; echo "[bench_learning.sh] training failed (log: $OUT/train_console.log)" >&2; exit 1; }
[[ "${DRY_RUN:-0}" == 1 ]] && { cat "$OUT/train_console.log"; exit 0; }  # the launcher's checks only
echo "run: $((SECONDS - start)) s wall for $STEPS steps (log: $OUT/train_console.log)"
[[ -n "${CONTROL:-}" ]] && echo "CONTROL=$CONTROL: every picture the policy saw was flat grey; this must stay at the bar"
"$PYTHON" -m verl_ext.evaluation.run_log heldout "$OUT/metrics.jsonl" --val-data "$OUT/data/val.parquet" || true
"$PYTHON" "$REPO/scripts/plot_run.py" "$OUT/metrics.jsonl" --out "$OUT/plots" > /dev/null
echo "curves: $OUT/plots/overview.png (held-out accuracy: $OUT/plots/validation_accuracy.png)"
