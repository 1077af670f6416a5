"""Turn any stored image into a clean RGB picture, or a counted skip: the one place that decodes.

Every oddity real benchmark files contain is handled here: base64 text with or without a data-URI header,
corrupt or truncated files, decompression bombs, colour modes from CMYK to 16-bit grey and float, transparency
(flattened on white), EXIF orientation (applied, so "upright" means what a viewer shows), animations (first
frame), tiny pictures (skipped) and extreme aspect ratios (centre-cropped). Nothing here depends on the puzzle
task or on build options, so a picture gets the same content id in every dataset built from it.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from verl_ext.qwen_vision import MAX_PIXELS
from verl_ext.sources.base import Box, Payload, RawItem
from verl_ext.sources.scenes import SceneRecipe, render_scene

# Qwen2.5-VL never looks at more than 16384 tokens of 28x28 pixels per image; larger pictures are reduced to
# that on decode (for JPEG cheaply, inside the decoder) before anything else touches them.
CANONICAL_MAX_PIXELS = MAX_PIXELS


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds applied to every decoded picture."""

    max_pixels: int = CANONICAL_MAX_PIXELS
    # Pictures whose header claims more pixels than this are refused unread (Pillow's own bomb threshold).
    bomb_pixels: int = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
    # Shorter side, after the aspect crop: under this no puzzle task has room to work.
    min_side: int = 32
    # Longer side / shorter side above this is centre-cropped to it (banners, panoramas, strips).
    max_aspect: float = 5.0


DEFAULT_LIMITS = DecodeLimits()


class ImageSkip(Exception):
    """A stored image that cannot become a picture; the message is a short, stable reason for counting."""


def payload_bytes(payload: Payload | dict | None) -> bytes:
    """The encoded file behind a payload: base64 text, a ``{"bytes", "path"}`` struct, raw bytes or a path."""
    if payload is None:
        raise ImageSkip("missing image")
    if isinstance(payload, dict):
        if payload.get("bytes"):
            return payload_bytes(payload["bytes"])
        if payload.get("path"):
            return payload_bytes(Path(payload["path"]))
        raise ImageSkip("missing image")
    if isinstance(payload, Path):
        try:
            data = payload.read_bytes()
        except OSError:
            raise ImageSkip("unreadable image file") from None
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
    elif isinstance(payload, str):
        text = payload.strip()
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            data = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            raise ImageSkip("invalid base64") from None
    else:
        raise ImageSkip("unsupported image cell")
    if not data:
        raise ImageSkip("empty image data")
    return data


def load_whole(image: Image.Image) -> None:
    """``image.load()``, raising on a truncated file whatever the process has set.

    Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` (a process-wide switch) makes a truncated file load silently,
    its missing part grey; libraries turn it on at import (lmms-eval 0.7.3 does), which would turn a corrupt
    picture from a counted skip into a grey-bottomed puzzle depending on what else was imported. Pictures are
    decoded one at a time per process (builder workers are processes), so switching it off around the load is
    safe.
    """
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def decode_bytes(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS, notes: Counter | None = None) -> Image.Image:
    """Decode an encoded image file into a normalised RGB picture (see the module docstring)."""
    notes = notes if notes is not None else Counter()
    with warnings.catch_warnings():
        # Pillow warns between 1x and 2x its threshold and raises above; we refuse both the same way.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageSkip("decompression bomb") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise ImageSkip("not a decodable image") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageSkip("not a decodable image")
    if width * height > limits.bomb_pixels:
        raise ImageSkip("decompression bomb")
    if getattr(image, "n_frames", 1) > 1:
        notes["animated: first frame"] += 1
    if width * height > limits.max_pixels and image.format == "JPEG":
        # The JPEG decoder can scale by 1/2, 1/4 or 1/8 while decoding: far cheaper than decoding then resizing.
        scale = math.sqrt(limits.max_pixels / (width * height))
        image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        load_whole(image)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError):
        raise ImageSkip("corrupt or truncated image") from None
    except MemoryError:
        raise ImageSkip("decompression bomb") from None
    image = _apply_orientation(image, notes)
    image = to_rgb(image, notes)
    image = _reduce_to(image, limits.max_pixels, notes)
    image = _crop_aspect(image, limits.max_aspect, notes)
    if min(image.size) < limits.min_side:
        raise ImageSkip(f"image under {limits.min_side} px")
    return image


def decode_item(item: RawItem, limits: DecodeLimits = DEFAULT_LIMITS, notes: Counter | None = None) -> Image.Image:
    """Decode one raw source item, including its crop box, into a normalised RGB picture."""
    if isinstance(item.payload, SceneRecipe):
        image = _reduce_to(render_scene(item.payload), limits.max_pixels, notes if notes is not None else Counter())
    else:
        image = decode_bytes(payload_bytes(item.payload), limits, notes)
    if item.box is not None:
        image = crop_fraction(image, item.box)
        if min(image.size) < limits.min_side:
            raise ImageSkip(f"image under {limits.min_side} px")
    return image


def crop_fraction(image: Image.Image, box: Box) -> Image.Image:
    """Crop by fractions of the size, so a box means the same region at any decode resolution."""
    left, top, right, bottom = box
    w, h = image.size
    return image.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))


def to_rgb(image: Image.Image, notes: Counter | None = None) -> Image.Image:
    """8-bit RGB from any Pillow mode; transparency is composited on white, high bit depths are rescaled."""
    mode = image.mode
    if mode == "RGB":
        return image
    if notes is not None:
        notes[f"mode {mode} converted"] += 1
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(image)), "L").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        raise ImageSkip(f"unsupported colour mode {mode}") from None


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Rescale 16-bit, 32-bit or float grey levels to 0..255 (Pillow's own conversion clips instead)."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        finite = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(finite.min(initial=0.0)), float(finite.max(initial=0.0))
        # Floats in [0, 1] are intensities; anything else is stretched over its own range.
        if low >= 0.0 and high <= 1.0:
            scaled = finite * 255.0
        else:
            scaled = (finite - low) * (255.0 / (high - low)) if high > low else np.zeros_like(finite)
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    high = int(array.max(initial=0))
    if array.dtype.itemsize == 1 or high <= 255:
        return np.clip(array, 0, 255).astype(np.uint8)
    top = 65535 if high <= 65535 else high
    return np.clip(np.rint(array.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


def _apply_orientation(image: Image.Image, notes: Counter) -> Image.Image:
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - Pillow raises many types on broken EXIF blocks
        raise ImageSkip("unreadable EXIF orientation") from None
    if orientation in (None, 1):
        return image
    if orientation not in range(2, 9):
        raise ImageSkip("unreadable EXIF orientation")
    notes["EXIF orientation applied"] += 1
    return ImageOps.exif_transpose(image)


def _reduce_to(image: Image.Image, max_pixels: int, notes: Counter) -> Image.Image:
    pixels = image.width * image.height
    if pixels <= max_pixels:
        return image
    notes["huge image reduced"] += 1
    factor = math.ceil(math.sqrt(pixels / max_pixels))
    return image.reduce(factor)


def _crop_aspect(image: Image.Image, max_aspect: float, notes: Counter) -> Image.Image:
    w, h = image.size
    if max(w, h) <= max_aspect * min(w, h):
        return image
    notes["extreme aspect centre-cropped"] += 1
    if w > h:
        keep = int(max_aspect * h)
        left = (w - keep) // 2
        return image.crop((left, 0, left + keep, h))
    keep = int(max_aspect * w)
    top = (h - keep) // 2
    return image.crop((0, top, w, top + keep))
