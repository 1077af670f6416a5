# shellcheck shell=bash
# Leakage guard for run scripts (source it; owned by the evaluation code, see verl_ext/evaluation/leakage.py).
#
#   source "$REPO/scripts/lib/leakage_check.sh"
#   leakage_guard "$TRAIN_FILE" "$VAL_FILE"                      # train vs the split the run validates on
#   leakage_guard "$TRAIN_FILE" "$EVAL_BENCHMARK" --split dev    # train vs a raw benchmark file (MMBench dev)
#
# Returns 0 when the training puzzles share no picture (content id) with the benchmark, or when
# ALLOW_EVAL_IMAGES=1 says training on them is intended (a warning is printed). Returns 1 with a report
# otherwise, 2 on errors; call it under `set -e` or check the status. Several training files may be given
# before the benchmark as one comma-separated argument.
leakage_guard() {
  if (($# < 2)); then
    echo "leakage_guard: usage: leakage_guard TRAIN_FILE[,TRAIN_FILE...] BENCHMARK [--split NAME] [--source NAME]" >&2
    return 2
  fi
  local train="$1" benchmark="$2"
  shift 2
  local -a files
  IFS=',' read -r -a files <<< "$train"
  "${PYTHON:-python}" -m verl_ext.evaluation.leakage "${files[@]}" --benchmark "$benchmark" --guard "$@"
}
