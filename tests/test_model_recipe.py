"""The scripts' tiny starting models (scripts/lib/common.sh: ensure_demo_model, ensure_learning_model) are built
once per folder and recipe: a folder built with other settings is built anew, never silently reused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ensure(tmp_path: Path, function: str, model: Path, builder: str | None = None) -> subprocess.CompletedProcess:
    """Run one of common.sh's ensure functions with a stand-in interpreter (``builder``, a shell script; by default
    one that records make_tiny_model.py calls and writes a config.json where the model would go: the real build
    takes minutes)."""
    calls = tmp_path / "calls.txt"
    wrapper = tmp_path / "python"
    wrapper.write_text(
        builder
        or "#!/bin/sh\n"
        f'case "$1" in *make_tiny_model.py) shift; echo "$@" >> "{calls}";'
        ' while [ "$1" != --out ]; do shift; done; mkdir -p "$2"; echo "{}" > "$2/config.json"; exit 0;; esac\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    script = f'source "{REPO / "scripts" / "lib" / "common.sh"}" && {function} "$1"'
    return subprocess.run(
        ["bash", "-c", script, "ensure", str(model)],
        env={**os.environ, "PYTHON": str(wrapper)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def builds(tmp_path: Path) -> list[str]:
    calls = tmp_path / "calls.txt"
    return calls.read_text().splitlines() if calls.exists() else []


def test_a_model_is_built_once_per_recipe(tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert ensure(tmp_path, "ensure_learning_model", model).returncode == 0
    assert ensure(tmp_path, "ensure_learning_model", model).returncode == 0
    assert len(builds(tmp_path)) == 1 and "--warmup-pictures quiet" in builds(tmp_path)[0]
    # The same folder asked for with another recipe is built anew, and says so.
    result = ensure(tmp_path, "ensure_demo_model", model)
    assert result.returncode == 0 and "building it anew" in result.stderr
    assert len(builds(tmp_path)) == 2 and "--choice-warmup-steps" not in builds(tmp_path)[1]
    assert (model / ".verl_ext_recipe").read_text().strip().endswith("--format-warmup-steps 200")


def test_a_model_nothing_describes_is_used_as_it_is_with_a_warning(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # placed by hand, or built before recipes were recorded
    result = ensure(tmp_path, "ensure_learning_model", model)
    assert result.returncode == 0 and builds(tmp_path) == []
    assert "nothing records how it was built" in result.stderr and "delete the folder" in result.stderr


def test_a_build_that_writes_no_model_is_a_clear_error(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "config.json").parent.mkdir()
    (model / "config.json").write_text("{}")
    (model / ".verl_ext_recipe").write_text("make_tiny_model.py --an-older-recipe\n")
    result = ensure(tmp_path, "ensure_learning_model", model, builder="#!/bin/sh\nexit 1\n")
    assert result.returncode != 0 and "was not written" in result.stderr
    # The old model is gone rather than left looking finished under a recipe that no longer describes it.
    assert not (model / "config.json").exists() and not (model / ".verl_ext_recipe").exists()
