"""The offline random Qwen2.5-VL: loadable like a real checkpoint, Qwen's token layout, deterministic."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable
from verl_ext.tiny_model import (
    QWEN_EMBEDDING_ROWS,
    QWEN_SPECIAL_TOKENS,
    SIZES,
    build_config,
    build_tokenizer,
    main,
    save_tiny_model,
)

ensure_torchvision_importable()

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor  # noqa: E402


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path):
    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path):
    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()


def _photo(width: int, height: int) -> Image.Image:
    """A deterministic picture with structure (gradients), not a flat colour."""
    x = torch.linspace(0, 255, width).repeat(height, 1)
    y = torch.linspace(0, 255, height).unsqueeze(1).repeat(1, width)
    rgb = torch.stack([x, y, (x + y) / 2], dim=-1).to(torch.uint8).numpy()
    return Image.fromarray(rgb)


def test_directory_has_what_loaders_need(tiny_model_dir: Path) -> None:
    names = {p.name for p in tiny_model_dir.iterdir()}
    for required in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "processor_config.json",
        "generation_config.json",
    ):
        assert required in names


def test_loads_as_qwen2_5_vl(processor, model) -> None:
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"


def test_special_tokens_follow_the_regular_vocabulary(processor, model) -> None:
    tokenizer = processor.tokenizer
    ids = [tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS]
    # Qwen's layout: special tokens are the last ids of the tokenizer, in Qwen's order.
    assert ids == list(range(len(tokenizer) - len(QWEN_SPECIAL_TOKENS), len(tokenizer)))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    config = model.config
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert config.text_config.vocab_size >= len(tokenizer)


@pytest.mark.parametrize(
    "text",
    [
        "<think> It is upside down. </think> <answer>180</answer>",
        "<answer>2 0 3 1</answer>",
        "Are these two crops from the same photo? Answer yes or no.",
        "Ünïcödé and emoji 🧩 still round-trip\nover lines",
    ],
)
def test_text_round_trips(processor, text: str) -> None:
    tokenizer = processor.tokenizer
    assert tokenizer.decode(tokenizer(text).input_ids) == text


def test_numbers_are_spelled_digit_by_digit(processor) -> None:
    tokenizer = processor.tokenizer
    assert len(tokenizer("270").input_ids) == 3


def test_chat_template_renders_qwen_format(processor) -> None:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Rotated?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Rotated?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    with_system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert processor.apply_chat_template(with_system, tokenize=False).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    )


def test_image_tokens_are_bounded(processor) -> None:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for size, expected_max in (((1200, 900), 64), ((60, 40), 64)):
        encoded = processor(text=[text], images=[_photo(*size)], return_tensors="pt")
        image_tokens = int((encoded["input_ids"] == pad).sum())
        assert image_tokens == int(encoded["image_grid_thw"].prod()) // 4
        assert 4 <= image_tokens <= expected_max


def test_attention_head_dim_fits_vllm_cpu(model) -> None:
    text = model.config.text_config
    assert text.hidden_size // text.num_attention_heads == 32  # vLLM-CPU rejects head_dim 16
    vision = model.config.vision_config
    assert vision.hidden_size // vision.num_heads == 32


def test_forward_and_generate_with_an_image(processor, model) -> None:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which way is up?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    encoded = processor(text=[text], images=[_photo(224, 168)], return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits
        generated = model.generate(**encoded, max_new_tokens=5, do_sample=False)
    assert logits.shape[:2] == encoded["input_ids"].shape
    assert logits.shape[-1] == model.config.text_config.vocab_size
    assert torch.isfinite(logits).all()
    assert generated.shape[1] > encoded["input_ids"].shape[1]


def test_same_size_gives_identical_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = save_tiny_model(tmp_path / "again")

    def digest(directory: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}

    assert digest(again) == digest(tiny_model_dir)


def test_command_line_writes_a_loadable_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--out", str(tmp_path / "cli")])
    assert "saved" in capsys.readouterr().out
    assert AutoConfig.from_pretrained(tmp_path / "cli").model_type == "qwen2_5_vl"


def test_unknown_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model size"):
        save_tiny_model(tmp_path, size="70b")


def test_format_warmup_is_for_the_tiny_model_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tiny"):
        save_tiny_model(tmp_path, size="3b", format_warmup_steps=10)
    with pytest.raises(ValueError, match=">= 0"):
        save_tiny_model(tmp_path, format_warmup_steps=-1)
    with pytest.raises(ValueError, match="warm-up pictures"):
        save_tiny_model(tmp_path, format_warmup_steps=10, warmup_pictures="photos")


# Enough warm-up for well-formed greedy answers on every CPU tried (AVX2 and AVX-512; 200 steps suffice on the
# first only: the same seed, other float rounding).
FULL_WARMUP_STEPS = 400


@pytest.fixture(scope="module")
def fully_warmed_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(
        tmp_path_factory.mktemp("tiny-format-full"), size="tiny", format_warmup_steps=FULL_WARMUP_STEPS
    )


@pytest.mark.parametrize("sizes", [((200, 120), (120, 200)), ((64, 64), (64, 64)), ((300, 100), (90, 90))])
def test_format_warmup_teaches_the_answer_format(fully_warmed_model_dir: Path, sizes) -> None:
    from verl_ext.reward import compute_score

    processor = AutoProcessor.from_pretrained(fully_warmed_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(fully_warmed_model_dir).eval()
    # A prompt unlike the warm-up ones: other wording, pictures of other shapes.
    question = (
        "Image 2 shows image 1 turned by 0, 90, 180 or 270 degrees. How far was it turned? "
        "First reason about it inside <think> </think> tags, then give only your final answer inside "
        "<answer> </answer> tags."
    )
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    encoded = processor(text=[text], images=[_photo(*sizes[0]), _photo(*sizes[1])], return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**encoded, max_new_tokens=48, do_sample=False)
    reply = processor.tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
    reward = compute_score("ssl_rotation", reply, "90", {"task": "rotation", "params": "{}"})
    assert reward["format"] == 1.0, reply


@pytest.fixture(scope="module")
def full_tokenizer():
    return build_tokenizer("3b")


def test_full_vocabulary_puts_special_tokens_at_qwen_ids(full_tokenizer) -> None:
    assert len(full_tokenizer) == 151665
    assert full_tokenizer.convert_tokens_to_ids("<|endoftext|>") == 151643
    assert full_tokenizer.convert_tokens_to_ids("<|im_start|>") == 151644
    assert full_tokenizer.convert_tokens_to_ids("<|im_end|>") == 151645
    assert full_tokenizer.convert_tokens_to_ids("<|vision_start|>") == 151652
    assert full_tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655
    assert full_tokenizer.convert_tokens_to_ids("<|video_pad|>") == 151656
    # Any id a random model samples decodes to text.
    assert isinstance(full_tokenizer.decode([0, 100_000, 151_000]), str)


@pytest.mark.parametrize(
    ("size", "billions", "tied"),
    [("3b", 3.75, True), ("7b", 8.29, False)],
)
def test_full_sizes_match_qwen_architecture(full_tokenizer, size: str, billions: float, tied: bool) -> None:
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = build_config(size, full_tokenizer)
    assert config.text_config.vocab_size == QWEN_EMBEDDING_ROWS
    assert config.image_token_id == 151655
    assert config.tie_word_embeddings is tied
    with torch.device("meta"):  # shapes only, no memory
        model = Qwen2_5_VLForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, abs=0.01)
    assert SIZES[size].dtype == "bfloat16"


def test_a_model_folder_gets_its_config_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripts take a folder with config.json for a finished model: a writer killed while moving files in must
    not leave one (here the move of config.json fails; everything else is already in place)."""
    from verl_ext import tiny_model

    class Saves:
        def __init__(self, *names: str) -> None:
            self.names = names

        def save_pretrained(self, folder: Path) -> None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            for name in self.names:
                (Path(folder) / name).write_text(name)

    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == "config.json":
            raise KeyboardInterrupt  # killed at the last move
        real_replace(src, dst)

    monkeypatch.setattr(tiny_model.os, "replace", replace)
    out = tmp_path / "model"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        tiny_model._save_whole(out, Saves("config.json", "model.safetensors"), Saves("tokenizer.json"))
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "tokenizer.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # the staging folder is gone


@pytest.mark.parametrize("pictures", ["noise", "quiet"])
def test_answer_choice_exchanges_ask_real_puzzles_and_answer_within_their_label_sets(pictures: str) -> None:
    """The answer-choice warm-up teaches which answers a prompt allows, with answers independent of the picture."""
    import re
    from collections import Counter

    import numpy as np

    from verl_ext.tiny_model import CHOICE_PUZZLES, CHOICE_THOUGHT, choice_exchanges

    exchanges = choice_exchanges(np.random.default_rng(0), 300, pictures)
    assert len(exchanges) == 300  # quiet pictures that a task skips are replaced, not lost
    # The typical picture's spread (flip's drawn grid adds white lines to some): full-range noise or faint blocks.
    spread = float(np.median([np.asarray(image).std() for exchange in exchanges for image in exchange.images]))
    assert (spread > 60) if pictures == "noise" else (spread < 25)
    answers: Counter = Counter()
    for exchange in exchanges:
        text = " ".join(part["text"] for part in exchange.content if part.get("type") == "text")
        assert "<answer>" in text  # the puzzle's own prompt, format instruction included
        assert sum(part.get("type") == "image" for part in exchange.content) == len(exchange.images) >= 1
        answer = re.fullmatch(r"<think> (.+) </think> <answer>(.+)</answer><\|im_end\|>", exchange.reply)
        assert answer is not None and answer.group(1) == CHOICE_THOUGHT
        assert answer.group(2) in exchange.labels
        answers[(exchange.labels, answer.group(2))] += 1
    label_sets = {exchange.labels for exchange in exchanges}
    assert len(label_sets) >= len(CHOICE_PUZZLES) - 1  # pair and single quarter turns share a label set
    # Every label of the two-angle rotation set is drawn about equally often: no label is favoured.
    two_way = [count for (labels, _), count in answers.items() if labels == ("0", "180")]
    assert len(two_way) == 2 and min(two_way) > 0.6 * max(two_way)
