"""The seeded agent loop: a reproducible seed of its own for every rollout request, and how verl finds it."""

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

from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop  # noqa: E402

from verl_ext import seeded_rollout  # noqa: E402
from verl_ext.seeded_rollout import NAME, SeededSingleTurnAgentLoop, request_seed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_request_seeds_are_reproducible_distinct_and_in_range() -> None:
    keys = [(step, position, occurrence) for step in (None, 1, 2) for position in range(32) for occurrence in range(8)]
    seeds = [request_seed(42, *key) for key in keys]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert seeds == [request_seed(42, *key) for key in keys]
    assert request_seed(42, 1, 0, 0) != request_seed(43, 1, 0, 0)


Call = tuple[dict[str, Any], int, int]  # sampling parameters, prompt position (verl's priority), global step


def _sampled_params(monkeypatch: pytest.MonkeyPatch, calls: list[Call]) -> list[dict[str, Any]]:
    """The sampling parameters each call of the seeded loop hands to verl's loop, in a fresh process."""
    seen: list[dict[str, Any]] = []

    async def record(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any) -> None:
        seen.append(sampling_params)

    monkeypatch.setattr(SingleTurnAgentLoop, "run", record)
    monkeypatch.setattr(seeded_rollout, "_counts", seeded_rollout.RequestCounts())
    loop = object.__new__(SeededSingleTurnAgentLoop)  # verl's constructor needs a running server; run() does not
    loop.rollout_config = SimpleNamespace(seed=42)

    async def step_calls(step: int) -> None:
        # Started together, as verl starts a step's samples.
        await asyncio.gather(
            *(loop.run(params, priority=position, global_steps=step) for params, position, s in calls if s == step)
        )

    for step in sorted({step for _, _, step in calls}):
        asyncio.run(step_calls(step))
    return seen


def _seed_sets(calls: list[Call], params: list[dict[str, Any]]) -> dict[tuple[int, int], list[int]]:
    """{(step, position): sorted seeds}: a group's samples are interchangeable, so their seeds are a set."""
    ran = sorted(calls, key=lambda call: call[2])  # the order the helper ran them in: step by step
    out: dict[tuple[int, int], list[int]] = {}
    for (_, position, step), p in zip(ran, params, strict=True):
        out.setdefault((step, position), []).append(p["seed"])
    return {key: sorted(seeds) for key, seeds in out.items()}


def test_every_request_gets_its_own_seed_the_same_in_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = {"temperature": 1.0, "top_p": 1.0}
    # Two steps of 3 prompts x 4 samples.
    calls = [(shared, position, step) for step in (1, 2) for position in range(3) for _ in range(4)]
    first = _sampled_params(monkeypatch, calls)
    seeds = [params["seed"] for params in first]
    assert len(set(seeds)) == len(seeds), "two samples share a seed: their responses would be identical"
    assert "seed" not in shared, "the caller's parameters (shared by every sample) must not be changed"
    assert all(params["temperature"] == 1.0 for params in first)
    # Another run whose requests reach the loop in another order gets the same seeds for each prompt of each step,
    # and so does a run resumed at step 2 (a fresh process that never made step 1's requests).
    reordered = calls[::-1]
    assert _seed_sets(reordered, _sampled_params(monkeypatch, reordered)) == _seed_sets(calls, first)
    resumed = [call for call in calls if call[2] == 2]
    expected = {key: value for key, value in _seed_sets(calls, first).items() if key[0] == 2}
    assert _seed_sets(resumed, _sampled_params(monkeypatch, resumed)) == expected


def _seeds_by_request(monkeypatch: pytest.MonkeyPatch, requests: list[tuple[int, int]], step: int = 1) -> dict:
    """{(row, sample): seed} for one step whose requests carry what verl's TransferQueue trainer passes (the row's
    ``index``, the sample's ``session_id``, no ``priority``), started in the order given."""
    seen: list[tuple[tuple[int, int], int]] = []

    async def record(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any) -> None:
        seen.append(((kwargs["index"], kwargs["session_id"]), sampling_params["seed"]))

    monkeypatch.setattr(SingleTurnAgentLoop, "run", record)
    monkeypatch.setattr(seeded_rollout, "_counts", seeded_rollout.RequestCounts())
    loop = object.__new__(SeededSingleTurnAgentLoop)
    loop.rollout_config = SimpleNamespace(seed=42)

    async def run_all() -> None:
        await asyncio.gather(
            *(loop.run({}, global_steps=step, index=row, session_id=sample, uid="x") for row, sample in requests)
        )

    asyncio.run(run_all())
    out: dict[tuple[int, int], list[int]] = {}
    for key, seed in seen:
        out.setdefault(key, []).append(seed)
    return {key: sorted(seeds) for key, seeds in out.items()}


def test_each_sample_of_each_row_gets_the_same_seed_whatever_order_requests_arrive_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """verl 0.9.1's default trainer passes no priority; seeds keyed on the arrival order went to other samples in
    every run, and the runs drifted apart (docs/cpu-training.md, "The same run twice")."""
    requests = [(row, sample) for row in (5, 9, 2) for sample in range(4)]
    first = _seeds_by_request(monkeypatch, requests)
    assert len({seed for seeds in first.values() for seed in seeds}) == len(requests)
    assert _seeds_by_request(monkeypatch, requests[::-1]) == first
    interleaved = [(row, sample) for sample in range(4) for row in (2, 9, 5)]
    assert _seeds_by_request(monkeypatch, interleaved) == first
    assert _seeds_by_request(monkeypatch, requests, step=2) != first  # a new step, new numbers


def test_a_row_twice_in_one_step_gets_two_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch larger than its dataset holds a row twice: its two copies must not sample the same responses."""
    seeds = _seeds_by_request(monkeypatch, [(3, 0), (3, 0), (3, 1)])
    assert len(seeds[(3, 0)]) == 2 and len(set(seeds[(3, 0)]) | set(seeds[(3, 1)])) == 3


def test_a_seed_the_caller_chose_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _sampled_params(monkeypatch, [({"seed": 7}, 0, 1)])[0]["seed"] == 7


def test_the_cpu_start_up_hook_registers_the_loop_in_every_process() -> None:
    """verl builds agent loops by registered name in its own worker processes; on the CPU path none of them
    imports this project, so the start-up hook must register the loop as verl's single-turn loop is imported."""
    assert agent_loop_on_the_cpu_path(NAME) == "verl_ext.seeded_rollout.SeededSingleTurnAgentLoop"


def test_the_agent_loop_file_names_the_loop_verl_can_build() -> None:
    """configs/agent_loops.yaml is what run_grpo.sh hands verl (GPU runs have no start-up hook)."""
    entries = yaml.safe_load((REPO / "configs" / "agent_loops.yaml").read_text())
    entry = next(e for e in entries if e["name"] == NAME)
    module, _, name = entry["_target_"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is SeededSingleTurnAgentLoop
    cpu = yaml.safe_load((REPO / "configs" / "grpo_cpu_tiny.yaml").read_text())
    assert cpu["actor_rollout_ref"]["rollout"]["agent"]["default_agent_loop"] == NAME
