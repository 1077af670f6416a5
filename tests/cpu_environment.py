"""The environment of scripts/lib/cpu_env.sh as a dict, for tests that start CPU training runs themselves."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_environment() -> dict[str, str]:
    """This process's environment plus what scripts/lib/cpu_env.sh exports."""
    done = subprocess.run(
        ["bash", "-c", 'source "$0" && env -0', str(REPO / "scripts" / "lib" / "cpu_env.sh")],
        capture_output=True,
        check=True,
    )
    return dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)


def require_cpu_stack() -> None:
    """Skip the calling test unless verl, vLLM and Ray are installed (the end-to-end CPU runs need all three)."""
    import importlib.util

    import pytest

    for module in ("verl", "vllm", "ray"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: install the CPU stack (scripts/test.sh does) to run this test")


def agent_loop_on_the_cpu_path(name: str, first: str = "verl.experimental.agent_loop.single_turn_agent_loop") -> str:
    """The class verl's registry names for agent loop ``name`` in a fresh process that imports ``first`` (by
    default only verl's single-turn loop, as verl's own worker processes do), with the CPU start-up hook on its
    path."""
    code = f"""
        import {first}
        from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
        print(_agent_loop_registry[{name!r}]["_target_"])
    """
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "verl_ext" / "cpu" / "boot"), *paths])}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()
