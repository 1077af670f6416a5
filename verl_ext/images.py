"""Image helpers shared by every task and source."""

from __future__ import annotations

import functools
import hashlib

import cv2
import numpy as np
from PIL import Image

# Side of the thumbnail the content id is computed from: small enough to be cheap on large images,
# large enough that different photographs never collide in practice.
_ID_THUMB = 32


def content_id(image: Image.Image) -> str:
    """A stable id of what an image shows, independent of file format, metadata and row ids.

    Two copies of one picture (the same pixels, re-saved losslessly or stored under different rows) get the
    same id, so negatives of the contrastive task and the leakage check compare content, not names.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    # Still an average over every pixel, but taken in two steps: Pillow first box-reduces by the whole factor
    # (reducing_gap=1: to between 1x and 2x the thumbnail side), then box-resizes the small rest. This halves
    # the cost on large photos. The id stays one function of the pixels, whatever task or build option (the
    # picture is always the full decode, before any task-specific shrinking), so builders, dedupe, train/val
    # carving and the leakage check (all through this function) keep agreeing.
    thumb = rgb.resize((_ID_THUMB, _ID_THUMB), Image.Resampling.BOX, reducing_gap=1.0)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(thumb.tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Geometry and photometry shared by the puzzle tasks. Arrays are HxWx3 uint8 RGB unless said otherwise; every
# random choice is made by the caller's ``numpy.random.Generator`` so puzzles are reproducible.
# ---------------------------------------------------------------------------------------------------------

Box = tuple[int, int, int, int]  # (left, top, right, bottom), right/bottom exclusive, as Pillow's crop takes it

# Below this gray-level standard deviation (0..255 scale) a region shows next to nothing: a sky, a wall, a margin.
FLAT_STD = 4.0
# Side of the sample flatness is judged on; large enough to see texture, small enough to be free.
_FLAT_THUMB = 96


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB mode (sources normalise modes already; this keeps tasks safe when called directly)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def small_gray(image: Image.Image, side: int = _FLAT_THUMB, box: Box | None = None) -> np.ndarray:
    """A float32 grayscale sample of ``image`` (or of its ``box``) whose longer side is at most ``side`` pixels.

    Nearest-neighbour sampling reads only the sampled pixels, so this costs microseconds even on large photos,
    and (unlike averaging) it keeps fine texture, which is what flatness tests look for.
    """
    box = box or (0, 0, image.width, image.height)
    width, height = box[2] - box[0], box[3] - box[1]
    scale = min(1.0, side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    sample = image.resize(size, Image.Resampling.NEAREST, box=box)
    return np.asarray(sample.convert("L"), dtype=np.float32)


def is_flat(gray: np.ndarray, threshold: float = FLAT_STD) -> bool:
    """True when a grayscale region has (almost) no texture to solve a puzzle from."""
    return gray.size == 0 or float(gray.std()) < threshold


def random_square_box(width: int, height: int, rng: np.random.Generator) -> Box:
    """The largest square inside a ``width`` x ``height`` image, at a random offset along the longer side."""
    side = min(width, height)
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    return (left, top, left + side, top + side)


def grid_edges(length: int, parts: int) -> list[int]:
    """Boundaries of ``parts`` near-equal cells along ``length`` pixels (cells differ by at most one pixel)."""
    return [round(i * length / parts) for i in range(parts + 1)]


# Multiples of 90 degrees counter-clockwise as lossless transposes.
_TRANSPOSE_CCW = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


def rotate_ccw(image: Image.Image, angle: int) -> Image.Image:
    """``image`` turned ``angle`` degrees counter-clockwise about its centre.

    Multiples of 90 are exact pixel transposes (no resampling, no clipped content). Other angles keep the canvas
    size and resample bilinearly with OpenCV (several times faster than Pillow's ``rotate``); content leaving the
    canvas is lost and uncovered corners are black, so callers must hide the corners (see :func:`apply_circle_mask`).
    """
    angle %= 360
    if angle == 0:
        return image.copy()
    if angle in _TRANSPOSE_CCW:
        return image.transpose(_TRANSPOSE_CCW[angle])
    return rotate_resampled(image, angle)


def rotate_resampled(image: Image.Image, angle: float, shift: tuple[float, float] = (0.0, 0.0)) -> Image.Image:
    """``image`` turned ``angle`` degrees counter-clockwise about its centre and moved by ``shift`` pixels,
    resampled bilinearly (OpenCV) on a canvas of the same size; uncovered corners are black.

    A fractional ``shift`` makes even a quarter turn interpolate, which lets a caller give every angle the same
    softness (an off-axis turn interpolates every pixel; a bare transpose would stay visibly sharper).
    """
    array = np.asarray(image)
    height, width = array.shape[:2]
    # OpenCV's positive angles are counter-clockwise in image coordinates (y pointing down), as wanted here.
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), float(angle), 1.0)
    matrix[:, 2] += shift
    turned = cv2.warpAffine(array, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return Image.fromarray(turned)


@functools.lru_cache(maxsize=64)
def circle_mask(side: int) -> Image.Image:
    """Mode "L" ``side`` x ``side`` mask: 255 outside the disc inscribed in the square, 0 inside."""
    centre = (side - 1) / 2
    yy, xx = np.ogrid[:side, :side]
    outside = (xx - centre) ** 2 + (yy - centre) ** 2 > (side / 2) ** 2
    return Image.fromarray((outside * 255).astype(np.uint8))


def apply_circle_mask(image: Image.Image) -> Image.Image:
    """A square image with everything outside its inscribed disc painted black.

    The disc is the part of a square that stays inside the canvas under any rotation about the centre, so masking
    every image of a puzzle the same way hides which angle was used.
    """
    out = image.copy()
    out.paste(0, (0, 0, *image.size), circle_mask(image.width))
    return out


# --- photometric operations on uint8 RGB arrays (torchvision-like semantics, in numpy/OpenCV) -------------


def _gray3(array: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (the weights Pillow's ``convert("L")`` uses) copied into three channels."""
    return cv2.cvtColor(cv2.cvtColor(array, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


# OpenCV's saturating arithmetic: several times faster than float numpy on these small views.
def adjust_brightness(array: np.ndarray, factor: float) -> np.ndarray:
    """Every channel multiplied by ``factor`` (1 keeps the image)."""
    return cv2.convertScaleAbs(array, alpha=float(factor))


def adjust_contrast(array: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the image's mean gray level: 0 gives flat gray, 1 keeps the image, >1 stretches."""
    mean = cv2.mean(cv2.cvtColor(array, cv2.COLOR_RGB2GRAY))[0]
    return cv2.addWeighted(array, float(factor), array, 0.0, (1.0 - float(factor)) * mean)


def adjust_saturation(array: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the pixel's own gray level: 0 gives grayscale, 1 keeps the image, >1 makes colours stronger."""
    return cv2.addWeighted(array, float(factor), _gray3(array), 1.0 - float(factor), 0.0)


def adjust_hue(array: np.ndarray, shift: float) -> np.ndarray:
    """Hue rotated by ``shift`` of a full turn (in [-0.5, 0.5]); brightness and saturation kept."""
    hsv = cv2.cvtColor(array, cv2.COLOR_RGB2HSV)  # OpenCV stores 8-bit hue in 0..179 (two degrees a step)
    offset = int(round(shift * 180)) % 180
    hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + offset) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def grayscale(array: np.ndarray) -> np.ndarray:
    """Luma copied into all three channels (still RGB, so every view has the same mode)."""
    return _gray3(array)


def gaussian_blur(array: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel spans about three sigmas each side)."""
    return cv2.GaussianBlur(array, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT_101)


# Photometric operations by the name recorded in puzzle parameters.
PHOTOMETRIC_OPS = {
    "brightness": adjust_brightness,
    "contrast": adjust_contrast,
    "saturation": adjust_saturation,
    "hue": adjust_hue,
}
