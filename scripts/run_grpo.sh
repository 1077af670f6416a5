#!/usr/bin/env bash
# GRPO on self-supervised puzzles with verl: builds the puzzles if they are missing, then runs
# `python -m verl.trainer.main_ppo` with configs/$CONFIG.yaml and our reward (verl_ext/reward.py).
#
# Usage: bash scripts/run_grpo.sh TASK SOURCE [HYDRA_OVERRIDE ...]
#   TASK    a registered task (rotation, jigsaw, position, contrastive, ...) or `mix` (then set TASKS)
#   SOURCE  a source known to build_benchmarks/build.py (mmbench, seedbench, folder, demo, ...)
#   Extra arguments go to verl as Hydra overrides, e.g. trainer.total_training_steps=300; `--cfg job` prints
#   the composed config (no GPU needed).
#
# Environment (all optional):
#   MODEL_PATH       local Hugging Face folder of the policy   [models/Qwen2.5-VL-3B-Instruct; 7B for *_7b configs]
#   CONFIG           config name in configs/                   [grpo_qwen2_5_vl; grpo_cpu_tiny with DEVICE=cpu]
#   DEVICE           gpu or cpu (cpu: scripts/lib/cpu_env.sh)  [gpu]
#   INPUT            the source's files, passed to the builder when the puzzles are not built yet
#   TASKS            comma-separated tasks for TASK=mix
#   BUILD_ARGS       extra builder arguments, e.g. "--difficulty hard --seed 1"
#   DATA_DIR         built puzzles (manifest.json + <split>.parquet)  [datasets/ssl/SOURCE_TASK]
#   ALLOW_EVAL_IMAGES=1  also train on the val split's puzzles (the images validated on); off by default
#   EVAL_BENCHMARK   a benchmark file the model will be evaluated on (e.g. MMBench_DEV_EN.tsv): the run refuses
#                    training puzzles made from its pictures unless ALLOW_EVAL_IMAGES=1   [none]
#   EVAL_SPLIT       only this split of EVAL_BENCHMARK (e.g. dev)
#   ONLINE=1         train on puzzles made during training from the source's training pictures (a new puzzle of
#                    every picture each epoch); validation stays the offline val split. See README, "Online puzzles"
#   CURRICULUM=adaptive  with ONLINE=1: adaptive difficulty, each task's ladder steered by the training rewards
#                    (knobs under data.online.curriculum in the config)   [off]
#   EXPERIMENT_NAME  run name                                  [SOURCE_TASK_<model folder name>]
#   SAVE_DIR         checkpoints; rerunning with the same SAVE_DIR resumes from its latest checkpoint
#                                                              [checkpoints/EXPERIMENT_NAME]
#   TENSORBOARD_DIR  TensorBoard event files                   [SAVE_DIR/tensorboard]
#   VERL_FILE_LOGGER_PATH  metrics as JSON lines, for configs with the "file" logger (the CPU config)
#   N_GPUS_PER_NODE  GPUs per node                             [all GPUs nvidia-smi lists]
#   NNODES           nodes of the Ray cluster                  [1]
#   RAY_ADDRESS      existing Ray cluster to join (needed when NNODES > 1), e.g. 10.0.0.1:6379 or auto
#   PYTHON           interpreter                               [python]
#   RUN_TIMEOUT      stop the run after this long (`timeout` syntax, e.g. 30m)
#   DRY_RUN=1        run all checks, print the settings the launcher chose and the verl command, do not start it
#   SMOKE=1          a first-contact run: one step, small batch, short responses, eager vLLM, no validation, no
#                    checkpoint (minutes, not an hour), e.g. SMOKE=1 bash scripts/run_grpo.sh rotation demo
#
# Settings chosen from the hardware and the data (each printed with its reason; a key set on the command line
# is never changed, see verl_ext/launch/settings.py): PyTorch SDPA attention on padded batches when flash-attn
# is not installed; a vLLM tensor-parallel size that divides the GPUs per node; actor offload on a single GPU;
# vLLM's max_model_len = prompt + response length. A training split smaller than one batch is refused; verl's
# own config validation runs before Ray starts (in verl's main_ppo; here for DRY_RUN=1 and --cfg job).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# The whole script is one function, read by bash before it runs, and the last line calls it and exits in one
# line (bash reads a whole line before running it): editing this file (e.g. `git pull`) during a days-long run
# cannot change what the rest of that run executes, nor make bash read on into the new text when it ends.
main() {
  if [[ $# -lt 2 || "$1" == -* ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 1
  fi
  TASK="$1"
  SOURCE="$2"
  shift 2

  DEVICE="${DEVICE:-gpu}"
  case "$DEVICE" in
    gpu) ;;
    cpu)
      [[ -f "$REPO_ROOT/scripts/lib/cpu_env.sh" ]] || die "DEVICE=cpu needs scripts/lib/cpu_env.sh, which is missing."
      # Exports the CPU platform's environment; may also set PLATFORM_OVERRIDES (Hydra overrides) and defaults.
      source "$REPO_ROOT/scripts/lib/cpu_env.sh"
      CONFIG="${CONFIG:-grpo_cpu_tiny}"
      ;;
    *) die "DEVICE=$DEVICE is not supported." "Use DEVICE=gpu (default) or DEVICE=cpu." ;;
  esac
  CONFIG="${CONFIG:-grpo_qwen2_5_vl}"
  PYTHON="${PYTHON:-python}"
  CONFIG_DIR="$REPO_ROOT/configs"
  [[ -f "$CONFIG_DIR/$CONFIG.yaml" ]] || die "no config $CONFIG.yaml in configs/." \
    "Available: $(for f in "$CONFIG_DIR"/*.yaml; do f="${f##*/}"; printf '%s ' "${f%.yaml}"; done)"

  case "$CONFIG" in
    *7b*) default_model="$REPO_ROOT/models/Qwen2.5-VL-7B-Instruct" ;;
    *) default_model="$REPO_ROOT/models/Qwen2.5-VL-3B-Instruct" ;;
  esac
  MODEL_PATH="$(abspath "${MODEL_PATH:-$default_model}")"
  require_model_dir "$MODEL_PATH"

  TASK_LABEL="$TASK"
  if [[ "$TASK" == mix ]]; then
    [[ -n "${TASKS:-}" ]] || die "TASK=mix needs TASKS, the tasks to mix." "Example: TASKS=rotation,jigsaw,position"
    TASK_LABEL="$(printf 'mix_%s' "${TASKS//,/-}" | tr -c 'A-Za-z0-9._-' '_')"
  fi
  DATA_DIR="$(abspath "${DATA_DIR:-$REPO_ROOT/datasets/ssl/${SOURCE}_${TASK_LABEL}}")"
  SMOKE="${SMOKE:-0}"
  [[ "$SMOKE" == 0 || "$SMOKE" == 1 ]] || die "SMOKE=$SMOKE: use SMOKE=1 for a one-step smoke run, or leave it unset."
  smoke_prefix=""
  [[ "$SMOKE" == 1 ]] && smoke_prefix="smoke_"  # never resumes from, or mixes with, a real run's checkpoints
  EXPERIMENT_NAME="${EXPERIMENT_NAME:-${smoke_prefix}${SOURCE}_${TASK_LABEL}_$(basename "$MODEL_PATH")}"
  EXPERIMENT_NAME="$(printf '%s' "$EXPERIMENT_NAME" | tr -c 'A-Za-z0-9._-' '_')"
  SAVE_DIR="$(abspath "${SAVE_DIR:-$REPO_ROOT/checkpoints/$EXPERIMENT_NAME}")"
  TENSORBOARD_DIR="$(abspath "${TENSORBOARD_DIR:-$SAVE_DIR/tensorboard}")"
  NNODES="${NNODES:-}"
  for var in N_GPUS_PER_NODE NNODES; do
    [[ "${!var:-1}" =~ ^[1-9][0-9]*$ ]] || die "$var=${!var} is not a positive whole number."
  done

  # Hardware. Printing the config needs none; a run on a Ray cluster is checked by verl against the cluster.
  if [[ "$DEVICE" == gpu ]] && ! hydra_print_only "$@"; then
    if [[ -z "${RAY_ADDRESS:-}" ]]; then
      gpus="$(gpu_count)"
      [[ "$gpus" -gt 0 ]] || die "no NVIDIA GPU found on this machine (nvidia-smi lists none)." \
        "GRPO with vLLM needs GPUs. To try the whole pipeline on CPU with a tiny model: bash scripts/demo.sh" \
        "To only print the composed config: bash scripts/run_grpo.sh $TASK $SOURCE --cfg job"
      N_GPUS_PER_NODE="${N_GPUS_PER_NODE:-$gpus}"
      [[ "$N_GPUS_PER_NODE" -le "$gpus" ]] || die \
        "N_GPUS_PER_NODE=$N_GPUS_PER_NODE but this machine has $gpus GPU(s)." \
        "Set N_GPUS_PER_NODE=$gpus (or fewer)."
      [[ "${NNODES:-1}" -le 1 ]] || die \
        "NNODES=$NNODES needs a Ray cluster spanning those nodes; RAY_ADDRESS is not set." \
        "On the first node:   ray start --head --port=6379" \
        "On every other node: ray start --address=<first node's IP>:6379" \
        "Then on the first node: RAY_ADDRESS=<first node's IP>:6379 NNODES=$NNODES bash $0 $TASK $SOURCE"
    else
      N_GPUS_PER_NODE="${N_GPUS_PER_NODE:-8}"
    fi
  fi

  # The package and verl must be importable here and in every Ray worker (same environment on every node).
  "$PYTHON" -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("verl") and u.find_spec("verl_ext")))' \
    2> /dev/null || die "verl or this project is not installed for $PYTHON." \
    "Activate the project's environment, or: pip install -e '.[gpu]' (see README.md)."

  # One training run per SAVE_DIR: two runs checkpointing into one folder would overwrite each other's steps and
  # resume from each other's checkpoints.
  if ! hydra_print_only "$@" && [[ "${DRY_RUN:-0}" != 1 ]]; then
    lock_folder "$SAVE_DIR" "training run $EXPERIMENT_NAME" "wait for that run to end, or set another SAVE_DIR"
  fi

  # Data: build once, then reuse. Puzzles are sized for the prompt budget verl will enforce.
  config_overrides=()
  for arg in "$@"; do [[ "$arg" == *=* && "$arg" != -* ]] && config_overrides+=("$arg"); done
  config_values="$(preflight config-value "$CONFIG_DIR" "$CONFIG" data.max_prompt_length,trainer.resume_mode \
    ${config_overrides[@]+"${config_overrides[@]}"})" || exit 1
  max_prompt_tokens="$(sed -n 1p <<< "$config_values")"
  resume_mode="$(sed -n 2p <<< "$config_values")"
  if [[ ! -f "$DATA_DIR/manifest.json" ]]; then
    if [[ -z "${INPUT:-}" && "$SOURCE" != demo && "$SOURCE" != scenes ]]; then
      die "no puzzles in DATA_DIR=$DATA_DIR (no manifest.json), and INPUT is not set to build them." \
        "Set INPUT to the $SOURCE files (see README.md, 'Building data'), e.g." \
        "  INPUT=path/to/$SOURCE bash $0 $TASK $SOURCE" \
        "or point DATA_DIR at puzzles built with build_benchmarks/build.py."
    fi
    # For the scenes source INPUT holds its settings (size=112,train=320,...), not a path.
    [[ -z "${INPUT:-}" || -e "$INPUT" || "$SOURCE" == scenes ]] || die "INPUT=$INPUT does not exist." \
      "INPUT must be the $SOURCE files the puzzles are built from (see README.md, 'Building data')."
    build=("$PYTHON" "$REPO_ROOT/build_benchmarks/build.py" --task "$TASK" --source "$SOURCE" --output "$DATA_DIR"
      --max-prompt-tokens "$max_prompt_tokens")
    if [[ -n "${INPUT:-}" ]]; then
      if [[ "$SOURCE" == scenes ]]; then build+=(--input "$INPUT"); else build+=(--input "$(abspath "$INPUT")"); fi
    fi
    [[ "$TASK" == mix ]] && build+=(--tasks "$TASKS")
    read -r -a build_args <<< "${BUILD_ARGS:-}"
    build+=(${build_args[@]+"${build_args[@]}"})
    info "building puzzles: ${build[*]}"
    "${build[@]}" || die "building the puzzles failed (see the builder's message above)."
  fi
  ONLINE="${ONLINE:-0}"
  CURRICULUM="${CURRICULUM:-off}"
  [[ "$ONLINE" == 0 || "$ONLINE" == 1 ]] || die "ONLINE=$ONLINE: use ONLINE=1 for online puzzles, or leave it unset."
  case "$CURRICULUM" in
    off) ;;
    adaptive) [[ "$ONLINE" == 1 ]] || die "CURRICULUM=adaptive steers puzzles made during training: set ONLINE=1 too." ;;
    *) die "CURRICULUM=$CURRICULUM: use CURRICULUM=adaptive (with ONLINE=1), or leave it unset." ;;
  esac
  data_args=("$DATA_DIR" --task "$TASK" --source "$SOURCE" --max-prompt-length "$max_prompt_tokens")
  [[ "${ALLOW_EVAL_IMAGES:-0}" == 1 ]] && data_args+=(--allow-eval-images)
  files="$(preflight data-files "${data_args[@]}")" || exit 1
  TRAIN_FILES="$(sed -n 1p <<< "$files")"
  VAL_FILES="$(sed -n 2p <<< "$files")"
  online_args=()
  guarded_files="$TRAIN_FILES"
  train_override="$TRAIN_FILES"
  if [[ "$ONLINE" == 1 ]]; then
    [[ "${ALLOW_EVAL_IMAGES:-0}" != 1 ]] || die "ALLOW_EVAL_IMAGES=1 trains on the val split's offline puzzles;" \
      "online puzzles come from the training pictures only. Use one or the other."
    # The training pictures, decoded once (kept while the build is unchanged); the leakage guard reads them too.
    pictures="$DATA_DIR/online/pictures.parquet"
    if ! hydra_print_only "$@"; then
      "$PYTHON" -m verl_ext.online.pictures "$DATA_DIR" --if-missing > /dev/null \
        || die "writing the online picture index failed (see above)."
    fi
    guarded_files="[$pictures]"
    train_override=online
    online_args=("data.online.pictures=$pictures" data.shuffle=false
      data.custom_cls.path=pkg://verl_ext.online.dataset data.custom_cls.name=OnlinePuzzleDataset)
    [[ "$CURRICULUM" == adaptive ]] && online_args+=(data.online.curriculum.enable=true)
    info "online puzzles from $pictures (curriculum: $CURRICULUM)"
  fi
  # Leakage guard: no picture of the validation split (or of EVAL_BENCHMARK, the benchmark the model will be
  # judged on) may appear in the training puzzles, unless ALLOW_EVAL_IMAGES=1 says it is intended.
  if ! hydra_print_only "$@"; then
    source "$REPO_ROOT/scripts/lib/leakage_check.sh"
    train_csv="$(hydra_list_to_csv "$guarded_files")"
    leakage_guard "$train_csv" "$(hydra_list_to_csv "$VAL_FILES")" \
      || die "the training puzzles share pictures with the validation puzzles (report above)."
    if [[ -n "${EVAL_BENCHMARK:-}" ]]; then
      leakage_guard "$train_csv" "$EVAL_BENCHMARK" ${EVAL_SPLIT:+--split "$EVAL_SPLIT"} \
        || die "the training puzzles use pictures of EVAL_BENCHMARK=$EVAL_BENCHMARK (report above)."
    fi
  fi
  if [[ "${ALLOW_EVAL_IMAGES:-0}" == 1 ]]; then
    warn "ALLOW_EVAL_IMAGES=1: training ALSO on the validation split's puzzles, i.e. on the images the model is"
    warn "validated on. Validation scores are then not held-out, and if that split is a benchmark's evaluation"
    warn "set (MMBench dev), benchmark results are transductive. Use it only to reproduce SSL4RL's setting."
  fi

  # Settings that follow from the hardware and the data (reasons on stderr), then verl's own config validation.
  cluster=()
  [[ -n "${N_GPUS_PER_NODE:-}" ]] && cluster+=(--cluster "trainer.n_gpus_per_node=$N_GPUS_PER_NODE")
  [[ -n "$NNODES" ]] && cluster+=(--cluster "trainer.nnodes=$NNODES")
  preflight_flags=()
  [[ "$SMOKE" == 1 ]] && preflight_flags=(--smoke)
  # verl's main_ppo validates the batch layout itself before Ray starts; the launcher repeats that check only
  # when verl will not run (a printed config, DRY_RUN), as importing verl's config classes costs seconds.
  if hydra_print_only "$@"; then
    preflight_flags+=(--print-only)
  elif [[ "${DRY_RUN:-0}" != 1 ]]; then
    preflight_flags+=(--no-verl-validation)
  fi
  chosen="$(preflight settings "$CONFIG_DIR" "$CONFIG" --device "$DEVICE" --train-files "$train_override" \
    ${cluster[@]+"${cluster[@]}"} ${preflight_flags[@]+"${preflight_flags[@]}"} -- \
    ${PLATFORM_OVERRIDES[@]+"${PLATFORM_OVERRIDES[@]}"} ${online_args[@]+"${online_args[@]}"} "$@")" || exit 1
  mapfile -t settings < <(printf '%s' "$chosen" | sed '/^$/d')

  # Resuming: verl (trainer.resume_mode=auto) restarts from the checkpoint its tracker file names. After a crash
  # the launcher first makes that the newest complete checkpoint (verl_ext/launch/resume.py says why).
  if [[ "$resume_mode" == auto ]] && ! hydra_print_only "$@"; then
    dry=()
    [[ "${DRY_RUN:-0}" == 1 ]] && dry=(--dry-run)
    step="$(preflight resume "$SAVE_DIR" ${dry[@]+"${dry[@]}"})" || exit 1
    if [[ -n "$step" ]]; then
      info "resuming from $SAVE_DIR/global_step_$step (to start over: another SAVE_DIR, or trainer.resume_mode=disable)"
    fi
  fi

  overrides=(
    "data.train_files=$train_override"
    "data.val_files=$VAL_FILES"
    "actor_rollout_ref.model.path=$MODEL_PATH"
    "trainer.experiment_name=$EXPERIMENT_NAME"
    "trainer.default_local_dir=$SAVE_DIR"
    # Our agent loops by name (configs/agent_loops.yaml); the CPU config samples with the seeded one.
    "actor_rollout_ref.rollout.agent.agent_loop_config_path=$REPO_ROOT/configs/agent_loops.yaml"
    # Set through Ray so the trainer process gets it on whichever node it runs (Ray's processes inherit the
    # environment of their node's `ray start`, not this one's).
    "++ray_kwargs.ray_init.runtime_env.env_vars.TENSORBOARD_DIR=$TENSORBOARD_DIR"
  )
  # verl's "file" logger (the CPU config's metrics.jsonl) reads its path in the trainer process, likewise.
  [[ -n "${VERL_FILE_LOGGER_PATH:-}" ]] && overrides+=(
    "++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH=$(abspath "$VERL_FILE_LOGGER_PATH")")
  [[ -n "${N_GPUS_PER_NODE:-}" ]] && overrides+=("trainer.n_gpus_per_node=$N_GPUS_PER_NODE")
  [[ -n "$NNODES" ]] && overrides+=("trainer.nnodes=$NNODES")
  overrides+=(${settings[@]+"${settings[@]}"} ${PLATFORM_OVERRIDES[@]+"${PLATFORM_OVERRIDES[@]}"})
  overrides+=(${online_args[@]+"${online_args[@]}"})

  # Hydra reads its flags (--cfg job, ...) only after every override: the user's flags go last, wherever written.
  hydra_split_args "$@"
  cmd=("$PYTHON" -m verl.trainer.main_ppo --config-dir="$CONFIG_DIR" --config-name="$CONFIG" "${overrides[@]}"
    ${HYDRA_OVERRIDES[@]+"${HYDRA_OVERRIDES[@]}"})
  # --foreground keeps verl in this script's process group: Ctrl-C, or a kill of the group, reaches it (without
  # it, timeout moves itself and verl into a group of their own, which goes on training after the script is gone).
  [[ -n "${RUN_TIMEOUT:-}" ]] && cmd=(timeout --foreground --kill-after=60 "$RUN_TIMEOUT" "${cmd[@]}")
  export TENSORBOARD_DIR

  if hydra_print_only "$@"; then
    [[ "$DEVICE" == cpu ]] || use_import_fix_without_gpu  # verl's config imports torchvision
    exec "${cmd[@]}" ${HYDRA_FLAGS[@]+"${HYDRA_FLAGS[@]}"}
  fi
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "${cmd[@]}" ${HYDRA_FLAGS[@]+"${HYDRA_FLAGS[@]}"}
    printf '\n'
    exit 0
  fi

  stamp="$(date +%Y%m%d_%H%M%S)"
  log="$SAVE_DIR/train_$stamp.log"
  # Hydra's own record of the run (composed config, overrides), next to its checkpoints rather than in ./outputs.
  [[ -n "$(hydra_override_value hydra.run.dir "$@")" ]] || cmd+=("hydra.run.dir=$SAVE_DIR/hydra/$stamp")
  cmd+=(${HYDRA_FLAGS[@]+"${HYDRA_FLAGS[@]}"})
  info "config $CONFIG, model $MODEL_PATH"
  info "checkpoints: $SAVE_DIR   TensorBoard: $TENSORBOARD_DIR   log: $log"
  # verl runs as a child this script waits on (wait_child), so a TERM sent to the script by pid stops verl too;
  # tee writes the log from a file descriptor of its own, so its pid is known and the last lines reach the log.
  local tee_fd tee_pid status=0
  exec {tee_fd}> >(tee "$log")
  tee_pid=$!
  "${cmd[@]}" >&"$tee_fd" 2>&1 &
  wait_child $! || status=$?
  exec {tee_fd}>&-
  wait "$tee_pid" || true
  return "$status"
}

main "$@"; exit "$?"
