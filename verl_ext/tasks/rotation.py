"""Rotation: by how many degrees (counter-clockwise) was a picture turned?

Two forms: ``pair`` shows the picture and its turned copy (the SSL4RL form); ``single`` shows only the turned
picture and asks how far it is from upright. Both work on the largest square of the image (at a random offset),
so a quarter turn never changes the size or aspect ratio and nothing outside the picture (black corners, padding)
can give the answer away. Multiples of 90 degrees are lossless transposes. Other angles (the hard preset) are
allowed only with a circular mask painted on every image of every puzzle of that setting, whatever its angle; in
that setting every image, whatever its angle (0 included), is resampled bilinearly with a random sub-pixel shift,
so a sharp lossless quarter turn cannot be told from a softer interpolated 45-degree turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from PIL import Image

from verl_ext.images import (
    apply_circle_mask,
    is_flat,
    random_square_box,
    rotate_ccw,
    rotate_resampled,
    small_gray,
    to_rgb,
)
from verl_ext.tasks.base import FORMAT_INSTRUCTION, Puzzle, PuzzleSkip, Task

Form = Literal["pair", "single"]
RIGHT_ANGLES = (0, 90, 180, 270)


def _spoken_list(items: Sequence[str]) -> str:
    """ "a, b or c" """
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


class RotationTask(Task):
    name = "rotation"
    presets = {
        "easy": {"form": "pair", "angles": RIGHT_ANGLES},
        "medium": {"form": "single", "angles": RIGHT_ANGLES},
        "hard": {"form": "single", "angles": (0, 45, 90, 135, 180, 225, 270, 315)},
    }
    # Between the presets: eighth turns while the upright original is still shown.
    ladder = (
        presets["easy"],
        {"form": "pair", "angles": presets["hard"]["angles"]},
        presets["medium"],
        presets["hard"],
    )
    # Default: the two-image form (original + rotated) over quarter turns, SSL4RL's setting; the single-image
    # forms ask the model to know which way is up, which many pictures do not show.
    default_difficulty = "easy"

    def make(
        self,
        image: Image.Image,
        rng: np.random.Generator,
        partner: Image.Image | None = None,
        *,
        form: Form = "pair",
        angles: Sequence[int] = RIGHT_ANGLES,
        min_side: int = 56,
    ) -> Puzzle:
        """Turn a random square crop of ``image`` by an angle drawn uniformly from ``angles``.

        ``min_side`` is the smallest square side worth a puzzle.
        """
        if form not in ("pair", "single"):
            raise ValueError(f"rotation form must be 'pair' or 'single', got {form!r}")
        angles = sorted({int(a) % 360 for a in angles})
        if len(angles) < 2:
            raise ValueError(f"rotation needs at least two distinct angles, got {angles}")
        masked = any(a % 90 for a in angles)
        image = to_rgb(image)
        if min(image.size) < min_side:
            raise PuzzleSkip(f"image under {min_side} px")

        box = random_square_box(image.width, image.height, rng)
        square = image.crop(box)
        if is_flat(small_gray(square)):
            raise PuzzleSkip("flat image")
        angle = int(angles[int(rng.integers(len(angles)))])

        turns = [0, angle] if form == "pair" else [angle]
        if masked:
            # Every image is interpolated (a random shift under one pixel makes even 0 and 90 resample) and
            # masked by the same disc, so neither sharpness nor corners tell off-axis turns from quarter turns.
            shifts = [(round(float(dx), 4), round(float(dy), 4)) for dx, dy in rng.uniform(0, 1, size=(len(turns), 2))]
            shown = [apply_circle_mask(rotate_resampled(square, a, s)) for a, s in zip(turns, shifts)]
        else:
            shifts = []
            shown = [rotate_ccw(square, a) if a else square for a in turns]

        params = {
            "angle": angle,
            "angles": angles,
            "form": form,
            "crop_box": list(box),
            "masked": masked,
            # Sub-pixel (dx, dy) each shown image was moved by when resampled (masked setting only).
            "shifts": [list(shift) for shift in shifts],
        }
        return Puzzle(images=shown, prompt=self._prompt(form, angles, masked), answer=str(angle), params=params)

    @staticmethod
    def _prompt(form: Form, angles: Sequence[int], masked: bool) -> str:
        choices = _spoken_list([str(a) for a in angles])
        frame = (
            " Every image in this kind of puzzle is shown inside the same circular frame, so the black area around "
            "the circle says nothing about the angle."
            if masked
            else ""
        )
        if form == "pair":
            head = (
                "Image 1: <image>\nImage 2: <image>\n"
                "Image 2 is image 1 turned counter-clockwise about its centre by one of these angles: "
                f"{choices} degrees (0 means it was not turned).{frame}\n"
                "By how many degrees counter-clockwise was image 1 turned to give image 2?"
            )
        else:
            head = (
                "<image>\n"
                "This photograph was turned counter-clockwise about its centre, away from its natural upright "
                f"orientation, by one of these angles: {choices} degrees (0 means it is upright).{frame}\n"
                "By how many degrees counter-clockwise was it turned?"
            )
        return f"{head} Answer with the number of degrees only, for example {angles[1]}.\n{FORMAT_INSTRUCTION}"

    def labels(self, params: Mapping[str, Any]) -> Mapping[str, Sequence[str]]:
        """Each allowed angle as a bare number; a clockwise spelling (negative angle) of the same turn is accepted.

        Units ("90°", "90 degrees") are stripped by the reward's normaliser, so they need no alias here.
        """
        out: dict[str, list[str]] = {}
        for angle in params["angles"]:
            angle = int(angle)
            out[str(angle)] = ["360"] if angle == 0 else [f"-{360 - angle}"]
        return out
