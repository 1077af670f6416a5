#!/usr/bin/env python3
"""Can the model's vision tower tell the answers apart at all? A linear probe on its features.

    python scripts/probe_vision.py MODEL_DIR DATA_DIR [--max-rows 2000]

For a built single-picture label task (rotation ``form=single``, flip ...), every picture of the train and val
splits goes through the model's vision tower (patch embedding, blocks and patch merger: the tokens the language
model receives). A logistic regression is fitted on the training pictures' features and scored on the held-out
ones, for two views of the features:

* ``pooled``: the mean over the picture's tokens (what survives if position is ignored);
* ``tokens``: all tokens side by side (position kept; needs pictures of one size).

If the held-out probe is near chance, no recipe can teach the language model the task through this tower: the
features do not carry it. If it is well above, the features do, and a GRPO run that stays at the constant-answer
bar fails for another reason (the policy collapsing, the recipe). Prints one line per view, and one on scale: the
image tokens' norms next to the text embeddings' (a probe standardises its inputs and cannot see how loud the
picture is to the language model; the tiny model's warm-ups, for one, make its image tokens hundreds of times
larger than its text embeddings).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np


def picture_features(model, processor, rows) -> tuple[list[np.ndarray], list[str]]:
    """The vision tower's output tokens (tokens x hidden) of each row's only picture, and the row's answer."""
    import torch
    from PIL import Image

    features, answers = [], []
    with torch.no_grad():
        for row in rows:
            if len(row["images"]) != 1:
                raise ValueError("the probe needs single-picture puzzles (e.g. rotation with form=single)")
            image = Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")
            encoded = processor.image_processor(images=[image], return_tensors="pt")
            out = model.model.visual(encoded["pixel_values"], grid_thw=encoded["image_grid_thw"])
            features.append(out.pooler_output.float().numpy())
            answers.append(str(row["reward_model"]["ground_truth"]))
    return features, answers


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, classes: int, l2: float) -> np.ndarray:
    """Multinomial logistic regression (standardised inputs, L2 penalty, L-BFGS); predicted classes of x_val."""
    import torch

    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.tensor((x_train - mean) / std, dtype=torch.float64)
    xv = torch.tensor((x_val - mean) / std, dtype=torch.float64)
    yt = torch.tensor(y_train)
    weight = torch.zeros(xt.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ weight + bias, yt) + l2 * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return (xv @ weight + bias).argmax(1).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="Hugging Face Qwen2.5-VL folder")
    parser.add_argument("data", type=Path, help="built puzzle folder (manifest.json, train/val parquet)")
    parser.add_argument("--max-rows", type=int, default=2000, help="at most this many rows per split")
    parser.add_argument("--l2", type=float, default=1e-2, help="L2 penalty of the probe")
    args = parser.parse_args(argv)
    manifest_path = args.data / "manifest.json"
    if not manifest_path.is_file():
        parser.error(f"{manifest_path} does not exist")
    manifest = json.loads(manifest_path.read_text())

    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()
    import pyarrow.parquet as pq
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    splits = {}
    for role in ("train_split", "val_split"):
        file = args.data / manifest["files"][manifest[role]]
        rows = pq.read_table(file, columns=["images", "reward_model"]).to_pylist()[: args.max_rows]
        splits[role] = picture_features(model, processor, rows)
    (train_feats, train_answers), (val_feats, val_answers) = splits["train_split"], splits["val_split"]
    labels = sorted(set(train_answers) | set(val_answers))
    y_train = np.array([labels.index(a) for a in train_answers])
    y_val = np.array([labels.index(a) for a in val_answers])
    majority = Counter(val_answers).most_common(1)[0][1] / len(val_answers)
    print(f"{len(train_answers)} training and {len(val_answers)} held-out pictures; labels {labels}")
    print(f"bars: chance {1 / len(labels):.3f}; always the most common answer {majority:.3f}")
    token_norms = np.concatenate([np.linalg.norm(f, axis=-1) for f in train_feats + val_feats])
    text_norms = model.get_input_embeddings().weight.detach().float().norm(dim=-1).numpy()
    low, high = np.percentile(token_norms, [5, 95])
    print(
        f"scale: image-token norm mean {token_norms.mean():.3g} (5th-95th percentile {low:.3g}-{high:.3g});"
        f" text-embedding norm mean {text_norms.mean():.3g}"
    )
    views = {"pooled": (np.stack([f.mean(0) for f in train_feats]), np.stack([f.mean(0) for f in val_feats]))}
    if len({f.shape for f in train_feats + val_feats}) == 1:
        views["tokens"] = (np.stack([f.ravel() for f in train_feats]), np.stack([f.ravel() for f in val_feats]))
    else:
        print("tokens: skipped (pictures of several sizes give token grids of several shapes)")
    for name, (x_train, x_val) in views.items():
        predicted = fit_probe(x_train, y_train, x_val, len(labels), args.l2)
        print(f"{name} ({x_train.shape[1]} features): held-out accuracy {(predicted == y_val).mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
