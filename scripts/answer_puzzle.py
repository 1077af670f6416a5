#!/usr/bin/env python3
"""Let a Hugging Face Qwen2.5-VL folder answer one puzzle of a built parquet file, and score the answer.

    python scripts/answer_puzzle.py MODEL_DIR DATA.parquet [--row N] [--max-new-tokens 128]

The row's chat prompt is rendered with the model's own chat template (one picture per ``<image>``), the answer is
generated greedily with transformers, and scored with the training reward (verl_ext/reward.py).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any


def chat_messages(prompt: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """verl's prompt cell (messages whose text holds ``<image>`` placeholders) as multimodal chat messages."""
    messages = []
    for message in prompt:
        content: list[dict[str, str]] = []
        for index, text in enumerate(str(message["content"]).split("<image>")):
            if index:
                content.append({"type": "image"})
            if text:
                content.append({"type": "text", "text": text})
        messages.append({"role": message["role"], "content": content})
    return messages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="Hugging Face model folder (e.g. a merged checkpoint)")
    parser.add_argument("data", type=Path, help="parquet file written by build_benchmarks/build.py")
    parser.add_argument("--row", type=int, default=0, help="row to answer (default 0)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="answer length limit (default 128)")
    args = parser.parse_args(argv)
    for path in (args.model / "config.json", args.data):
        if not path.exists():
            parser.error(f"{path} does not exist")

    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()
    import pandas as pd
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from verl_ext.reward import compute_score

    table = pd.read_parquet(args.data)
    if not 0 <= args.row < len(table):
        parser.error(f"--row {args.row} is outside the {len(table)} rows of {args.data}")
    row = table.iloc[args.row]
    images = [Image.open(io.BytesIO(image["bytes"])).convert("RGB") for image in row["images"]]

    processor = AutoProcessor.from_pretrained(args.model)
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32).eval()
    text = processor.apply_chat_template(chat_messages(list(row["prompt"])), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=images, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
    answer = processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    ground_truth = row["reward_model"]["ground_truth"]
    extra_info = dict(row["extra_info"])
    reward = compute_score(
        data_source=row["data_source"], solution_str=answer, ground_truth=ground_truth, extra_info=extra_info
    )
    prompt_text = " ".join(str(m["content"]) for m in row["prompt"])
    print(f"puzzle       : {args.data} row {args.row} ({row['data_source']}, {len(images)} image(s))")
    print(f"prompt       : {prompt_text[:300]}{' ...' if len(prompt_text) > 300 else ''}")
    print(f"ground truth : {ground_truth}")
    print(f"model answer : {answer!r}")
    shown = (f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}" for key, value in reward.items())
    print("reward       : " + ", ".join(shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
