"""Shared pytest fixtures.

Fixtures here are used by several test modules; add yours below with a comment saying who uses it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

# scripts/test.sh runs the suite on two pytest-xdist workers (--dist loadscope): each test module goes to one
# worker as a whole, so its module fixtures are built once, and every module with end-to-end tests goes to one
# worker as one unit, first, so two verl runs never share the 2 cores while the other worker runs the rest.
# xdist's own grouping mark (xdist_group with --dist loadgroup) is not used: with pytest 9.2 it silently groups
# nothing (pytest-dev/pytest-xdist#1386).
E2E_GROUP = "e2e"


@functools.cache
def _has_e2e_tests(module: Path) -> bool:
    """Whether a test module marks any of its tests ``e2e`` (the scheduler sees node ids, not marks)."""
    return module.is_file() and "pytest.mark.e2e" in module.read_text(encoding="utf-8")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:  # xdist's types: imported late
    """With ``--dist loadscope``: xdist's by-module units, with every end-to-end module in one unit, sent first."""
    if config.getvalue("dist") != "loadscope":
        return None  # xdist's own scheduler for the mode asked for
    from xdist.scheduler import LoadScopeScheduling

    class SuiteScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return E2E_GROUP if _has_e2e_tests(config.rootpath / module) else module

        def _assign_work_unit(self, node: object) -> None:
            if E2E_GROUP in self.workqueue:
                self.workqueue.move_to_end(E2E_GROUP, last=False)  # the longest unit starts first
            super()._assign_work_unit(node)

    return SuiteScheduling(config, log)


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """``build(folder)`` once per test run, shared by every pytest-xdist worker (each has a session of its own):
    the first worker to get here builds under a file lock, the others wait and reuse the folder. Without xdist
    the folder lies in this session's own base folder, as any session fixture's would."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's base folder, above the per-worker ones
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            build(folder)
            done.write_text(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Qwen2.5-VL (model, tokenizer, processor, chat template), built once per test run.

    Used by the tokenizer/processor dependent tests (tiny model, token budget, CPU training run).
    """
    from verl_ext.tiny_model import save_tiny_model

    return built_once(tmp_path_factory, "tiny-qwen2.5-vl", lambda folder: save_tiny_model(folder, size="tiny"))


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path):
    """The tiny model's Qwen2.5-VL processor. Used by the tests that load rows through verl's dataset and prompt
    path (test_build_verl, test_images_reach_policy)."""
    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()  # verl's image path imports qwen_vl_utils, which imports torchvision
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(tiny_model_dir))


# Warm-up steps that teach the tiny model the <think>/<answer> format in part (about 40 s on 2 free cores), as
# the demo's model: sampled responses are often, not always, well formed, so GRPO groups get different rewards.
FORMAT_WARMUP_STEPS = 200


@pytest.fixture(scope="session")
def format_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2.5-VL after the answer-format warm-up: it writes ``<think> .. </think> <answer>..</answer>``.

    Used where rewards must vary (the CPU training runs). Its greedy answers are not always well formed (how
    often depends on the CPU's float rounding); test_tiny_model.py checks a longer warm-up that makes them so.
    """
    from verl_ext.tiny_model import save_tiny_model

    def build(folder: Path) -> Path:
        return save_tiny_model(folder, size="tiny", format_warmup_steps=FORMAT_WARMUP_STEPS)

    return built_once(tmp_path_factory, "tiny-qwen2.5-vl-format", build)


def pytest_configure(config: pytest.Config) -> None:
    # `-m "not e2e"` skips the CPU end-to-end verl run (several minutes); scripts/test.sh runs everything.
    config.addinivalue_line("markers", "e2e: end-to-end verl training run on CPU (slow, minutes)")
