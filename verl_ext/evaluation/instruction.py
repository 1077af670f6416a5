"""The instruction a downstream benchmark gives a puzzle-trained model: the training format, plus what the answer
of a multiple-choice question is. VLMEvalKit gets it as the model's system prompt, lmms-eval as the system message
of the project's task variants."""

from __future__ import annotations

from verl_ext.tasks.base import FORMAT_INSTRUCTION

SYSTEM_PROMPT = (
    f"{FORMAT_INSTRUCTION} For a multiple-choice question the final answer is the letter of the chosen option, "
    "for example <answer>B</answer>."
)
