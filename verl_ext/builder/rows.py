"""A puzzle becomes one verl row: the parquet schema, image encoding and ``extra_info``.

Image format: JPEG at quality 95 with Pillow's default 4:2:0 chroma subsampling, for every task. PNG (lossless) is
available with ``--image-format png`` but costs about 30x the encoding time and 3x the bytes on photographs;
the q95 artefacts lie far below what a 28-pixel patch encoder resolves, and no answer depends on exact
pixel values (angles, tile orders, cells and same/different survive re-encoding).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from PIL import Image

from verl_ext.tasks.base import Puzzle

ABILITY = "visual_puzzle"
IMAGE_FORMATS = ("jpeg", "png")
JPEG_QUALITY = 95

# extra_info keys, in order: the reward, the evaluation and the leakage check rely on these names.
EXTRA_INFO_FIELDS: list[tuple[str, pa.DataType]] = [
    ("task", pa.string()),
    ("source", pa.string()),
    ("split", pa.string()),
    ("index", pa.int64()),
    ("source_id", pa.string()),
    ("content_id", pa.string()),
    ("difficulty", pa.string()),
    ("params", pa.string()),  # JSON of Puzzle.params
    ("prompt_tokens", pa.int64()),
    ("partner_content_id", pa.string()),  # "" when the puzzle shows one picture only
    ("source_split", pa.string()),  # the source's own split name ("" when carved)
    ("puzzle_k", pa.int64()),  # which of --puzzles-per-image puzzles of this picture (0-based)
    ("image_scale", pa.float64()),  # common factor the token budget applied to the images' sides
    ("prompt_tokens_exact", pa.bool_()),  # counted with the model's tokenizer (else a safe upper bound)
]
EXTRA_INFO_KEYS = [name for name, _ in EXTRA_INFO_FIELDS]

SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct(EXTRA_INFO_FIELDS)),
    ]
)


def data_source(task: str) -> str:
    """verl's ``data_source`` of a task's rows: validation metrics are reported per value."""
    return f"ssl_{task}"


def encode_image(image: Image.Image, image_format: str = "jpeg") -> bytes:
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    if image_format == "png":
        image.save(buffer, "PNG", compress_level=1)
    elif image_format == "jpeg":
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    else:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    return buffer.getvalue()


def make_row(
    *,
    task: str,
    puzzle: Puzzle,
    images: Sequence[Image.Image],
    image_format: str,
    info: dict[str, Any],
) -> dict[str, Any]:
    """The verl row of ``puzzle`` with ``images`` (already fitted to the budget) and the given extra_info values.

    ``info`` must hold every key of :data:`EXTRA_INFO_KEYS` except ``task``, ``params`` and ``index`` (the
    writer numbers rows per split).
    """
    extra = {"task": task, "index": -1, "params": json.dumps(puzzle.params, sort_keys=True), **info}
    missing = set(EXTRA_INFO_KEYS) - set(extra)
    if missing:
        raise ValueError(f"extra_info lacks {sorted(missing)}")
    return {
        "data_source": data_source(task),
        "prompt": [{"role": "user", "content": puzzle.prompt}],
        "images": [{"bytes": encode_image(im, image_format), "path": None} for im in images],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": str(puzzle.answer)},
        "extra_info": {key: extra[key] for key in EXTRA_INFO_KEYS},
    }
