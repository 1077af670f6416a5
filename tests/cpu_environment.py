"""The environment of scripts/lib/cpu_env.sh as a dict, for tests that start CPU training runs themselves."""

from __future__ import annotations

import subprocess
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
