"""Rollouts that draw the same random numbers in every run with the same seed: verl's single-turn agent loop
with a seed of its own for every request.

Why verl's own switch does not do it: with ``actor_rollout_ref.rollout.full_determinism=true`` verl 0.9.1 gives
every vLLM request the same seed (``replica rank + rollout.seed``), and vLLM draws a request's tokens from a
generator seeded with its request's seed, so the ``rollout.n`` responses to one prompt come out identical: every
GRPO group is flat and nothing is learned. Without it, vLLM samples from one engine-wide generator, and which
numbers a request draws depends on which other requests share its batches, which on a busy CPU changes from run
to run; the run's responses, and so its rewards and its verdict, change with it.

This loop seeds each request from ``rollout.seed``, the training step (verl's ``global_steps``), the prompt and
the sample's number within its group, each named the same way in every run:
- verl 0.9.1's default trainer (the TransferQueue one, ``TaskRunnerV1``) passes every request its row's ``index``
  (the dataset's ``extra_info.index``) and the sample's number within its group (``session_id``). It passes no
  ``priority``: keyed on that alone (as this loop once was), every request of a step looked alike, and the seeds
  went to the samples in the order the requests reached the loop, which changes from run to run.
- verl's older trainer numbers the samples of a batch (``priority``) and passes no ``session_id``; the row's
  ``index`` and a count of this process's earlier requests for that row in that step stand in for it. Samples of
  one prompt are identical requests, so which of them gets which of the group's seeds changes nothing.
A row that appears twice in one step (a batch larger than its dataset) is told apart by the same count. None of
these depends on the order in which requests arrive: two samples of a step never share a seed, a prompt's seeds
differ from step to step, and a resumed run samples its steps as the run it continues would have.

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
from collections.abc import Hashable
from typing import Any

from verl.experimental.agent_loop.agent_loop import register
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

NAME = "seeded_single_turn"


class RequestCounts:
    """How many requests this process (one agent-loop worker) has made for each key of the current step; kept
    outside the loop because verl builds a new loop object for every sample."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.made: dict[Hashable, int] = {}

    def take(self, step: int | None, key: Hashable) -> int:
        """The number of earlier requests for ``key`` in ``step``, counting this one from now on."""
        if step != self.step:
            self.step, self.made = step, {}
        count = self.made.get(key, 0)
        self.made[key] = count + 1
        return count


_counts = RequestCounts()


def request_seed(base: int, step: int | None, *key: Hashable) -> int:
    """A 63-bit seed for one request, spread over the seed space so that nearby inputs share no structure."""
    text = ":".join(str(part) for part in (base, step, *key))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def request_key(priority: int, kwargs: dict[str, Any]) -> tuple[str, int | None]:
    """What names one request the same in every run: its prompt (its row's dataset index where verl passes it,
    else its batch position) and its number within the prompt's group (where verl passes it, else None)."""
    index, sample = kwargs.get("index"), kwargs.get("session_id")
    prompt = f"row {int(index)}" if index is not None else f"position {int(priority)}"
    return prompt, None if sample is None else int(sample)


@register(NAME)
class SeededSingleTurnAgentLoop(SingleTurnAgentLoop):
    """verl's single-turn loop, with a reproducible seed of its own in every request's sampling parameters."""

    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any) -> Any:
        step = kwargs.get("global_steps")
        step = None if step is None else int(step)
        key = request_key(priority, kwargs)
        seeded = dict(sampling_params)
        seeded.setdefault("seed", request_seed(int(self.rollout_config.seed), step, *key, _counts.take(step, key)))
        return await super().run(seeded, priority=priority, **kwargs)


# The answer-token variant subclasses the loop above, so it is registered from here, once the class exists: a
# process that imports this module first (with the CPU start-up hook, which runs as this module imports verl's
# single-turn loop) would otherwise meet this module half-initialised when the variant imports it.
from verl_ext import answer_token_loss  # noqa: E402, F401
