#!/usr/bin/env bash
# Install everything (pinned CPU stack + this project, in a virtual environment) and run the whole test suite,
# including the CPU end-to-end verl run (tests/test_train_e2e_cpu.py, a few minutes). Exits non-zero on failure.
#
# Usage: bash scripts/test.sh [PYTEST_ARGS ...]     e.g. bash scripts/test.sh -m "not e2e" -x
# Environment:
#   VENV           virtual environment to create or reuse          [.venv in the repository]
#   TEST_TIMEOUT   wall-clock limit for the pytest run, `timeout` syntax  [60m]
#   TEST_WORKERS   pytest-xdist worker processes; 0 runs everything in this process   [2]
#   SKIP_LINT=1    skip the style gate (scripts/lint.sh), e.g. while iterating on one test
#   (see scripts/lib/install.sh for PYTHON, TORCH_CPU_INDEX, FORCE_INSTALL)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="${VENV:-$REPO/.venv}"

source "$REPO/scripts/lib/install.sh"
source "$REPO/scripts/lib/common.sh"
install_cpu_stack "$VENV"
# As if activated: scripts the tests run call plain `python`.
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"

# The style gate first: lint or format drift fails the run before any test (SKIP_LINT=1 skips it locally).
if [[ "${SKIP_LINT:-0}" != 1 ]]; then
  VENV="$VENV" bash "$REPO/scripts/lint.sh"
fi

# The CPU environment for every test process: the torchvision fix, the verl CPU platform, and HF offline flags
# (so no test can reach the hub).
source "$REPO/scripts/lib/cpu_env.sh"
# One OpenMP thread per test process, as Ray gives each verl worker: a process that has run torch ops with an OpenMP
# thread pool and then forks (datasets' filter in verl's RLHFDataset, process pools) can deadlock in the child.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# A private pytest base folder: pytest keeps only the 3 newest numbered folders per user, so another pytest session
# on the same machine would otherwise delete the folders of this (long) run while it still uses them.
basetemp="$(mktemp -d "${TMPDIR:-/tmp}/verl_ext_tests.XXXXXX")"
# Two workers on 2 cores: the modules with end-to-end verl runs all go to one of them, one after another, while
# the other worker runs the rest, most of which keeps one core busy at a time (tests/conftest.py schedules them;
# every module stays on one worker). Arguments given to this script come last, so `-n 0` there wins.
workers=(-n "${TEST_WORKERS:-2}" --dist loadscope)
# pytest runs as a child this script waits on (wait_child), so a TERM sent to this script stops the tests too.
set +e
timeout --kill-after=60 "${TEST_TIMEOUT:-60m}" "$VENV/bin/python" -m pytest tests -ra --durations=15 \
  --basetemp="$basetemp/pytest" -p no:cacheprovider "${workers[@]}" "$@" &
wait_child $!
status=$?
set -e
[[ "$status" -eq 0 ]] && rm -rf "$basetemp"  # kept on failure, for the logs of the end-to-end run
case "$status" in
  0) echo "[test.sh] all tests passed" ;;
  5) echo "[test.sh] ERROR: pytest collected no tests (exit 5); the suite or its selection is broken" >&2 ;;
  124 | 137) echo "[test.sh] ERROR: the test run exceeded TEST_TIMEOUT=${TEST_TIMEOUT:-60m} and was stopped" >&2 ;;
  *) echo "[test.sh] ERROR: tests failed (pytest exit code $status); files of the run kept in $basetemp" >&2 ;;
esac
exit "$status"
