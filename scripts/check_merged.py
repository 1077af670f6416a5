"""Check that a merged checkpoint is a complete Hugging Face Qwen2.5-VL folder: weights, processor, tokenizer
and chat template, all loadable with transformers, and that the processor turns an image prompt into image tokens.

Usage: python scripts/check_merged.py MODEL_DIR [--skip-weights]
Exit status 0 when everything is there, 1 (with one line per problem) otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Files a merged folder needs besides the weights: the model config, the tokenizer, and the image processor
# (transformers 5 writes it into processor_config.json, older versions into preprocessor_config.json).
REQUIRED_FILES = ("config.json", "tokenizer_config.json")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def check_files(model_dir: Path) -> list[str]:
    """Problems visible from the file listing alone (cheap; run before loading anything)."""
    if not model_dir.is_dir():
        return [f"{model_dir} is not a folder"]
    problems = [f"{name} is missing" for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    if not any((model_dir / name).is_file() for name in PROCESSOR_FILES):
        problems.append(f"no image processor ({' or '.join(PROCESSOR_FILES)})")
    if not any(any(model_dir.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        problems.append("no weights (*.safetensors)")
    return problems


def check_processor(model_dir: Path) -> tuple[list[str], str]:
    """Load the processor and render one image prompt through the chat template and the processor."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None or getattr(processor, "image_processor", None) is None:
        return [f"AutoProcessor gave {type(processor).__name__}, which lacks a tokenizer or an image processor"], ""
    template = getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
    if not template:
        return ["no chat template (chat_template.jinja or chat_template in tokenizer_config.json)"], ""

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which way is up?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    image_token = getattr(processor, "image_token", "<|image_pad|>")
    if image_token not in text:
        return [f"the chat template does not place the image token {image_token!r} for an image message"], ""
    inputs = processor(text=[text], images=[Image.new("RGB", (56, 56), (200, 30, 30))], return_tensors="pt")
    image_token_id = tokenizer.convert_tokens_to_ids(image_token)
    n_image_tokens = int((inputs["input_ids"] == image_token_id).sum())
    if n_image_tokens == 0:
        return ["the processor produced no image tokens for a 56x56 image"], ""
    summary = f"{type(processor).__name__}, {n_image_tokens} image tokens for a 56x56 image"
    return [], summary


def check_weights(model_dir: Path) -> str:
    """Load the model with the class transformers picks for image-text-to-text; returns a one-line summary."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    n_params = sum(parameter.numel() for parameter in model.parameters())
    dtype = next(model.parameters()).dtype
    return f"{type(model).__name__}, {n_params / 1e6:.1f}M parameters, {dtype}"


def prepare_torchvision() -> None:
    """transformers' Qwen2-VL image processor imports torchvision, which needs a fix on CPU-only machines."""
    try:  # the fix runs when torchvision is first imported; installing its hook is idempotent
        from verl_ext.cpu import import_hooks
    except ImportError:  # project not installed: nothing to fix with
        return
    import_hooks.install()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--skip-weights", action="store_true", help="check everything but loading the weights")
    args = parser.parse_args(argv)

    problems = check_files(args.model_dir)
    if not problems:
        prepare_torchvision()
        processor_problems, processor_summary = check_processor(args.model_dir)
        problems += processor_problems
    if problems:
        for problem in problems:
            print(f"ERROR: {args.model_dir}: {problem}", file=sys.stderr)
        return 1
    print(f"processor: {processor_summary}")
    if not args.skip_weights:
        print(f"model: {check_weights(args.model_dir)}")
    print(f"OK: {args.model_dir} loads with transformers (model, processor, tokenizer, chat template)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
