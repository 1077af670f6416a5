"""The answer-token agent loop: verl trains only the token that starts each response's answer."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from cpu_environment import agent_loop_on_the_cpu_path

pytest.importorskip("verl")

from verl_ext.answer_token_loss import NAME, AnswerTokenAgentLoop, answer_start, answer_token_mask  # noqa: E402
from verl_ext.seeded_rollout import SeededSingleTurnAgentLoop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


@pytest.mark.parametrize("answer", ["0", "180"])
def test_only_the_token_that_starts_the_answer_is_trained(tokenizer, answer: str) -> None:
    thought = "<think> Let me look at the picture. </think> "
    response = ids(tokenizer, f"{thought}<answer>{answer}</answer><|im_end|>")
    position = answer_start(tokenizer, response)
    assert position is not None and tokenizer.decode(response[position:]).startswith(answer)
    assert tokenizer.decode(response[:position]) == f"{thought}<answer>"
    mask = answer_token_mask(tokenizer, response, [1] * len(response))
    assert mask == [int(i == position) for i in range(len(response))]


def test_a_blank_after_the_tag_is_skipped(tokenizer) -> None:
    response = ids(tokenizer, "<think> x </think> <answer> 90</answer>")
    position = answer_start(tokenizer, response)
    assert tokenizer.decode(response[position : position + 1]).strip() == "9"


@pytest.mark.parametrize(
    "text",
    ["<think> no answer here </think>", "<think> x </think> <answer>", "<think> x </think> <answer>   "],
    ids=["no-tag", "tag-at-the-end", "only-blanks-after-the-tag"],
)
def test_a_response_without_an_answer_is_trained_whole(tokenizer, text: str) -> None:
    """A broken format is still trained away: its mask is left as the rollout made it."""
    response = ids(tokenizer, text)
    assert answer_start(tokenizer, response) is None
    mask = [1] * (len(response) - 1) + [0]
    assert answer_token_mask(tokenizer, response, mask) == mask


def test_the_loop_returns_the_seeded_loops_output_with_the_mask_cut(tokenizer, monkeypatch) -> None:
    response = ids(tokenizer, "<think> x </think> <answer>180</answer>")
    seen: list[dict[str, Any]] = []

    async def seeded_run(self, sampling_params: dict[str, Any], **kwargs: Any) -> SimpleNamespace:
        seen.append(sampling_params)
        return SimpleNamespace(response_ids=response, response_mask=[1] * len(response))

    monkeypatch.setattr(SeededSingleTurnAgentLoop, "run", seeded_run)
    loop = object.__new__(AnswerTokenAgentLoop)  # verl's constructor needs a running server; run() does not
    loop.tokenizer = tokenizer
    output = asyncio.run(loop.run({"temperature": 1.0}, priority=3, global_steps=1))
    assert seen == [{"temperature": 1.0}]  # sampled as the seeded loop samples
    assert sum(output.response_mask) == 1
    assert tokenizer.decode(response[output.response_mask.index(1) :]).startswith("180")


def test_verl_can_build_the_loop_by_name_from_the_file_and_on_the_cpu_path() -> None:
    entries = yaml.safe_load((REPO / "configs" / "agent_loops.yaml").read_text())
    entry = next(e for e in entries if e["name"] == NAME)
    module, _, name = entry["_target_"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is AnswerTokenAgentLoop
    assert agent_loop_on_the_cpu_path(NAME) == "verl_ext.answer_token_loss.AnswerTokenAgentLoop"


def test_a_tag_token_that_runs_on_into_the_answer_is_the_answer_token() -> None:
    """A tokenizer may merge the tag's end with the answer (">0"): that token decides the answer."""
    pieces = ["<think> x </think> ", "<", "answer", ">0", "</answer>"]
    fake = SimpleNamespace(decode=lambda ids: "".join(pieces[i] for i in ids))
    assert answer_start(fake, list(range(len(pieces)))) == 3


@pytest.mark.parametrize("first", ["verl_ext.seeded_rollout", "verl_ext.answer_token_loss"])
def test_both_loops_register_whichever_module_a_process_imports_first(first: str) -> None:
    """With the start-up hook, importing the seeded loop first runs the hook while that module is half made; the
    answer-token variant must still find its base class."""
    assert agent_loop_on_the_cpu_path(NAME, first) == "verl_ext.answer_token_loss.AnswerTokenAgentLoop"
    assert agent_loop_on_the_cpu_path("seeded_single_turn", first).endswith("SeededSingleTurnAgentLoop")
