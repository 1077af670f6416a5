# Arguments of the downstream evaluation scripts (eval_downstream.sh, eval_lmms.sh):
#   NAME=CKPT_DIR [NAME2=CKPT_DIR2 ...] [-- BENCHMARK ...]
# parse_eval_args sets the arrays EVAL_MODELS (NAME=CKPT_DIR specs) and EVAL_DATASETS; anything else exits 2 with
# the reason, and -h/--help prints the calling script's header comment.
# shellcheck shell=bash
# shellcheck disable=SC2034  # EVAL_MODELS and EVAL_DATASETS are read by the scripts that source this file

parse_eval_args() {
  EVAL_MODELS=()
  EVAL_DATASETS=()
  while (($#)); do
    case "$1" in
      --) shift; EVAL_DATASETS=("$@"); break ;;
      -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *=*) EVAL_MODELS+=("$1"); shift ;;
      *) echo "error: expected NAME=CKPT_DIR, got '$1' (see --help)" >&2; exit 2 ;;
    esac
  done
  if ((${#EVAL_MODELS[@]} == 0)); then
    echo "error: give at least one NAME=CKPT_DIR" >&2; exit 2
  fi
}

# require_checkpoint SPEC: exit 2 unless the CKPT_DIR of NAME=CKPT_DIR is a folder.
require_checkpoint() {
  local path="${1#*=}"
  if [[ ! -d "$path" ]]; then
    echo "error: checkpoint folder '$path' of model '${1%%=*}' does not exist" >&2; exit 2
  fi
}
