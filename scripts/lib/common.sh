# shellcheck shell=bash
# Shared helpers for the run scripts. Source it; do not execute it.
# Every check ends the script with a message that says what is wrong and what to do, never a stack trace.

# The repository root (this file lives in <repo>/scripts/lib).
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Print a message to stderr, prefixed with the calling script's name.
info() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

warn() { printf '[%s] WARNING: %s\n' "$(basename "$0")" "$*" >&2; }

# End the script with an error. Arguments are printed one per line, so a message can carry a hint.
die() {
  printf '\n[%s] ERROR: %s\n' "$(basename "$0")" "$1" >&2
  shift
  local line
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  printf '\n' >&2
  exit 1
}

# Absolute form of a path given relative to the caller's working directory (the path need not exist).
abspath() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/$1" ;;
  esac
}

# Succeeds when the Hydra arguments only ask for information (print the config, help), so no GPU is needed.
hydra_print_only() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      --cfg | --cfg=* | -c | --help | -h | --hydra-help | --info | --info=* | -i) return 0 ;;
    esac
  done
  return 1
}

# Hydra's command line is argparse: its overrides are one positional list, so an override written after a flag
# (`--cfg job trainer.total_training_steps=1`) is "unrecognized". This splits the user's arguments into
# HYDRA_OVERRIDES and HYDRA_FLAGS (each flag with its value), so the launcher can pass the flags last, in any order
# the user wrote them. Flags that take a value: --cfg/-c, --package/-p, --config-path/-cp, --config-name/-cn,
# --config-dir/-cd, --experimental-rerun; --info/-i takes one only if it is one of Hydra's info topics.
hydra_split_args() {
  HYDRA_OVERRIDES=()
  HYDRA_FLAGS=()
  while (($#)); do
    case "$1" in
      --cfg | -c | --package | -p | --config-path | -cp | --config-name | -cn | --config-dir | -cd | \
        --experimental-rerun)
        HYDRA_FLAGS+=("$1")
        (($# > 1)) && { HYDRA_FLAGS+=("$2"); shift; }
        ;;
      --info | -i)
        HYDRA_FLAGS+=("$1")
        case "${2:-}" in all | config | defaults | defaults-tree | plugins | searchpath) HYDRA_FLAGS+=("$2"); shift ;; esac
        ;;
      -*) HYDRA_FLAGS+=("$1") ;;
      *) HYDRA_OVERRIDES+=("$1") ;;
    esac
    shift
  done
}

# Value of KEY=... among Hydra overrides (with or without a leading + or ++), or nothing.
hydra_override_value() {
  local key="$1" arg
  shift
  for arg in "$@"; do
    arg="${arg#++}"
    arg="${arg#+}"
    case "$arg" in "$key="*) printf '%s\n' "${arg#"$key="}" ;; esac
  done
}

# The launcher's checks and decisions (verl_ext/launch/preflight.py); exit status 2 with a message on a problem.
preflight() {
  "${PYTHON:-python}" -m verl_ext.launch.preflight "$@"
}

# The paths of a Hydra list value as written by verl_ext/launch/preflight.py (['/a/x.parquet','/b/y.parquet']),
# comma-separated for scripts/lib/leakage_check.sh.
hydra_list_to_csv() {
  local value="${1#[}"
  value="${value%]}"
  printf '%s' "${value//\'/}"
}

# Number of NVIDIA GPUs visible here: asks nvidia-smi, or torch when nvidia-smi is not installed.
gpu_count() {
  if command -v nvidia-smi > /dev/null 2>&1; then
    nvidia-smi -L 2> /dev/null | grep -c '^GPU ' || true
  else
    "${PYTHON:-python}" -c 'import torch; print(torch.cuda.device_count())' 2> /dev/null || echo 0
  fi
}

# Fail unless DIR is a Hugging Face model folder with a config and an image processor.
require_model_dir() {
  local dir="$1"
  [[ -e "$dir" ]] || die "no model at MODEL_PATH=$dir (the folder does not exist)." \
    "Point MODEL_PATH at a local Hugging Face folder, e.g. after" \
    "  hf download Qwen/Qwen2.5-VL-3B-Instruct --local-dir models/Qwen2.5-VL-3B-Instruct" \
    "(for a CPU smoke test: python scripts/make_tiny_model.py --out models/tiny-qwen2.5-vl)."
  [[ -f "$dir/config.json" ]] || die "no model at MODEL_PATH=$dir (no config.json in it)." \
    "MODEL_PATH must be the folder that holds config.json and the *.safetensors weights."
  [[ -f "$dir/preprocessor_config.json" || -f "$dir/processor_config.json" ]] || die \
    "the model at MODEL_PATH=$dir has no image processor (no preprocessor_config.json / processor_config.json)." \
    "Without it verl would treat the model as text-only and drop the puzzle images. Copy the processor files" \
    "of the base model into that folder."
}

# On a machine without an NVIDIA GPU, let Python processes import torchvision (needed by verl and the Qwen2-VL
# processor) through the project's import fix. Harmless where the fix is not needed.
use_import_fix_without_gpu() {
  if [[ "$(gpu_count)" -eq 0 ]]; then
    export PYTHONPATH="$REPO_ROOT/verl_ext/cpu/boot${PYTHONPATH:+:$PYTHONPATH}"
  fi
}

# The CPU runs' starting model, built once into DIR: the tiny Qwen2.5-VL after a 200-step answer-format warm-up
# (about two thirds of its responses are well formed, most answers are no valid label: something to learn).
ensure_demo_model() {
  _ensure_tiny_model "$1" --format-warmup-steps 200
}

# The learning runs' starting model, built once into DIR: the demo's format warm-up, then 400 steps that teach
# the label set of each puzzle prompt with answers drawn at random (verl_ext/tiny_model.py, warm_up_answer_choice):
# valid answers in about equal shares, and no knowledge of which one a picture calls for. Both warm-ups show faint
# grey blocks rather than full-range noise: pictures whose answers they do not decide teach the model to look past
# what varies in them, and the quiet ones leave it less to look past (docs/cpu-training.md).
ensure_learning_model() {
  _ensure_tiny_model "$1" --format-warmup-steps 200 --choice-warmup-steps 400 --warmup-pictures quiet
}

# Builds the tiny model into DIR unless DIR holds one built the same way: the settings are recorded next to it
# (DIR/.verl_ext_recipe), so a folder built with other settings (by an older version of these scripts, or for
# another purpose) is built anew rather than silently reused. A model that no record describes (placed there by
# hand, or built before the record existed) is used as it is, with a warning that says how to rebuild it.
_ensure_tiny_model() {
  local dir="$1" recipe
  shift
  recipe="make_tiny_model.py $*"
  if [[ -f "$dir/config.json" ]]; then
    if [[ ! -f "$dir/.verl_ext_recipe" ]]; then
      warn "using the model in $dir as it is: nothing records how it was built (delete the folder to build it" \
        "anew with $recipe)"
      return 0
    fi
    [[ "$(< "$dir/.verl_ext_recipe")" == "$recipe" ]] && return 0
    info "the model in $dir was built with $(< "$dir/.verl_ext_recipe"); building it anew with $recipe"
    rm -f "$dir/.verl_ext_recipe" "$dir/config.json"  # until the new one is whole, the folder holds no model
  fi
  "${PYTHON:-python}" "$REPO_ROOT/scripts/make_tiny_model.py" --out "$dir" "$@" 2>&1 \
    | grep -v -i -E "warn|writing model shards" || true
  [[ -f "$dir/config.json" ]] || die "the tiny model was not written to $dir (see the messages above)."
  printf '%s\n' "$recipe" > "$dir/.verl_ext_recipe"
}

# Take DIR for this script and every process it starts, for as long as any of them runs (verl_ext/folder_lock.py:
# a flock on DIR/.verl_ext.lock, dropped by the kernel when they all end, also on a crash or kill). When another
# process holds DIR, it is named and this script stops before changing anything.
# Usage: lock_folder DIR "what this script does there" "what a refused user should do instead"
lock_folder() {
  local dir="$1" purpose="$2" hint="$3" fd
  mkdir -p "$dir"
  exec {fd}>> "$dir/.verl_ext.lock"
  "${PYTHON:-python}" -m verl_ext.folder_lock hold "$dir" --fd "$fd" --pid $$ --purpose "$purpose" --hint "$hint" \
    || die "$dir is not free (see above); nothing was started or changed."
}

# Wait for the background child PID (started by the caller with `&`) and return its exit status. A TERM, INT or
# HUP sent to this script by pid (a job runner, a test, `kill`) is passed on to the child as TERM; the script
# waits until the child has ended and then exits itself (status 128 + the signal), so nothing it started outlives
# it and no later stage runs. Without this, bash ends on the signal at once and its child (verl, the builder)
# goes on running with no one left to stop it. TERM for all three: a background child of a script ignores INT
# (bash does that when job control is off). A command started as `( cd DIR; exec CMD ) &` is CMD itself, so the
# signal reaches it, not a subshell.
# Usage: CMD & wait_child $! || status=$?
wait_child() {
  local child="$1" status=0 signal
  _WAIT_CHILD_SIGNAL=""
  for signal in TERM INT HUP; do
    # shellcheck disable=SC2064  # the pid and the signal are fixed now, on purpose
    trap "_WAIT_CHILD_SIGNAL=$signal; kill -TERM $child 2> /dev/null || true" "$signal"
  done
  while :; do
    status=0
    wait "$child" || status=$?
    # wait returns early (status > 128) when a trapped signal arrives; keep waiting while the child shuts down.
    kill -0 "$child" 2> /dev/null || break
  done
  trap - TERM INT HUP
  if [[ -n "$_WAIT_CHILD_SIGNAL" ]]; then
    info "stopped by SIG$_WAIT_CHILD_SIGNAL; the process it started ($child) has ended (exit status $status)"
    exit $((128 + $(kill -l "$_WAIT_CHILD_SIGNAL")))
  fi
  return "$status"
}
