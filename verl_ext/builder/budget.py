"""The prompt-token budget: how many tokens a puzzle's prompt costs Qwen2.5-VL, and shrinking it to fit.

Qwen2.5-VL resizes every image with ``smart_resize`` (sides rounded to multiples of 28, pixel count clamped)
and spends one token per 28x28 pixels. The text is counted exactly with the model's processor when
``--tokenizer`` names one. Otherwise it is estimated from above: the text is split the way Qwen's tokenizer
pre-splits it (words with their leading space, single digits, punctuation runs), and each piece is charged one
token per 4 ASCII characters (at least one) plus one per non-ASCII character, plus 10%. Checked against Qwen's
real tokenizer (vocabulary of Qwen2/2.5/3) on every prompt of every task and preset, and on English and code
text: the estimate was never below the real count (at most 0.71 of it on task prompts, 0.88 on other text),
while one-token-per-byte would have left no room for the images of a 3x3 jigsaw.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import regex
from PIL import Image

from verl_ext.qwen_vision import (
    FACTOR,
    MAX_ASPECT_RATIO,
    MAX_PIXELS,
    MAX_TOKENS,
    MERGE_SIZE,
    MIN_PIXELS,
    MIN_TOKENS,
    PATCH_SIZE,
    PRETOKENIZE_PATTERN,
)
from verl_ext.tasks.base import PuzzleSkip

IMAGE_PLACEHOLDER = "<image>"
# What Qwen2.5-VL's chat template adds around one user message (role tags, its default system prompt
# "You are a helpful assistant.", the generation prompt) is 21 tokens; 32 leaves room for other templates.
TEMPLATE_OVERHEAD = 32
# Qwen's pre-tokenizer pattern (one place: the tiny model's tokenizer is trained with it).
_PIECES = regex.compile(PRETOKENIZE_PATTERN)
# <|vision_start|> and <|vision_end|> around every image's pad tokens.
TOKENS_AROUND_IMAGE = 2


@dataclass(frozen=True)
class VisionGrid:
    """One ``smart_resize`` step: side multiple ``factor`` and the pixel range it clamps to."""

    factor: int = FACTOR
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS

    def resize(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after smart_resize, computed exactly as qwen_vl_utils does."""
        if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
            raise PuzzleSkip("image more elongated than 200:1")
        f = self.factor
        h_bar = max(f, round(height / f) * f)
        w_bar = max(f, round(width / f) * f)
        if h_bar * w_bar > self.max_pixels:
            beta = math.sqrt(height * width / self.max_pixels)
            h_bar = max(f, math.floor(height / beta / f) * f)
            w_bar = max(f, math.floor(width / beta / f) * f)
        elif h_bar * w_bar < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h_bar = math.ceil(height * beta / f) * f
            w_bar = math.ceil(width * beta / f) * f
        return w_bar, h_bar


# What Qwen2.5-VL does by default: qwen_vl_utils and the HF image processor both use 4..16384 tokens of 28 px.
QWEN25_VL = (VisionGrid(),)


def image_tokens(width: int, height: int, grids: Sequence[VisionGrid] = QWEN25_VL) -> int:
    """Tokens one image costs after every resize step of ``grids`` (one token per factor x factor pixels)."""
    for grid in grids:
        width, height = grid.resize(width, height)
    factor = grids[-1].factor
    return (width // factor) * (height // factor)


class PromptCounter:
    """Counts the tokens of a prompt besides the image pad tokens: text, template, vision start/end markers."""

    exact = False
    grids: tuple[VisionGrid, ...] = QWEN25_VL

    def text_tokens(self, prompt: str, n_images: int) -> int:
        text = sum(_estimate_text(segment) for segment in prompt.split(IMAGE_PLACEHOLDER))
        return text + TEMPLATE_OVERHEAD + TOKENS_AROUND_IMAGE * n_images

    def prompt_tokens(self, prompt: str, sizes: Sequence[tuple[int, int]]) -> int:
        return self.text_tokens(prompt, len(sizes)) + sum(image_tokens(w, h, self.grids) for w, h in sizes)


@lru_cache(maxsize=4096)
def _estimate_text(text: str) -> int:
    """Upper estimate of Qwen tokens in English prompt text (see the module docstring)."""
    pieces = 0
    for piece in _PIECES.findall(text):
        ascii_chars = sum(1 for char in piece if char < "\x80")
        pieces += max(1, -(-ascii_chars // 4) + len(piece) - ascii_chars)
    return math.ceil(pieces * 1.1)


class ExactPromptCounter(PromptCounter):
    """Counts with a model's own processor exactly as verl's overlong-prompt filter does (chat template included)."""

    exact = True

    def __init__(self, model_dir: str | Path) -> None:
        try:
            from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

            ensure_torchvision_importable()
        except ImportError:
            pass
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(str(model_dir))
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(f"--tokenizer {model_dir}: no tokenizer in that processor")
        self.tokenizer = tokenizer
        image_processor = getattr(self.processor, "image_processor", None)
        patch = int(getattr(image_processor, "patch_size", PATCH_SIZE) or PATCH_SIZE)
        merge = int(getattr(image_processor, "merge_size", MERGE_SIZE) or MERGE_SIZE)
        factor = patch * merge
        # verl first resizes with qwen_vl_utils (its defaults), then the processor applies its own range.
        fetch = VisionGrid(factor, MIN_TOKENS * factor * factor, MAX_TOKENS * factor * factor)
        self.grids = (fetch, VisionGrid(factor, *_processor_pixel_range(image_processor, factor)))
        self._cached = lru_cache(maxsize=4096)(self._count)

    def text_tokens(self, prompt: str, n_images: int) -> int:
        return self._cached(prompt, n_images)

    def _count(self, prompt: str, n_images: int) -> int:
        content: list[dict] = []
        for segment in re.split(f"({IMAGE_PLACEHOLDER})", prompt):
            if segment == IMAGE_PLACEHOLDER:
                content.append({"type": "image"})
            elif segment:
                content.append({"type": "text", "text": segment})
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        ids = self.tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        # Each image is one <|image_pad|> in the template text; the processor expands it to its token count.
        return len(ids) - n_images


def _processor_pixel_range(image_processor: object, factor: int) -> tuple[int, int]:
    """(min_pixels, max_pixels) of an HF image processor (``size`` dict or SizeDict, or older attributes)."""
    size = getattr(image_processor, "size", None)

    def read(key: str) -> int | None:
        if isinstance(size, dict):
            return size.get(key)
        return getattr(size, key, None)

    low = read("shortest_edge") or getattr(image_processor, "min_pixels", None) or 4 * factor * factor
    high = read("longest_edge") or getattr(image_processor, "max_pixels", None) or MAX_TOKENS * factor * factor
    return int(low), int(high)


def make_counter(tokenizer_dir: str | Path | None) -> PromptCounter:
    return ExactPromptCounter(tokenizer_dir) if tokenizer_dir else PromptCounter()


@dataclass(frozen=True)
class Fitted:
    images: list[Image.Image]
    prompt_tokens: int
    scale: float  # common factor applied to every image's sides (1.0: unchanged)


def fit_to_budget(
    images: Sequence[Image.Image],
    prompt: str,
    max_prompt_tokens: int,
    counter: PromptCounter,
    min_side: int = FACTOR,
) -> Fitted:
    """Scale all images of a puzzle by one common factor until the whole prompt fits ``max_prompt_tokens``.

    Scaled images are resized straight to the sides Qwen's smart_resize would give them, so the model sees them
    unchanged and the recorded count is what the processor produces. Raises :class:`PuzzleSkip` when even the
    text alone is too long or an image side would fall under ``min_side`` pixels.
    """
    text = counter.text_tokens(prompt, len(images))
    budget = max_prompt_tokens - text
    if budget <= 0:
        raise PuzzleSkip("prompt text over token budget")
    sizes = [im.size for im in images]
    tokens = sum(image_tokens(w, h, counter.grids) for w, h in sizes)
    if tokens <= budget:
        return Fitted(list(images), text + tokens, 1.0)
    factor = counter.grids[-1].factor
    area = sum(w * h for w, h in sizes)
    scale = min(1.0, math.sqrt(budget * factor * factor / area))
    for _ in range(200):
        scaled = [(max(1, math.floor(w * scale)), max(1, math.floor(h * scale))) for w, h in sizes]
        if min(min(s) for s in scaled) < min_side:
            raise PuzzleSkip(f"image under {min_side} px at the token budget")
        targets = [_final_size(w, h, counter.grids) for w, h in scaled]
        tokens = sum(image_tokens(w, h, counter.grids) for w, h in targets)
        if tokens <= budget:
            resized = [
                im if im.size == t else im.resize(t, Image.Resampling.BILINEAR, reducing_gap=2.0)
                for im, t in zip(images, targets)
            ]
            return Fitted(resized, text + tokens, scale)
        scale *= 0.97
    raise PuzzleSkip("image under budget not reachable")


def _final_size(width: int, height: int, grids: Sequence[VisionGrid]) -> tuple[int, int]:
    for grid in grids:
        width, height = grid.resize(width, height)
    return width, height
