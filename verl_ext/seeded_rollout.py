"""Rollouts that sample the same responses in every run with the same seed: verl's single-turn agent loop with a
seed of its own for every request.

Why verl's own switch does not do it: with ``actor_rollout_ref.rollout.full_determinism=true`` verl 0.9.1 gives
every vLLM request the same seed (``replica rank + rollout.seed``), and vLLM draws a request's tokens from a
generator seeded with its request's seed, so the ``rollout.n`` responses to one prompt come out identical: every
GRPO group is flat and nothing is learned. Without it, vLLM samples from one engine-wide generator, and which
numbers a request draws depends on which other requests share its batches, which on a busy CPU changes from run
to run; the run's responses, and so its rewards and its verdict, change with it.

This loop seeds each request from ``rollout.seed``, the sample's position in the step's batch (verl's
``priority``: unique within a step across agent-loop workers, and the same in every run) and how many requests
this process has made for that position before. Both are independent of the order in which the requests
reach the loop, which varies between runs. Two samples of one step never share a seed, and a position's seeds
differ from step to step. A resumed run starts counting again, so it samples differently from the run it
continues (still reproducibly).

vLLM on CPU refuses a seeded request whose prompt it splits into chunks ("CPU Generator does not use offset"),
which happens only for prompts over ``rollout.max_num_batched_tokens`` (8192 by default; the CPU config's prompts
are at most 1024 tokens).

Selected with ``actor_rollout_ref.rollout.agent.default_agent_loop=seeded_single_turn`` (the CPU config does).
Importing this module registers the name in verl's registry: on the CPU path every process does so as soon as
verl's single-turn loop is imported (:mod:`verl_ext.cpu.import_hooks`), and ``scripts/run_grpo.sh`` also names
it to verl in ``configs/agent_loops.yaml``, for GPU runs. On GPUs it stays opt-in: vLLM
samples each seeded request with a generator of its own, one small kernel per request and token, which costs
time in large batches.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from verl.experimental.agent_loop.agent_loop import register
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

NAME = "seeded_single_turn"

# Requests this process (one agent-loop worker) has made for each batch position; module state because verl
# builds a new loop object for every sample.
_made: Counter[int] = Counter()


def request_seed(base: int, position: int, occurrence: int) -> int:
    """A 63-bit seed for one request, spread over the seed space so that nearby inputs share no structure."""
    digest = hashlib.blake2b(f"{base}:{position}:{occurrence}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@register(NAME)
class SeededSingleTurnAgentLoop(SingleTurnAgentLoop):
    """verl's single-turn loop, with a reproducible seed of its own in every request's sampling parameters."""

    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any) -> Any:
        position = int(priority)
        occurrence = _made[position]
        _made[position] += 1
        seeded = dict(sampling_params)
        seeded.setdefault("seed", request_seed(int(self.rollout_config.seed), position, occurrence))
        return await super().run(seeded, priority=priority, **kwargs)
