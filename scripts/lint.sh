#!/usr/bin/env bash
# The style gate: ruff lint, ruff format (no drift allowed) and shellcheck. scripts/test.sh runs it before the
# tests, so CI fails on lint or format drift. Settings live in pyproject.toml.
#
# Usage: bash scripts/lint.sh          check only (what CI does)
#        bash scripts/lint.sh --fix    apply ruff's safe fixes and format the tree, then check
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# The tools come from the project's environment when one is active or present (scripts/lib/install.sh puts them there).
VENV="${VENV:-$REPO/.venv}"
[[ -x "$VENV/bin/ruff" ]] && PATH="$VENV/bin:$PATH"
for tool in ruff shellcheck; do
  command -v "$tool" > /dev/null || { echo "[lint.sh] ERROR: $tool not found; pip install -e '.[lint]'" >&2; exit 2; }
done

if [[ "${1:-}" == --fix ]]; then
  ruff check --fix .
  ruff format .
fi
mapfile -t shell_files < <(git ls-files '*.sh' .ci/run)
status=0
ruff check . || status=1
ruff format --check . || status=1
shellcheck -x "${shell_files[@]}" || status=1
if [[ "$status" -eq 0 ]]; then
  echo "[lint.sh] lint, format and shellcheck clean"
else
  echo "[lint.sh] ERROR: the style gate failed (bash scripts/lint.sh --fix applies what ruff can fix)" >&2
fi
exit "$status"
