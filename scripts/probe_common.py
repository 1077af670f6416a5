"""What the two in-process GRPO probes share: their common options, the pictures of a row, the GRPO step, the report.

``scripts/probe_answer_grpo.py`` trains the first answer token after a fixed thought, ``scripts/probe_response_grpo.py``
whole sampled responses; everything here is the same for both, so a difference between their results comes from
what they train, not from how they read data, normalise rewards or update the model.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

GREY = (128, 128, 128)


def add_common_arguments(parser: argparse.ArgumentParser, *, lr: float, steps: int) -> None:
    """The model and data, the batch and schedule, the training order and the grey control."""
    parser.add_argument("model", type=Path, help="Hugging Face Qwen2.5-VL folder")
    parser.add_argument("data", type=Path, help="built puzzle folder of a label task (manifest.json, parquet splits)")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step")
    parser.add_argument("--group", type=int, default=8, help="samples per prompt")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--every", type=int, default=25, help="evaluate every this many steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--order",
        choices=("random", "stratified"),
        default="random",
        help="training batches drawn at random (verl's shuffle) or as windows of a stratified order"
        " (verl_ext/builder/order.py: every batch holds the answers in their overall shares)",
    )
    parser.add_argument("--grey", action="store_true", help="control: every picture flat grey")


def row_pictures(images: list[dict[str, Any]], grey: bool) -> list:
    """A row's pictures decoded to RGB, or flat grey ones of the same sizes for the control."""
    from PIL import Image

    pictures = [Image.open(io.BytesIO(image["bytes"])).convert("RGB") for image in images]
    return [Image.new("RGB", picture.size, GREY) for picture in pictures] if grey else pictures


def answer_first_token(tokenizer, prefix: str, answer: str) -> int:
    """The token that starts ``answer`` when it follows ``prefix`` (the fixed thought and the answer tag)."""
    return tokenizer(prefix + answer).input_ids[len(tokenizer(prefix).input_ids)]


def group_advantages(rewards):
    """GRPO's advantages: each reward against its group's (row's) mean, in units of the group's spread."""
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6)


def update(model, optimizer, loss) -> None:
    """One optimizer step on ``loss``, the gradient clipped to norm 1 as verl clips it."""
    import torch

    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def report(step: int, accuracy: float, rewards) -> None:
    """One progress line: held-out accuracy, and the step's training reward and share of flat groups."""
    flat = float((rewards.std(1) == 0).float().mean())
    print(
        f"step {step}: held-out accuracy {accuracy:.3f}, training reward {float(rewards.mean()):.3f},"
        f" flat groups {flat:.2f}",
        flush=True,
    )
