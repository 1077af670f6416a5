"""Rollouts that sample the same responses in every run with the same seed: verl's single-turn agent loop with a
seed of its own for every request.

Why verl's own switch does not do it: with ``actor_rollout_ref.rollout.full_determinism=true`` verl 0.9.1 gives
every vLLM request the same seed (``replica rank + rollout.seed``), and vLLM draws a request's tokens from a
generator seeded with its request's seed, so the ``rollout.n`` responses to one prompt come out identical: every
GRPO group is flat and nothing is learned. Without it, vLLM samples from one engine-wide generator, and which
numbers a request draws depends on which other requests share its batches, which on a busy CPU changes from run
to run; the run's responses, and so its rewards and its verdict, change with it.

This loop gives request number ``k`` of this process a seed derived from ``rollout.seed``, ``k`` and the sample's
position in the step's batch (verl's ``priority``, unique within a step across agent-loop workers). The requests
of a step start in batch order, so ``k`` is the same in every run; two samples of one step never share a seed.
A resumed run starts ``k`` again at 0, so it samples differently from the run it continues (still reproducibly).

Selected with ``actor_rollout_ref.rollout.agent.default_agent_loop=seeded_single_turn`` (the CPU config does).
Importing this module registers the name in verl's registry: on the CPU path every process does so as soon as
verl's single-turn loop is imported (:mod:`verl_ext.cpu.import_hooks`), and ``scripts/run_grpo.sh`` also names
it to verl in ``configs/agent_loops.yaml``, for GPU runs. On GPUs it stays opt-in: vLLM
samples each seeded request with a generator of its own, one small kernel per request and token, which costs
time in large batches.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from verl.experimental.agent_loop.agent_loop import register
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

NAME = "seeded_single_turn"

# Requests started by this process (one agent-loop worker); class state because verl builds a new loop per sample.
_requests = itertools.count()


def request_seed(base: int, request: int, position: int) -> int:
    """A 63-bit seed for one request, spread over the seed space so that nearby inputs share no structure."""
    digest = hashlib.blake2b(f"{base}:{request}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@register(NAME)
class SeededSingleTurnAgentLoop(SingleTurnAgentLoop):
    """verl's single-turn loop, with a reproducible seed of its own in every request's sampling parameters."""

    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any) -> Any:
        # Taken before the first await: verl starts a step's samples in batch order, so the count is reproducible.
        request = next(_requests)
        seeded = dict(sampling_params)
        seeded.setdefault("seed", request_seed(int(self.rollout_config.seed), request, int(priority)))
        return await super().run(seeded, priority=priority, **kwargs)
