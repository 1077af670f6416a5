#!/usr/bin/env bash
# From merged checkpoints to downstream scores with lmms-eval 0.7.3 and the project's task variants.
#
#   bash scripts/eval_lmms.sh NAME=CKPT_DIR [NAME2=CKPT_DIR2 ...] [-- BENCHMARK ...]
#   e.g. bash scripts/eval_lmms.sh base=models/Qwen2.5-VL-3B-Instruct trained=checkpoints/rot/merged
#
# Runs `python -m lmms_eval` (`accelerate launch` with NUM_PROCESSES > 1) once per checkpoint, with the ssl_*
# tasks of verl_ext/evaluation/lmms_tasks (--include_path): the training instruction as system message, the last
# <answer> tag read with the project's extractor, a reasoning budget, no judge model. Fails when lmms-eval exits
# 0 without having written results for every task (it does so when it cannot load a task).
# BENCHMARKs use VLMEvalKit's names (MMBench_DEV_EN, SEEDBench_IMG, MMStar, RealWorldQA, BLINK,
# MME-RealWorld-Lite, HRBench8K, MMVP); configs/eval/lmms_eval_ssl.json maps them to tasks.
#
# Environment:
#   OUT_DIR        results, OUT_DIR/NAME/<model>/<date>_results.json   [outputs/lmms]
#   NUM_PROCESSES  GPUs, one process each                               [1]
#   TEMPLATE       model and task mapping                               [configs/eval/lmms_eval_ssl.json]
# Then one table with VLMEvalKit's results (if any):
#   verl-ext-downstream-table --model base --model trained --lmms-eval outputs/lmms --vlmevalkit outputs/downstream --out outputs/table
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${OUT_DIR:-outputs/lmms}"
TEMPLATE="${TEMPLATE:-$REPO/configs/eval/lmms_eval_ssl.json}"

source "$REPO/scripts/lib/eval_args.sh"
parse_eval_args "$@"
args=()
for spec in "${EVAL_MODELS[@]}"; do
  require_checkpoint "$spec"
  args+=(--model "$spec")
done
if ((${#EVAL_DATASETS[@]})); then args+=(--data "${EVAL_DATASETS[@]}"); fi

mkdir -p "$OUT_DIR"
exec python -m verl_ext.evaluation.lmms_eval_run run --template "$TEMPLATE" --output-root "$OUT_DIR" \
  --num-processes "${NUM_PROCESSES:-1}" "${args[@]}"
