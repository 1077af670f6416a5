"""Correspondence: which marked point of a transformed view is the scene point marked in the original?

Image 1 is the photo with one reference point marked by a ring labelled ``R``. Image 2 is a new view of part of
the photo: a (possibly rotated, mirrored, perspective-distorted) quadrilateral of it warped onto a rectangle
of a new size. ``num_candidates`` rings labelled A, B, ... are drawn on image 2; exactly one sits where the
reference point went. The view is one homography ``H`` (image-1 pixels to image-2 pixels), so the answer is
exact: the true candidate is drawn at ``H @ reference``.

Soundness rules:

* the viewed quadrilateral lies inside the photo, so image 2 has no empty corners and every point of it shows
  real content (a candidate is never placed on nothing);
* rings are drawn after warping, identical in both images (same radius, width, colours, font), so their shape
  says nothing about the transform;
* the reference sits on textured content (a ring on blank sky marks nothing recognisable);
* candidates keep a minimum distance from each other (at least five ring radii), so the answer is unambiguous,
  and every label sits at the upper right of its own ring;
* the layout of the candidates says nothing about which is right: harder presets place them in close pairs
  (every pair alike, the true one's included), one pair at the spot a model that ignores the transform would
  pick.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from PIL import Image

from verl_ext.images import is_flat, to_rgb
from verl_ext.tasks.base import FORMAT_INSTRUCTION, Puzzle, PuzzleSkip, Task

# Smallest photo side we make a view of, and smallest side of the view itself (room for several rings).
MIN_SIDE = 112
MIN_VIEW = 112
_LETTERS = string.ascii_uppercase[:8]
REFERENCE_LABEL = "R"
# Yellow ring and text with a dark outline: readable on bright and dark content alike.
_RING_COLOUR = (255, 221, 0)
_OUTLINE_COLOUR = (20, 20, 20)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SUBPIXEL_BITS = 4  # rings are drawn at 1/16 px precision, so the drawn centre is the stored one
# Gray-level standard deviation below which the content inside a ring counts as featureless.
_TEXTURE_STD = 10.0
_VIEW_TRIES = 8


class CorrespondenceTask(Task):
    """Find, among lettered points of a transformed view, the one that is the reference point of the photo."""

    name = "correspondence"
    answer_kind = "label"
    presets = {
        # A mild view: small rotation, no mirror, no perspective, few candidates far apart.
        "easy": {
            "num_candidates": 3,
            "max_rotation": 15.0,
            "scale": (0.8, 1.25),
            "crop": (0.6, 0.85),
            "perspective": 0.0,
            "flip_probability": 0.0,
            "min_distance": 0.2,
            "cluster": 1,
            "decoys": False,
        },
        "medium": {
            "num_candidates": 4,
            "max_rotation": 45.0,
            "scale": (0.7, 1.4),
            "crop": (0.5, 0.8),
            "perspective": 0.06,
            "flip_probability": 0.25,
            "min_distance": 0.12,
            "cluster": 2,
            "decoys": False,
        },
        # Any rotation, frequent mirrors, stronger perspective; candidates in close pairs, one pair around the
        # spot a model would pick if it ignored the transform.
        "hard": {
            "num_candidates": 6,
            "max_rotation": 180.0,
            "scale": (0.6, 1.5),
            "crop": (0.4, 0.7),
            "perspective": 0.12,
            "flip_probability": 0.5,
            "min_distance": 0.08,
            "cluster": 2,
            "decoys": True,
        },
    }

    def make(
        self,
        image: Image.Image,
        rng: np.random.Generator,
        partner: Image.Image | None = None,
        *,
        num_candidates: int = 4,
        max_rotation: float = 45.0,
        scale: Sequence[float] = (0.7, 1.4),
        crop: Sequence[float] = (0.5, 0.8),
        perspective: float = 0.06,
        flip_probability: float = 0.25,
        min_distance: float = 0.12,
        cluster: int = 2,
        decoys: bool = False,
    ) -> Puzzle:
        """Build a puzzle.

        ``crop``: side of the viewed region as a fraction of the photo's shorter side; ``scale``: view pixels per
        photo pixel; ``max_rotation``: degrees either way; ``perspective``: corner jitter as a fraction of the
        region side; ``min_distance``: smallest gap between candidates as a fraction of the view's shorter side
        (never under five ring radii); ``cluster``: candidates come in groups of this many close points (the true one's
        group included; ``num_candidates`` must be a multiple); ``decoys``: seed a group at the spot a model that
        ignores the transform would pick.
        """
        _check_knobs(num_candidates, scale, crop, perspective, flip_probability, cluster)
        image = to_rgb(image)
        source = np.asarray(image)
        height, width = source.shape[:2]
        if min(height, width) < MIN_SIDE:
            raise PuzzleSkip("image too small")
        marker = _Marker(radius=max(6, round(0.025 * min(height, width))))

        reason = "flat region"
        for _ in range(_VIEW_TRIES):
            view = _sample_view(width, height, rng, crop, scale, max_rotation, perspective, flip_probability)
            homography = cv2.getPerspectiveTransform(view["quad"], view["corners"]).astype(np.float64)
            view_w, view_h = view["size"]
            warped = cv2.warpPerspective(
                source, homography, (view_w, view_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            reference = _pick_reference(source, homography, (view_w, view_h), marker, rng)
            if reference is None:
                reason = "flat region"
                continue
            ref_xy, target = reference
            spacing = max(min_distance * min(view_w, view_h), 5.0 * marker.radius)
            decoy_spots = [_decoy_spot(ref_xy, (width, height), (view_w, view_h))] if decoys else []
            distractors = _pick_distractors(
                warped, target, num_candidates - 1, spacing, marker, cluster, decoy_spots, rng
            )
            if distractors is None:
                reason = "no room for candidates"
                continue
            break
        else:
            raise PuzzleSkip(reason)

        answer_index = int(rng.integers(0, num_candidates))
        points = list(distractors)
        points.insert(answer_index, (_on_grid(target), "true"))
        candidates = [
            {"label": letter, "xy": [float(x), float(y)], "kind": kind}
            for letter, ((x, y), kind) in zip(_LETTERS, points)
        ]

        first = image.copy()
        marker.draw_on(first, (float(ref_xy[0]), float(ref_xy[1])), REFERENCE_LABEL)
        for candidate in candidates:
            marker.draw(warped, candidate["xy"], candidate["label"])

        params = {
            "image_size": [width, height],
            "view_size": [view_w, view_h],
            "homography": homography.tolist(),
            "reference": [int(ref_xy[0]), int(ref_xy[1])],
            "target": [float(target[0]), float(target[1])],
            "num_candidates": num_candidates,
            "candidates": candidates,
            "marker_radius": marker.radius,
            "min_distance_px": float(spacing),
            "view": {
                "quad": view["quad"].tolist(),
                "rotation_deg": view["rotation_deg"],
                "scale": view["scale"],
                "mirrored": view["mirrored"],
                "perspective": float(perspective),
            },
        }
        prompt = _prompt(num_candidates, max_rotation, flip_probability, perspective)
        return Puzzle(
            images=[first, Image.fromarray(warped)],
            prompt=prompt,
            answer=_LETTERS[answer_index],
            params=params,
        )

    def labels(self, params: Mapping[str, Any]) -> Mapping[str, Sequence[str]]:
        letters = _LETTERS[: int(params["num_candidates"])]
        return {
            letter: [f"({letter})", f"point {letter}", f"option {letter}", f"candidate {letter}", f"ring {letter}"]
            for letter in letters
        }


def apply_homography(homography: np.ndarray | Sequence[Sequence[float]], xy: Sequence[float]) -> np.ndarray:
    """Where the image-1 pixel ``xy`` lands in image 2 under ``homography`` (3x3, as stored in the params)."""
    h = np.asarray(homography, dtype=np.float64)
    x, y, w = h @ np.array([xy[0], xy[1], 1.0])
    return np.array([x / w, y / w])


def _check_knobs(
    num_candidates: int,
    scale: Sequence[float],
    crop: Sequence[float],
    perspective: float,
    flip_probability: float,
    cluster: int,
) -> None:
    if not 2 <= num_candidates <= len(_LETTERS):
        raise ValueError(f"num_candidates must be in 2..{len(_LETTERS)}, got {num_candidates}")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must satisfy 0 < low <= high, got {scale}")
    if not 0 < crop[0] <= crop[1] <= 1:
        raise ValueError(f"crop must satisfy 0 < low <= high <= 1, got {crop}")
    if not 0 <= perspective <= 0.25:
        raise ValueError(f"perspective must be in [0, 0.25], got {perspective}")
    if not 0 <= flip_probability <= 1:
        raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
    if cluster < 1 or num_candidates % cluster:
        # A truth whose group were the only full (or only partial) one would stand out by the layout alone.
        raise ValueError(f"cluster must be >= 1 and divide num_candidates ({num_candidates}), got {cluster}")


def _sample_view(
    width: int,
    height: int,
    rng: np.random.Generator,
    crop: Sequence[float],
    scale: Sequence[float],
    max_rotation: float,
    perspective: float,
    flip_probability: float,
) -> dict[str, Any]:
    """A quadrilateral inside the photo and the view rectangle it is warped onto.

    ``quad`` lists the photo points that become the view's top-left, top-right, bottom-right and bottom-left
    corners (``corners``); a mirrored view swaps left and right corners.
    """
    side = min(width, height)
    fraction = rng.uniform(crop[0], crop[1])
    aspect = math.exp(rng.uniform(math.log(0.75), math.log(4 / 3)))
    region_w, region_h = fraction * side * math.sqrt(aspect), fraction * side / math.sqrt(aspect)
    angle = float(rng.uniform(-max_rotation, max_rotation))
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # Region corners (TL, TR, BR, BL) about its centre, turned by the angle, each nudged for perspective.
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * [region_w / 2, region_h / 2]
    quad = corners @ np.array([[cos, sin], [-sin, cos]])
    quad += rng.uniform(-1, 1, size=(4, 2)) * perspective * max(region_w, region_h)
    # Shrink the region until it fits inside the photo, then place it anywhere it fits.
    extent = quad.max(axis=0) - quad.min(axis=0)
    shrink = min(1.0, (width - 1) / extent[0], (height - 1) / extent[1])
    quad *= shrink
    region_w, region_h = region_w * shrink, region_h * shrink
    low, high = -quad.min(axis=0), np.array([width - 1, height - 1]) - quad.max(axis=0)
    quad += low + rng.random(2) * np.maximum(high - low, 0.0)  # high - low may be -1e-13 after the shrink

    # View pixels per photo pixel; small views are enlarged so several rings fit, big ones capped at the photo.
    zoom = float(rng.uniform(scale[0], scale[1]))
    zoom = max(zoom, MIN_VIEW / min(region_w, region_h))
    zoom = min(zoom, max(width, height) / max(region_w, region_h))
    view_w, view_h = max(MIN_VIEW, round(region_w * zoom)), max(MIN_VIEW, round(region_h * zoom))
    mirrored = bool(rng.random() < flip_probability)
    # Pixel centres run from 0 to size-1; the quad's corners land exactly on the corner pixels' centres.
    left, right = (view_w - 1, 0) if mirrored else (0, view_w - 1)
    view_corners = np.array([[left, 0], [right, 0], [right, view_h - 1], [left, view_h - 1]], dtype=np.float32)
    return {
        "quad": quad.astype(np.float32),
        "corners": view_corners,
        "size": (view_w, view_h),
        "rotation_deg": round(angle, 3),
        "scale": round(zoom, 4),
        "mirrored": mirrored,
    }


@dataclass(frozen=True)
class _Marker:
    """How rings and labels are drawn for one puzzle (the same in both images), and the room they need."""

    radius: int

    @property
    def ring_width(self) -> int:
        return max(2, round(self.radius / 5))

    @property
    def font_scale(self) -> float:
        return self.radius / 14

    @property
    def text_thickness(self) -> int:
        return max(1, round(self.radius / 7))

    @property
    def label_offset(self) -> float:
        """Distance, along each axis, from the ring centre to the label's lower-left corner."""
        return 0.75 * self.radius + self.ring_width

    @property
    def text_size(self) -> tuple[int, int]:
        """Width and height of the widest label, outline included."""
        return _text_size(self.font_scale, self.text_thickness + 2)

    def bounds(self, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest (x, y) a ring centre may take in an image of ``size`` so ring and label both show.

        Labels always sit at the upper right of their ring (never flipped to another side, which could put a
        label next to the wrong ring), so the top and right margins are wider.
        """
        ring = self.radius + self.ring_width + 2.0
        text_w, text_h = self.text_size
        low = np.array([ring, max(ring, self.label_offset + text_h + 2.0)])
        high = np.array([size[0] - 1 - max(ring, self.label_offset + text_w + 2.0), size[1] - 1 - ring])
        return low, high

    def fits(self, xy: Sequence[float], size: tuple[int, int]) -> bool:
        low, high = self.bounds(size)
        return bool(low[0] <= xy[0] <= high[0] and low[1] <= xy[1] <= high[1])

    def draw(self, canvas: np.ndarray, xy: Sequence[float], label: str) -> None:
        """A hollow ring centred on ``xy`` (1/16 px precision) with ``label`` at its upper right, in place."""
        step = 1 << _SUBPIXEL_BITS
        centre = (int(round(xy[0] * step)), int(round(xy[1] * step)))
        radius = self.radius * step
        cv2.circle(canvas, centre, radius, _OUTLINE_COLOUR, self.ring_width + 2, cv2.LINE_AA, _SUBPIXEL_BITS)
        cv2.circle(canvas, centre, radius, _RING_COLOUR, self.ring_width, cv2.LINE_AA, _SUBPIXEL_BITS)
        origin = (int(round(xy[0] + self.label_offset)), int(round(xy[1] - self.label_offset)))
        for colour, extra in ((_OUTLINE_COLOUR, 2), (_RING_COLOUR, 0)):
            thickness = self.text_thickness + extra
            cv2.putText(canvas, label, origin, _FONT, self.font_scale, colour, thickness, cv2.LINE_AA)

    def draw_on(self, image: Image.Image, xy: Sequence[float], label: str) -> None:
        """:meth:`draw` on a Pillow image, in place, converting only the region the marker covers."""
        reach = math.ceil(self.radius + self.ring_width + self.label_offset + max(self.text_size) + 4)
        left, top = max(0, int(xy[0]) - reach), max(0, int(xy[1]) - reach)
        window = (left, top, min(image.width, int(xy[0]) + reach + 1), min(image.height, int(xy[1]) + reach + 1))
        patch = np.array(image.crop(window))
        self.draw(patch, (xy[0] - left, xy[1] - top), label)
        image.paste(Image.fromarray(patch), (left, top))


@lru_cache(maxsize=256)
def _text_size(font_scale: float, thickness: int) -> tuple[int, int]:
    sizes = [cv2.getTextSize(c, _FONT, font_scale, thickness)[0] for c in _LETTERS + REFERENCE_LABEL]
    return max(w for w, _ in sizes), max(h for _, h in sizes)


def _textured(rgb: np.ndarray, xy: Sequence[float], radius: int) -> bool:
    """Whether the content inside a ring centred at ``xy`` has some texture to recognise (gray-level spread)."""
    x, y = int(round(xy[0])), int(round(xy[1]))
    window = rgb[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
    if window.size == 0:
        return False
    return not is_flat(cv2.cvtColor(np.ascontiguousarray(window), cv2.COLOR_RGB2GRAY), threshold=_TEXTURE_STD)


def _on_grid(xy: Sequence[float]) -> tuple[float, float]:
    """``xy`` rounded to the subpixel grid rings are drawn on."""
    step = 1 << _SUBPIXEL_BITS
    return (round(float(xy[0]) * step) / step, round(float(xy[1]) * step) / step)


def _pick_reference(
    source: np.ndarray,
    homography: np.ndarray,
    view_size: tuple[int, int],
    marker: _Marker,
    rng: np.random.Generator,
    tries: int = 40,
) -> tuple[tuple[int, int], np.ndarray] | None:
    """A textured photo pixel whose ring fits in both images, with where it lands in the view; None if none found."""
    height, width = source.shape[:2]
    inverse = np.linalg.inv(homography)
    low, high = marker.bounds(view_size)
    for _ in range(tries):
        # Sample in the view (uniform over what image 2 shows), then snap to a whole photo pixel.
        in_view = low + rng.random(2) * (high - low)
        x, y = np.round(apply_homography(inverse, in_view)).astype(int)
        target = apply_homography(homography, (x, y))
        if (
            marker.fits((x, y), (width, height))
            and marker.fits(target, view_size)
            and _textured(source, (x, y), marker.radius)
        ):
            return (int(x), int(y)), target
    return None


def _decoy_spot(reference: tuple[int, int], image_size: tuple[int, int], view_size: tuple[int, int]) -> np.ndarray:
    """Where a model that ignores the transform would look: the reference's relative position in image 1.

    Decoys that are mirror or point reflections of the true spot would be a give-away instead: the pair
    they form singles out two candidates, one of them right.
    """
    return np.array([reference[0] / image_size[0] * view_size[0], reference[1] / image_size[1] * view_size[1]])


def _pick_distractors(
    view: np.ndarray,
    target: np.ndarray,
    count: int,
    spacing: float,
    marker: _Marker,
    cluster: int,
    decoy_spots: list[np.ndarray],
    rng: np.random.Generator,
    tries: int = 200,
) -> list[tuple[tuple[float, float], str]] | None:
    """``count`` distractor points (with their kind) at least ``spacing`` apart from each other and the truth.

    Candidates come in clusters of ``cluster`` points. The truth's cluster is the truth plus ``cluster - 1``
    "near" points; every other cluster grows the same way around a seed: a decoy spot where one fits, else a
    random point ("far"), with "companion" points. Were only the truth surrounded by near points, the cluster
    would give it away; with every candidate in a same-sized cluster, the layout says nothing.

    Within a cluster the seed must not sit in the middle either, so members are drawn around a centre that is
    itself at a random offset from the seed, and offsets that leave the allowed box are reflected back into it
    rather than redrawn (redrawing would pull members away from the borders, leaving the seed the most central).
    Textured spots are preferred for the first half of the tries, so distractors are not dismissed merely for
    marking blank areas.
    """
    view_h, view_w = view.shape[:2]
    low, high = marker.bounds((view_w, view_h))
    placed = [(float(target[0]), float(target[1]))]
    chosen: list[tuple[tuple[float, float], str]] = []
    reach = 1.5 * spacing  # cluster radius: room for a few points at least ``spacing`` apart

    def fits(xy: Sequence[float]) -> bool:
        return (
            low[0] <= xy[0] <= high[0]
            and low[1] <= xy[1] <= high[1]
            and all(math.hypot(xy[0] - px, xy[1] - py) >= spacing for px, py in placed)
        )

    def add(xy: Sequence[float], kind: str) -> None:
        snapped = _on_grid(xy)
        placed.append(snapped)
        chosen.append((snapped, kind))

    def grow(seed: Sequence[float], kind: str) -> bool:
        """Add up to ``cluster - 1`` members around ``seed`` (fewer if ``count`` is reached)."""
        wanted = min(cluster - 1, count - len(chosen))
        centre = _reflect(np.asarray(seed, dtype=np.float64) + _in_disc(rng, reach), low, high)
        for attempt in range(tries):
            if wanted == 0:
                break
            xy = _reflect(centre + _in_disc(rng, reach), low, high)
            if fits(xy) and (attempt >= tries // 2 or _textured(view, xy, marker.radius)):
                add(xy, kind)
                wanted -= 1
        return wanted == 0

    if not grow(placed[0], "near"):
        return None
    spots = list(decoy_spots)
    while len(chosen) < count:
        seed, kind = None, "far"
        while spots and seed is None:
            spot = spots.pop(0)
            if fits(spot):
                seed, kind = spot, "decoy"
        for attempt in range(tries if seed is None else 0):
            xy = low + rng.random(2) * (high - low)
            if fits(xy) and (attempt >= tries // 2 or _textured(view, xy, marker.radius)):
                seed = xy
                break
        if seed is None:
            return None
        add(seed, kind)
        if not grow(seed, "companion"):
            return None
    return chosen


def _reflect(xy: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``xy`` mirrored back into the box [low, high] at the side(s) it left (offsets are under a box side)."""
    out = np.where(xy < low, 2 * low - xy, xy)
    out = np.where(out > high, 2 * high - out, out)
    return np.clip(out, low, high)


def _in_disc(rng: np.random.Generator, radius: float) -> np.ndarray:
    """A point drawn uniformly from the disc of ``radius`` around the origin."""
    angle, distance = rng.uniform(0, 2 * math.pi), radius * math.sqrt(rng.random())
    return np.array([distance * math.cos(angle), distance * math.sin(angle)])


def _prompt(num_candidates: int, max_rotation: float, flip_probability: float, perspective: float) -> str:
    letters = _LETTERS[:num_candidates]
    changes = ["cropped", "resized"]
    if max_rotation > 0:
        changes.append("rotated")
    if flip_probability > 0:
        changes.append("mirrored")
    if perspective > 0:
        changes.append("seen at a slightly different perspective")
    how = ", ".join(changes[:-1]) + f" and {changes[-1]}"
    could = "could have been" if len(changes) > 2 else "was"
    return (
        "Image 1: <image>\nImage 2: <image>\n"
        f"Image 2 shows part of the scene in image 1; it {could} {how}.\n"
        f"In image 1 one point is marked by a yellow ring labelled {REFERENCE_LABEL}. In image 2, {num_candidates} "
        f"points are marked by the same kind of ring, labelled {letters[0]} to {letters[-1]}. Each label is written "
        "at the upper right of its ring, and each marked point is the centre of its ring.\n"
        f"Which labelled point in image 2 shows the same spot of the scene as point {REFERENCE_LABEL} in image 1? "
        "Answer with its letter only.\n"
        f"{FORMAT_INSTRUCTION}"
    )
