"""The console commands pyproject.toml declares point at callables that exist."""

import importlib
from pathlib import Path

import pytest
import tomllib

SCRIPTS = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_console_command_resolves(command: str) -> None:
    module, function = SCRIPTS[command].split(":")
    assert callable(getattr(importlib.import_module(module), function))
