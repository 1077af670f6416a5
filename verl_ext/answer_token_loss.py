"""GRPO that trains only the token that starts each response's answer (label tasks): an agent loop for verl.

Why: on the tiny model, GRPO over whole responses did not find the rotation cue in 100 steps, where the same
in-process loop with only the answer's first token in the loss found it within 25-50 steps with every seed and
reward tried (docs/cpu-training.md, "What still keeps whole responses from the cue"). The tokens after it (the
rest of the answer, the closing tag, the end token) are near certain, yet training them with the same
advantage kept the cue from being found. For a label task the first answer token decides the answer ("0" against
"1" of "180"), so it is the one token whose probability the reward is about.

How: verl's policy loss (and its KL and entropy terms) apply where a sample's ``response_mask`` is 1; multi-turn
rollouts use it to leave tool output untrained. This loop returns the seeded single-turn loop's output with a mask
that keeps only the token right after the opening answer tag. A response without an answer tag keeps its whole
mask, so a broken format is still trained away. Rewards and validation are unchanged: they read the tokens, not
the mask.

Selected with ``actor_rollout_ref.rollout.agent.default_agent_loop=seeded_answer_token``
(``configs/agent_loops.yaml`` names it to verl; on the CPU path the import hooks register it as they register
the seeded loop, :mod:`verl_ext.cpu.import_hooks`). Meant for tasks whose answers differ in their first token
(rotation, flip, position labels); for a jigsaw order, whose answer is several decisive tokens, it would train
the first of them only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from verl.experimental.agent_loop.agent_loop import register

from verl_ext.seeded_rollout import SeededSingleTurnAgentLoop

NAME = "seeded_answer_token"
ANSWER_TAG = "<answer>"


def answer_start(tokenizer: Any, response_ids: Sequence[int]) -> int | None:
    """The position of the token that starts the answer after the first opening answer tag (the first non-blank
    token after it, or the tag's own last token when that token runs on into the answer), or None when there is
    no answer."""
    if ANSWER_TAG not in tokenizer.decode(response_ids):
        return None
    # The shortest prefix that holds the tag, by bisection (a longer prefix holds it too): a few decodes, not one
    # per token, for responses thousands of tokens long.
    low, high = 1, len(response_ids)
    while low < high:
        middle = (low + high) // 2
        if ANSWER_TAG in tokenizer.decode(response_ids[:middle]):
            high = middle
        else:
            low = middle + 1
    prefix = tokenizer.decode(response_ids[:low])
    if prefix[prefix.index(ANSWER_TAG) + len(ANSWER_TAG) :].strip():
        return low - 1  # the tag's last token carries the answer's first characters too
    for position in range(low, len(response_ids)):
        if tokenizer.decode(response_ids[position : position + 1]).strip():
            return position
    return None


def answer_token_mask(tokenizer: Any, response_ids: Sequence[int], response_mask: Sequence[int]) -> list[int]:
    """``response_mask`` cut down to the answer's first token; unchanged when the response holds no answer."""
    position = answer_start(tokenizer, response_ids)
    if position is None or not response_mask[position]:
        return list(response_mask)
    return [int(i == position) for i in range(len(response_mask))]


@register(NAME)
class AnswerTokenAgentLoop(SeededSingleTurnAgentLoop):
    """The seeded single-turn loop whose samples train only the token that starts their answer."""

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> Any:
        output = await super().run(sampling_params, **kwargs)
        output.response_mask = answer_token_mask(self.tokenizer, output.response_ids, output.response_mask)
        return output
