"""Contrastive: were two augmented views made from the same photograph?

A view is made the SimCLR way, in this order: random resized crop (area fraction ``scale``, aspect ``ratio``)
resized to ``size`` x ``size``, horizontal flip, colour jitter (brightness, contrast, saturation, hue in a random
order), grayscale, Gaussian blur, each with its own probability. A positive pairs two independent views of the
image; a negative pairs one view of the image with one view of ``partner``, a different picture (by content id).
Everything a view went through is recorded in ``params["views"]`` so it can be rebuilt with :func:`render_view`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from verl_ext.images import (
    PHOTOMETRIC_OPS,
    content_id,
    gaussian_blur,
    grayscale,
    is_flat,
    small_gray,
    to_rgb,
)
from verl_ext.tasks.base import FORMAT_INSTRUCTION, PairRole, Puzzle, PuzzleSkip, Task, positive_negative_pair

MIN_SIDE = 56

# SimCLR's augmentation at colour strength 1 (Chen et al. 2020), the "normal" setting.
_NORMAL = {
    "scale": (0.08, 1.0),
    "jitter_p": 0.8,
    "brightness": 0.8,
    "contrast": 0.8,
    "saturation": 0.8,
    "hue": 0.2,
    "gray_p": 0.2,
    "blur_p": 0.5,
    "flip_p": 0.5,
}
# Smaller crops and every augmentation more likely.
_STRONG = {**_NORMAL, "scale": (0.08, 0.3), "gray_p": 0.8, "blur_p": 0.8, "flip_p": 0.8}
# Large crops and mild colour changes: mostly a test of recognising the same scene.
_MILD = {**_NORMAL, "scale": (0.3, 1.0), "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}


def _random_resized_crop(
    width: int, height: int, rng: np.random.Generator, scale: Sequence[float], ratio: Sequence[float]
) -> tuple[int, int, int, int]:
    """A box covering a random fraction ``scale`` of the area with aspect ratio in ``ratio`` (log-uniform).

    Ten tries as in torchvision's RandomResizedCrop; if none fits, the largest central box within ``ratio``.
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(rng.uniform(scale[0], scale[1]))
        aspect = math.exp(float(rng.uniform(*log_ratio)))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(width - w + 1)), int(rng.integers(height - h + 1))
            return (left, top, left + w, top + h)
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return (left, top, left + w, top + h)


def sample_view(width: int, height: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Draw the recipe of one view of a ``width`` x ``height`` image (JSON-ready; see :func:`render_view`)."""
    crop = _random_resized_crop(width, height, rng, knobs["scale"], knobs["ratio"])
    flip = bool(rng.random() < knobs["flip_p"])
    jitter: list[dict[str, Any]] = []
    if rng.random() < knobs["jitter_p"]:
        # Factors drawn as torchvision's ColorJitter does, applied in a random order.
        factors = {
            op: float(rng.uniform(max(0.0, 1 - knobs[op]), 1 + knobs[op]))
            for op in ("brightness", "contrast", "saturation")
        }
        factors["hue"] = float(rng.uniform(-knobs["hue"], knobs["hue"]))
        jitter = [{"op": op, "factor": factors[op]} for op in rng.permutation(list(factors)).tolist()]
    gray = bool(rng.random() < knobs["gray_p"])
    blur = float(rng.uniform(*knobs["blur_sigma"])) if rng.random() < knobs["blur_p"] else None
    return {"crop": list(crop), "flip": flip, "jitter": jitter, "grayscale": gray, "blur_sigma": blur}


def render_view(image: Image.Image, view: Mapping[str, Any], size: int) -> Image.Image:
    """Make the view described by ``view`` (as :func:`sample_view` returns it) from ``image``."""
    left, top, right, bottom = view["crop"]
    # Pillow resizes only the box and first shrinks by whole factors when reducing a lot (fast on large photos).
    resized = to_rgb(image).resize(
        (size, size), Image.Resampling.BILINEAR, box=(left, top, right, bottom), reducing_gap=2.0
    )
    if view["flip"]:
        resized = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    array = np.asarray(resized)
    for step in view["jitter"]:
        array = PHOTOMETRIC_OPS[step["op"]](array, step["factor"])
    if view["grayscale"]:
        array = grayscale(array)
    if view["blur_sigma"] is not None:
        array = gaussian_blur(array, view["blur_sigma"])
    return Image.fromarray(np.ascontiguousarray(array))


class ContrastiveTask(Task):
    name = "contrastive"
    needs_partner = True
    presets = {
        "easy": _MILD,
        "medium": _NORMAL,
        "hard": _STRONG,
        # SSL4RL's names for its two augmentation settings, so its configurations can be asked for by name.
        "normal": _NORMAL,
        "strong": _STRONG,
    }
    default_difficulty = "medium"

    def pair_roles(self, coin: float) -> tuple[PairRole, PairRole]:
        """A pair of pictures gives one positive and one negative: splits are exactly half and half."""
        return positive_negative_pair(coin)

    def make(
        self,
        image: Image.Image,
        rng: np.random.Generator,
        partner: Image.Image | None = None,
        *,
        positive: bool | None = None,
        size: int = 224,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        jitter_p: float = 0.8,
        brightness: float = 0.8,
        contrast: float = 0.8,
        saturation: float = 0.8,
        hue: float = 0.2,
        gray_p: float = 0.2,
        blur_p: float = 0.5,
        blur_sigma: Sequence[float] = (0.1, 2.0),
        flip_p: float = 0.5,
    ) -> Puzzle:
        """Two views; ``positive=None`` lets ``rng`` decide (builders pass it to balance a split exactly 50/50).

        A negative needs ``partner``, a picture whose content id differs from ``image``'s (ValueError otherwise).
        Skip reasons: "image under 56 px", "flat image", and for an unusable partner "partner under 56 px",
        "flat partner".
        """
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5], got {hue}")
        image = to_rgb(image)
        if positive is None:
            positive = bool(rng.random() < 0.5)
        if not positive:
            if partner is None:
                raise ValueError("a negative contrastive pair needs a partner image")
            partner = to_rgb(partner)
            # content_id includes the size, so only pictures of equal size can be the same picture.
            if partner is image or (partner.size == image.size and content_id(partner) == content_id(image)):
                raise ValueError("the partner of a negative pair shows the same picture (same content id)")
        sources = [image, image if positive else partner]
        # A partner's own reasons are told apart, so a builder can retry with another partner instead of skipping.
        for source, who in zip(sources, ("image", "image" if positive else "partner")):
            if min(source.size) < MIN_SIDE:
                raise PuzzleSkip(f"{who} under {MIN_SIDE} px")
            if is_flat(small_gray(source)):
                raise PuzzleSkip(f"flat {who}")

        knobs = {
            "scale": tuple(scale), "ratio": tuple(ratio), "jitter_p": jitter_p, "brightness": brightness,
            "contrast": contrast, "saturation": saturation, "hue": hue, "gray_p": gray_p, "blur_p": blur_p,
            "blur_sigma": tuple(blur_sigma), "flip_p": flip_p,
        }  # fmt: skip
        views = [sample_view(s.width, s.height, rng, knobs) for s in sources]
        images = [render_view(s, v, size) for s, v in zip(sources, views)]
        for view, source in zip(views, ("image", "image" if positive else "partner")):
            view["source"] = source
        params = {
            "positive": positive,
            "size": size,
            "views": views,
            "knobs": {key: list(value) if isinstance(value, tuple) else value for key, value in knobs.items()},
        }
        return Puzzle(images=images, prompt=_PROMPT, answer="yes" if positive else "no", params=params)

    def labels(self, params: Mapping[str, Any]) -> Mapping[str, Sequence[str]]:
        return {
            "yes": ["same", "same photograph", "same photo", "same image", "true", "y"],
            "no": ["different", "different photographs", "different photos", "different images", "false", "n"],
        }


_PROMPT = (
    "View 1: <image>\nView 2: <image>\n"
    "Each view was made from a photograph by cutting out a random region, resizing it to a square and then "
    "possibly mirroring it left to right, changing its brightness, contrast, saturation or hue, turning it to "
    "grayscale or blurring it. The two views may come from the same photograph (possibly from different regions "
    "of it) or from two different photographs.\n"
    "Were both views made from the same photograph? Answer yes or no.\n"
    f"{FORMAT_INSTRUCTION}"
)
