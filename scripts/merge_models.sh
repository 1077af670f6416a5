#!/usr/bin/env bash
# Turn a verl FSDP checkpoint into a Hugging Face model folder, then check it loads with transformers
# (model, processor, tokenizer, chat template), so it can go straight to evaluation or the Hub.
#
# Usage: bash scripts/merge_models.sh SAVE_DIR/global_step_N/actor TARGET_DIR
#   SAVE_DIR is the run's checkpoint folder (see scripts/run_grpo.sh); N a saved step.
#   OVERWRITE=1 replaces a TARGET_DIR that already holds a model. PYTHON picks the interpreter [python].
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

if [[ $# -ne 2 || "$1" == -* ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 1
fi
ACTOR_DIR="$(abspath "${1%/}")"
TARGET_DIR="$(abspath "${2%/}")"
PYTHON="${PYTHON:-python}"

[[ -d "$ACTOR_DIR" ]] || die "no checkpoint at $ACTOR_DIR (the folder does not exist)."
if [[ ! -f "$ACTOR_DIR/fsdp_config.json" ]]; then
  # Point at the right folder when given the step folder or the run's checkpoint root.
  [[ -f "$ACTOR_DIR/actor/fsdp_config.json" ]] && die "$ACTOR_DIR is a step folder; merge its actor:" \
    "bash $0 $ACTOR_DIR/actor $TARGET_DIR"
  if [[ -f "$ACTOR_DIR/latest_checkpointed_iteration.txt" ]]; then
    step="$(cat "$ACTOR_DIR/latest_checkpointed_iteration.txt")"
    die "$ACTOR_DIR is a run's checkpoint folder; merge one step's actor, e.g. the latest:" \
      "bash $0 $ACTOR_DIR/global_step_$step/actor $TARGET_DIR"
  fi
  die "$ACTOR_DIR is not a verl FSDP actor checkpoint (no fsdp_config.json)." \
    "Expected SAVE_DIR/global_step_N/actor with model_world_size_W_rank_R.pt shards and fsdp_config.json."
fi
world_size="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["world_size"])' \
  "$ACTOR_DIR/fsdp_config.json")"
for ((rank = 0; rank < world_size; rank++)); do
  [[ -f "$ACTOR_DIR/model_world_size_${world_size}_rank_${rank}.pt" ]] || die \
    "shard model_world_size_${world_size}_rank_${rank}.pt is missing in $ACTOR_DIR." \
    "The checkpoint is incomplete (interrupted save, or copied in part); merge another step."
done
[[ -f "$ACTOR_DIR/huggingface/config.json" ]] || die "$ACTOR_DIR/huggingface/config.json is missing;" \
  "verl writes the model config, tokenizer and processor there at every save."
if [[ -f "$TARGET_DIR/config.json" && "${OVERWRITE:-0}" != 1 ]]; then
  die "$TARGET_DIR already holds a model." "Choose another TARGET_DIR, or set OVERWRITE=1 to replace it."
fi

use_import_fix_without_gpu  # the merger imports verl, which imports torchvision
info "merging $world_size shard(s) of $ACTOR_DIR into $TARGET_DIR"
"$PYTHON" -m verl.model_merger merge --backend fsdp --local_dir "$ACTOR_DIR" --target_dir "$TARGET_DIR" \
  || die "verl's model merger failed (see its message above)."
"$PYTHON" "$REPO_ROOT/scripts/check_merged.py" "$TARGET_DIR" \
  || die "the merged model in $TARGET_DIR is incomplete (see above)."
info "done: $TARGET_DIR"
