"""Rollouts that draw the same random numbers in every run with the same seed: verl's single-turn agent loop
with a seed of its own for every request.

Why verl's own switch does not do it: with ``actor_rollout_ref.rollout.full_determinism=true`` verl 0.9.1 gives
every vLLM request the same seed (``replica rank + rollout.seed``), and vLLM draws a request's tokens from a
generator seeded with its request's seed, so the ``rollout.n`` responses to one prompt come out identical: every
GRPO group is flat and nothing is learned. Without it, vLLM samples from one engine-wide generator, and which
numbers a request draws depends on which other requests share its batches, which on a busy CPU changes from run
to run; the run's responses, and so its rewards and its verdict, change with it.

This loop seeds each request from ``rollout.seed``, the training step (verl's ``global_steps``), the prompt's
position in the step's batch (verl's ``priority``, the same in every run) and how many requests this process has
made for that prompt in that step before (the ``rollout.n`` samples of one prompt). None of them depends on the
order in which requests reach the loop, which varies between runs; a sample-for-sample swap of seeds within one
prompt's group changes nothing, as its requests are identical. So two samples of a step never share a seed, a
prompt's seeds differ from step to step, and a resumed run samples its steps as the run it continues would have.

vLLM on CPU refuses a seeded request whose prompt it splits over engine steps ("CPU Generator does not use
offset": it cannot rewind a CPU generator), which chunked prefill does whenever a step's token budget runs out
mid-prompt; the CPU config turns chunked prefill off.

Selected with ``actor_rollout_ref.rollout.agent.default_agent_loop=seeded_single_turn`` (the CPU config does).
Importing this module registers the name in verl's registry: on the CPU path every process does so as soon as
verl's single-turn loop is imported (:mod:`verl_ext.cpu.import_hooks`), and ``scripts/run_grpo.sh`` also names
it to verl in ``configs/agent_loops.yaml``, for GPU runs. On GPUs it stays opt-in: vLLM draws each seeded
request's noise in a loop of its own (one small kernel per request and token) and leaves FlashInfer's sampler
for PyTorch's, which costs time in large batches.
"""

from __future__ import annotations

import hashlib
from typing import Any

from verl.experimental.agent_loop.agent_loop import register
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

NAME = "seeded_single_turn"


class RequestCounts:
    """How many requests this process (one agent-loop worker) has made for each prompt position of the current
    step; kept outside the loop because verl builds a new loop object for every sample."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.made: dict[int, int] = {}

    def take(self, step: int | None, position: int) -> int:
        """The number of earlier requests for ``position`` in ``step``, counting this one from now on."""
        if step != self.step:
            self.step, self.made = step, {}
        count = self.made.get(position, 0)
        self.made[position] = count + 1
        return count


_counts = RequestCounts()


def request_seed(base: int, step: int | None, position: int, occurrence: int) -> int:
    """A 63-bit seed for one request, spread over the seed space so that nearby inputs share no structure."""
    digest = hashlib.blake2b(f"{base}:{step}:{position}:{occurrence}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@register(NAME)
class SeededSingleTurnAgentLoop(SingleTurnAgentLoop):
    """verl's single-turn loop, with a reproducible seed of its own in every request's sampling parameters."""

    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any) -> Any:
        step = kwargs.get("global_steps")
        step = None if step is None else int(step)
        position = int(priority)
        seed = request_seed(int(self.rollout_config.seed), step, position, _counts.take(step, position))
        seeded = dict(sampling_params)
        seeded.setdefault("seed", seed)
        return await super().run(seeded, priority=priority, **kwargs)


# The answer-token variant subclasses the loop above, so it is registered from here, once the class exists: a
# process that imports this module first (with the CPU start-up hook, which runs as this module imports verl's
# single-turn loop) would otherwise meet this module half-initialised when the variant imports it.
from verl_ext import answer_token_loss  # noqa: E402, F401
