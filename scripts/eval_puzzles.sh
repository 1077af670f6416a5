#!/usr/bin/env bash
# Puzzle accuracy of a model on held-out puzzles, with the rollout engine and reward of training: verl runs in
# validation-only mode (trainer.val_only=True) and verl_ext/evaluation/puzzle_report.py turns its validation dump
# into a per-task table (accuracy, partial credit, format rate, response length) as JSON and Markdown.
#
# Usage:
#   bash scripts/eval_puzzles.sh MODEL_DIR DATA.parquet [DATA2.parquet ...] [-- HYDRA_OVERRIDE ...]
#   bash scripts/eval_puzzles.sh --compare BASE_DIR TRAINED_DIR DATA.parquet [...] [-- HYDRA_OVERRIDE ...]
#   DATA files are puzzle parquets written by build_benchmarks/build.py, usually their val.parquet (one per task).
#
# Environment (all optional):
#   DEVICE       gpu or cpu (cpu: scripts/lib/cpu_env.sh and the tiny-model config)   [gpu]
#   CONFIG       config in configs/ (the one the model was trained with)  [grpo_qwen2_5_vl; grpo_cpu_tiny on cpu]
#   OUT_DIR      results folder                                  [outputs/puzzle_eval/<model folder name>]
#   LABELS       labels of the models in the tables, comma-separated   [model folder names]
#   MAX_ROWS     evaluate only the first N puzzles of each file
#   GROUP_BY     row fields of the table, comma-separated (task, difficulty, source, file)   [task]
#   N_GPUS_PER_NODE  GPUs to use                                [all GPUs nvidia-smi lists]
#   PYTHON       interpreter                                      [python]
#   RUN_TIMEOUT  stop one verl run after this long (`timeout` syntax)   [on cpu: VERL_CPU_RUN_TIMEOUT seconds]
# Output: OUT_DIR/<label>/{puzzle_report.json,puzzle_report.md,generations/,verl.log}, with --compare also
# OUT_DIR/comparison.{json,md}; the evaluated rows are in OUT_DIR/data/ (eval_set.parquet, eval_rows.jsonl).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-1}"; }

models=()
if [[ "${1:-}" == --compare ]]; then
  [[ $# -ge 4 ]] || usage
  models=("$2" "$3")
  shift 3
elif [[ $# -ge 2 && "$1" != -* ]]; then
  models=("$1")
  shift
else
  usage
fi
data=()
while (($#)) && [[ "$1" != -- ]]; do data+=("$1"); shift; done
[[ "${1:-}" == -- ]] && shift
extra=("$@")
((${#data[@]})) || die "no puzzle files given." "Usage: bash $0 MODEL_DIR DATA.parquet [...]"

DEVICE="${DEVICE:-gpu}"
case "$DEVICE" in
  gpu) CONFIG="${CONFIG:-grpo_qwen2_5_vl}" ;;
  cpu)
    [[ -f "$REPO_ROOT/scripts/lib/cpu_env.sh" ]] || die "DEVICE=cpu needs scripts/lib/cpu_env.sh, which is missing."
    source "$REPO_ROOT/scripts/lib/cpu_env.sh"
    CONFIG="${CONFIG:-grpo_cpu_tiny}"
    RUN_TIMEOUT="${RUN_TIMEOUT:-${VERL_CPU_RUN_TIMEOUT:-1500}}"
    ;;
  *) die "DEVICE=$DEVICE is not supported." "Use DEVICE=gpu (default) or DEVICE=cpu." ;;
esac
PYTHON="${PYTHON:-python}"
[[ -f "$REPO_ROOT/configs/$CONFIG.yaml" ]] || die "no config $CONFIG.yaml in configs/."

for i in "${!models[@]}"; do
  models[i]="$(abspath "${models[i]}")"
  require_model_dir "${models[i]}"
done
for i in "${!data[@]}"; do
  data[i]="$(abspath "${data[i]}")"
  [[ -f "${data[i]}" ]] || die "no puzzle file ${data[i]}."
done

labels=()
if [[ -n "${LABELS:-}" ]]; then
  IFS=',' read -r -a labels <<< "$LABELS"
  [[ ${#labels[@]} -eq ${#models[@]} ]] || die "LABELS has ${#labels[@]} names for ${#models[@]} model(s)."
else
  for m in "${models[@]}"; do labels+=("$(basename "$m")"); done
  if [[ ${#labels[@]} -eq 2 && "${labels[0]}" == "${labels[1]}" ]]; then labels=(base trained); fi
fi
OUT_DIR="$(abspath "${OUT_DIR:-$REPO_ROOT/outputs/puzzle_eval/${labels[-1]}}")"
# Two evaluations into one OUT_DIR would delete and overwrite each other's generations: the second one stops here.
lock_folder "$OUT_DIR" "a puzzle evaluation" "wait for it to end, or set OUT_DIR to another folder"

if [[ "$DEVICE" == gpu && -z "${N_GPUS_PER_NODE:-}" ]]; then
  N_GPUS_PER_NODE="$(gpu_count)"
  [[ "$N_GPUS_PER_NODE" -gt 0 ]] || die "no NVIDIA GPU found (nvidia-smi lists none)." \
    "On a CPU-only machine use DEVICE=cpu with the tiny model (python scripts/make_tiny_model.py --out DIR)."
fi

# One numbered file with every puzzle: one verl run per model, and each response can be traced to its row.
prepare=("$PYTHON" -m verl_ext.evaluation.puzzle_eval prepare "$OUT_DIR/data" "${data[@]}")
[[ -n "${MAX_ROWS:-}" ]] && prepare+=(--max-rows "$MAX_ROWS")
"${prepare[@]}"
EVAL_SET="$OUT_DIR/data/eval_set.parquet"

reports=()
for i in "${!models[@]}"; do
  model="${models[i]}"
  label="${labels[i]}"
  run_dir="$OUT_DIR/$label"
  rm -rf "$run_dir/generations"
  mkdir -p "$run_dir"
  overrides=(
    "data.train_files=$EVAL_SET"  # verl builds a training loader even in val-only mode; it is never iterated
    "data.val_files=$EVAL_SET"
    "actor_rollout_ref.model.path=$model"
    "trainer.val_only=True"
    "trainer.val_before_train=True"
    "trainer.validation_data_dir=$run_dir/generations"
    "trainer.resume_mode=disable"  # never load a training checkpoint over the model being evaluated
    "trainer.default_local_dir=$run_dir/unused_checkpoints"
    "trainer.experiment_name=eval_$label"
    "trainer.logger=[console]"
    "trainer.log_val_generations=0"
    "actor_rollout_ref.actor.use_kl_loss=False"  # no reference model needed to generate
    # The training reward plus each row's number (verl_ext/evaluation/eval_reward.py).
    "reward.custom_reward_function.path=pkg://verl_ext.evaluation.eval_reward"
    "reward.custom_reward_function.name=compute_score"
  )
  [[ -n "${N_GPUS_PER_NODE:-}" ]] && overrides+=("trainer.n_gpus_per_node=$N_GPUS_PER_NODE")
  cmd=("$PYTHON" -m verl.trainer.main_ppo --config-dir="$REPO_ROOT/configs" --config-name="$CONFIG"
    "${overrides[@]}" ${extra[@]+"${extra[@]}"})
  # --foreground keeps verl in this script's process group: Ctrl-C, or a kill of the group, reaches it (without
  # it, timeout moves itself and verl into a group of their own, which goes on training after the script is gone).
  [[ -n "${RUN_TIMEOUT:-}" ]] && cmd=(timeout --foreground --kill-after=60 "$RUN_TIMEOUT" "${cmd[@]}")
  info "evaluating $label ($model) on $(wc -l < "$OUT_DIR/data/eval_rows.jsonl") puzzles; log: $run_dir/verl.log"
  status=0
  "${cmd[@]}" > "$run_dir/verl.log" 2>&1 &
  wait_child $! || status=$?  # a TERM sent to this script stops verl as well
  if [[ $status -ne 0 ]]; then
    tail -n 40 "$run_dir/verl.log" >&2
    die "verl exited with status $status for $label (full log: $run_dir/verl.log)."
  fi
  compgen -G "$run_dir/generations/*.jsonl" > /dev/null || die "verl wrote no validation dump for $label." \
    "See $run_dir/verl.log."
  report=("$PYTHON" -m verl_ext.evaluation.puzzle_report report --generations "$run_dir/generations"
    --rows "$OUT_DIR/data/eval_rows.jsonl" --out "$run_dir" --label "$label" --tokenizer "$model"
    --group-by "${GROUP_BY:-task}")
  "${report[@]}"
  reports+=("$run_dir/puzzle_report.json")
done

if ((${#reports[@]} > 1)); then
  "$PYTHON" -m verl_ext.evaluation.puzzle_report compare "${reports[@]}" --labels "${labels[@]}" --out "$OUT_DIR"
fi
info "results in $OUT_DIR"
