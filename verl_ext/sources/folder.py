"""Any folder of image files (COCO, V*, MME-RealWorld-Lite's ``data/imgs``, your own photos), walked recursively."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from verl_ext.sources.base import RawItem, SkipCounter, SourceSpec

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)


def image_files(folder: Path) -> Iterator[tuple[Path, bool]]:
    """Every visible file under ``folder`` in a stable order, with whether its suffix names an image format."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                path = Path(root) / name
                yield path, path.suffix.lower() in IMAGE_SUFFIXES


def has_images(folder: Path) -> bool:
    return any(is_image for _, is_image in image_files(folder))


def iter_folder(path: Path, spec: SourceSpec, skips: SkipCounter, carve: bool = False) -> Iterator[RawItem]:
    """One raw item per image file; ids are paths relative to ``path``. A folder is a single split (carved)."""
    for file, is_image in image_files(path):
        if not is_image:
            skips.skip("not an image file")
            continue
        relative = file.relative_to(path).as_posix()
        yield RawItem(relative, None, file, meta={"file": relative})
