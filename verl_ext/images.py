"""Image helpers shared by every task and source."""

from __future__ import annotations

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
    thumb = rgb.resize((_ID_THUMB, _ID_THUMB), Image.Resampling.BOX)
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
# Side of the thumbnail flatness is judged on; large enough to see texture, small enough to be free.
_FLAT_THUMB = 96


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB mode (sources normalise modes already; this keeps tasks safe when called directly)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def small_gray(image: Image.Image, side: int = _FLAT_THUMB) -> np.ndarray:
    """A float32 grayscale thumbnail whose longer side is about ``side`` (fast: integer ``reduce``, then a box resize)."""
    factor = max(1, max(image.size) // (2 * side))
    small = image.reduce(factor) if factor > 1 else image
    scale = side / max(small.size)
    if scale < 1:
        small = small.resize((max(1, round(small.width * scale)), max(1, round(small.height * scale))), Image.Resampling.BOX)
    return np.asarray(small.convert("L"), dtype=np.float32)


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
    array = np.asarray(image)
    height, width = array.shape[:2]
    # OpenCV's positive angles are counter-clockwise in image coordinates (y pointing down), as wanted here.
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), float(angle), 1.0)
    turned = cv2.warpAffine(array, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return Image.fromarray(turned)


def circle_mask(side: int) -> np.ndarray:
    """Boolean ``side`` x ``side`` mask of the disc inscribed in the square (True inside)."""
    centre = (side - 1) / 2
    yy, xx = np.ogrid[:side, :side]
    return (xx - centre) ** 2 + (yy - centre) ** 2 <= (side / 2) ** 2


def apply_circle_mask(image: Image.Image) -> Image.Image:
    """A square image with everything outside its inscribed disc painted black.

    The disc is the part of a square that stays inside the canvas under any rotation about the centre, so masking
    every image of a puzzle the same way hides which angle was used.
    """
    array = np.array(image)
    array[~circle_mask(array.shape[0])] = 0
    return Image.fromarray(array)


# --- photometric operations on uint8 RGB arrays (torchvision-like semantics, in numpy/OpenCV) -------------


def _gray(array: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma as float32, the weights Pillow's ``convert("L")`` uses."""
    return array[..., 0] * np.float32(0.299) + array[..., 1] * np.float32(0.587) + array[..., 2] * np.float32(0.114)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    return np.clip(array + 0.5, 0, 255).astype(np.uint8)


def adjust_brightness(array: np.ndarray, factor: float) -> np.ndarray:
    """Every channel multiplied by ``factor`` (1 keeps the image)."""
    return _to_uint8(array.astype(np.float32) * np.float32(factor))


def adjust_contrast(array: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the image's mean gray level: 0 gives flat gray, 1 keeps the image, >1 stretches."""
    mean = np.float32(_gray(array).mean())
    return _to_uint8((array.astype(np.float32) - mean) * np.float32(factor) + mean)


def adjust_saturation(array: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the pixel's own gray level: 0 gives grayscale, 1 keeps the image, >1 makes colours stronger."""
    gray = _gray(array)[..., None]
    return _to_uint8((array.astype(np.float32) - gray) * np.float32(factor) + gray)


def adjust_hue(array: np.ndarray, shift: float) -> np.ndarray:
    """Hue rotated by ``shift`` of a full turn (in [-0.5, 0.5]); brightness and saturation kept."""
    hsv = cv2.cvtColor(array, cv2.COLOR_RGB2HSV)  # OpenCV stores 8-bit hue in 0..179 (two degrees a step)
    offset = int(round(shift * 180)) % 180
    hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + offset) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def grayscale(array: np.ndarray) -> np.ndarray:
    """Luma copied into all three channels (still RGB, so every view has the same mode)."""
    gray = _to_uint8(_gray(array))
    return np.repeat(gray[..., None], 3, axis=2)


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
