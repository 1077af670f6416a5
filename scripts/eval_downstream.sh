#!/usr/bin/env bash
# From merged checkpoints to a downstream results table with VLMEvalKit, without a judge model.
#
#   bash scripts/eval_downstream.sh NAME=CKPT_DIR [NAME2=CKPT_DIR2 ...] [-- DATASET ...]
#   e.g. bash scripts/eval_downstream.sh base=models/Qwen2.5-VL-3B-Instruct trained=checkpoints/rot/merged
#
# Stages (STAGES, default all, in this order):
#   config   write WORK_DIR/vlmevalkit_config.json from configs/eval/vlmevalkit_ssl.json (training's instruction
#            as system prompt, use_custom_prompt false) for every NAME=CKPT_DIR
#   infer    VLMEvalKit --mode infer (raw <think>...</think> <answer>X</answer> outputs)
#   extract  verl_ext.evaluation.predictions rewrites every prediction file in place to the chosen letter
#            (raw output kept in raw_prediction; rows without an answer become Z and score wrong)
#   eval     VLMEvalKit --mode eval --judge exact_matching --reuse --reuse-aux infer (no judge model, no API key),
#            started with model names and --data-config rather than --config, so it loads no model (no GPU needed)
#   collect  verl_ext.evaluation.downstream collect -> WORK_DIR/results.{md,json} (first model = baseline for the Δ column)
#
# Environment:
#   VLMEVALKIT_DIR  a VLMEvalKit clone (its run.py starts it; VLMEvalKit has no `python -m vlmeval`)
#   VLMEVAL   the whole command instead, e.g. "torchrun --nproc-per-node=8 /opt/VLMEvalKit/run.py"
#             [python run.py of VLMEVALKIT_DIR, or of the clone an editable install of vlmeval points to]
#   LMUData   folder with the benchmark TSVs (VLMEvalKit downloads them if absent and the machine is online)
#   WORK_DIR  output folder (default outputs/downstream)
#   STAGES    subset of "config infer extract eval collect"
#   TEMPLATE  VLMEvalKit config template [configs/eval/vlmevalkit_ssl.json]
# SPLIT_THINK is removed from VLMEvalKit's environment: it tests the variable for being set, so even
# SPLIT_THINK=0 would cut each prediction to the text after </think>, and the extraction needs the answer tag.
# The infer stage needs what VLMEvalKit's Qwen2VLChat needs: a GPU, and flash-attn (it asks for FlashAttention-2).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK_DIR="${WORK_DIR:-outputs/downstream}"
STAGES="${STAGES:-config infer extract eval collect}"
TEMPLATE="${TEMPLATE:-$REPO/configs/eval/vlmevalkit_ssl.json}"

has_stage() { [[ " $STAGES " == *" $1 "* ]]; }

source "$REPO/scripts/lib/eval_args.sh"
source "$REPO/scripts/lib/common.sh"
parse_eval_args "$@"
models=("${EVAL_MODELS[@]}")
datasets=(${EVAL_DATASETS[@]+"${EVAL_DATASETS[@]}"})
names=()
for spec in "${models[@]}"; do
  if has_stage infer; then require_checkpoint "$spec"; fi
  names+=("${spec%%=*}")
done
data_args=()
if ((${#datasets[@]})); then data_args=(--data "${datasets[@]}"); fi
model_args=()
for name in "${names[@]}"; do model_args+=(--model "$name"); done

mkdir -p "$WORK_DIR"
CONFIG="$WORK_DIR/vlmevalkit_config.json"
unset SPLIT_THINK
if [[ -z "${VLMEVAL:-}" ]] && { has_stage infer || has_stage eval; }; then
  VLMEVAL="$(python -m verl_ext.evaluation.downstream vlmevalkit-command)" || exit 2
fi

if has_stage config; then
  spec_args=()
  for spec in "${models[@]}"; do spec_args+=(--model "$spec"); done
  python -m verl_ext.evaluation.downstream config --template "$TEMPLATE" "${spec_args[@]}" \
    ${data_args[@]+"${data_args[@]}"} --out "$CONFIG"
fi
if has_stage infer; then
  # VLMEvalKit runs as a child this script waits on (wait_child): a TERM sent to the script stops it too.
  $VLMEVAL --config "$CONFIG" --work-dir "$WORK_DIR" --mode infer &
  wait_child $!
fi
if has_stage extract; then
  mapfile -t files < <(python -m verl_ext.evaluation.downstream predictions --work-dir "$WORK_DIR" \
    "${model_args[@]}" ${data_args[@]+"${data_args[@]}"})
  if ((${#files[@]} == 0)); then
    echo "error: no prediction files under $WORK_DIR (did the infer stage run?)" >&2; exit 1
  fi
  for f in "${files[@]}"; do
    python -m verl_ext.evaluation.predictions "$f" "$f" --report "${f%.*}_extraction.json"
  done
fi
if has_stage eval; then
  # Model names, not --config: with a config VLMEvalKit builds every model, even to evaluate.
  data_config="$(python -m verl_ext.evaluation.downstream data-config --template "$TEMPLATE" \
    ${data_args[@]+"${data_args[@]}"})"
  mapfile -t eval_data < <(python -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])))' "$data_config")
  $VLMEVAL --model "${names[@]}" --data "${eval_data[@]}" --data-config "$data_config" --work-dir "$WORK_DIR" \
    --mode eval --judge exact_matching --reuse --reuse-aux infer &
  wait_child $!
fi
if has_stage collect; then
  python -m verl_ext.evaluation.downstream collect --work-dir "$WORK_DIR" "${model_args[@]}" \
    ${data_args[@]+"${data_args[@]}"} --out "$WORK_DIR"
fi
