"""Shared pytest fixtures.

Fixtures here are used by several test modules; add yours below with a comment saying who uses it.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Qwen2.5-VL (model, tokenizer, processor, chat template), built once per test session.

    Used by the tokenizer/processor dependent tests (tiny model, token budget, CPU training run).
    """
    from verl_ext.tiny_model import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-qwen2.5-vl"), size="tiny")


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

    directory = tmp_path_factory.mktemp("tiny-qwen2.5-vl-format")
    return save_tiny_model(directory, size="tiny", format_warmup_steps=FORMAT_WARMUP_STEPS)


def pytest_configure(config: pytest.Config) -> None:
    # `-m "not e2e"` skips the CPU end-to-end verl run (several minutes); scripts/test.sh runs everything.
    config.addinivalue_line("markers", "e2e: end-to-end verl training run on CPU (slow, minutes)")
