#!/usr/bin/env python3
"""Can GRPO teach this model a label task at all? GRPO on the answer token alone, in one process, no verl.

    python scripts/probe_answer_grpo.py MODEL_DIR DATA_DIR [--lr 1e-4] [--prompts 16] [--group 8] [--steps 200]

For a built label task whose answers differ in their first token (rotation {0, 180}: "0" and "1..."), every
prompt gets the fixed thought the answer-choice warm-up teaches (verl_ext/tiny_model.py) and the opening answer
tag; the model's distribution over its whole vocabulary at the next position is the policy. Each step samples a
group of answers per prompt, rewards the right first token, normalises the rewards within each group and takes
one AdamW step (gradient clip 1), as verl's GRPO does for that one token. Greedy held-out accuracy is printed every
``--every`` steps with the share of flat groups. ``--grey`` replaces every picture by a flat grey one (a control).

Minutes instead of the hour a verl run takes, so a recipe (learning rate, batch, scene size) can be tried before
a verl run; a recipe that fails here will not work in verl. ``--save DIR`` writes the trained model, e.g. to check
that verl's validation scores a model that has learned the cue (docs/cpu-training.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from answer_puzzle import chat_messages  # scripts/ is on sys.path when a script in it runs
from probe_common import add_common_arguments, answer_first_token, group_advantages, report, row_pictures, update

PREFIX = "<think> Let me look at the picture. </think> <answer>"


def chat_prompt(processor, prompt_cell) -> str:
    """verl's prompt cell rendered with the model's chat template, followed by the fixed thought."""
    messages = chat_messages(list(prompt_cell))
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + PREFIX


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, lr=1e-4, steps=200)
    parser.add_argument("--save", type=Path, default=None, help="write the trained model here")
    args = parser.parse_args(argv)
    manifest = json.loads((args.data / "manifest.json").read_text())

    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from verl_ext.builder.order import batch_positions

    torch.manual_seed(args.seed)
    processor = AutoProcessor.from_pretrained(args.model)
    model = AutoModelForImageTextToText.from_pretrained(args.model)

    def load(role: str) -> list[tuple[str, list, int]]:
        file = args.data / manifest["files"][manifest[role]]
        rows = []
        for row in pq.read_table(file, columns=["prompt", "images", "reward_model"]).to_pylist():
            truth = answer_first_token(processor.tokenizer, PREFIX, row["reward_model"]["ground_truth"])
            rows.append((chat_prompt(processor, row["prompt"]), row_pictures(row["images"], args.grey), truth))
        return rows

    train, val = load("train_split"), load("val_split")
    batches = batch_positions([str(truth) for _, _, truth in train], args.prompts, args.order, args.seed)
    if len({truth for _, _, truth in train}) < 2:
        parser.error("the training answers do not differ in their first token; pick a task whose labels do")

    def next_token_logits(batch) -> torch.Tensor:
        encoded = processor(
            text=[text for text, _, _ in batch],
            images=[picture for _, pictures, _ in batch for picture in pictures],
            return_tensors="pt",
            padding=True,
        )
        return model(**encoded).logits[:, -1, :]

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([next_token_logits(val[i : i + 40]).argmax(-1) for i in range(0, len(val), 40)])
        model.train()
        return float((predicted == torch.tensor([truth for _, _, truth in val])).float().mean())

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    model.train()
    print(f"step 0: held-out accuracy {evaluate():.3f} ({len(val)} puzzles)", flush=True)
    for step in range(1, args.steps + 1):
        batch = [train[i] for i in next(batches)]
        log_probs = torch.log_softmax(next_token_logits(batch), -1)
        actions = torch.multinomial(log_probs.exp().detach(), args.group, replacement=True)
        rewards = (actions == torch.tensor([truth for _, _, truth in batch])[:, None]).float()
        update(model, optimizer, -(group_advantages(rewards) * log_probs.gather(1, actions)).mean())
        if step % args.every == 0:
            report(step, evaluate(), rewards)
    if args.save:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)
        print(f"saved {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
