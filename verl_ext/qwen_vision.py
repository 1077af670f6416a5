"""Qwen2.5-VL's image geometry and text pre-tokenizer: the one place that states them.

A model family with another patch size or token range is a change here. Values are those of Qwen2.5-VL's
image processor and of ``qwen_vl_utils`` (verl's image path).
"""

PATCH_SIZE = 14  # pixels per side of one ViT patch
MERGE_SIZE = 2  # patches merged per side into one image token
TEMPORAL_PATCH_SIZE = 2  # frames per patch (a still image is repeated)
FACTOR = PATCH_SIZE * MERGE_SIZE  # 28: pixels per side of one image token; resized sides are multiples of it
MIN_TOKENS = 4  # qwen_vl_utils' floor: at least 4 image tokens per image
MAX_TOKENS = 16384  # qwen_vl_utils' cap: at most 16384 image tokens per image
MIN_PIXELS = MIN_TOKENS * FACTOR * FACTOR
MAX_PIXELS = MAX_TOKENS * FACTOR * FACTOR
MAX_ASPECT_RATIO = 200  # qwen_vl_utils refuses images more elongated than this

# Splits text before byte-level BPE the way Qwen2's tokenizer does: contractions, letter runs with one leading
# non-letter, single digits (so numbers are spelled digit by digit), punctuation runs, newlines, spaces. The tiny
# model's tokenizer is trained with it; the builders estimate prompt lengths with it.
PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
