"""The offline ``demo`` source: real photographs that ship with the package, no input needed.

It yields each bundled photograph (``verl_ext/demo_images``, licences in its ``LICENSES.md``) and its four
non-overlapping quadrants, each with its own id and its origin recorded; when scikit-image or matplotlib is
installed, a few public-domain / CC0 photographs bundled inside those packages are added. A photograph and its
crops form one group: they share a split and are never contrastive partners. The split is fixed per photograph,
so the demo always has a non-empty validation set of pictures the training set never shows.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

from verl_ext.sources.base import TRAIN, VAL, Box, RawItem, SkipCounter, SourceSpec

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo_images"
LICENSE_FILE = DEMO_DIR / "LICENSES.md"
# Two of the nine photographs (and their crops) form the validation split.
VAL_PHOTOS = frozenset({"life_by_Aitzol_Berasategi", "Wine_by_Jakkub_Mede"})
QUADRANTS: dict[str, Box] = {
    "top-left": (0.0, 0.0, 0.5, 0.5),
    "top-right": (0.5, 0.0, 1.0, 0.5),
    "bottom-left": (0.0, 0.5, 0.5, 1.0),
    "bottom-right": (0.5, 0.5, 1.0, 1.0),
}
# Colour photographs inside installed packages whose licence allows any use (checked in their docstrings).
PACKAGE_PHOTOS = (
    ("skimage", "data/astronaut.png", "Eileen Collins, NASA", "public domain"),
    ("skimage", "data/chelsea.png", "Stefan van der Walt", "CC0-1.0"),
    ("skimage", "data/coffee.png", "Rachel Michetti", "CC0-1.0"),
    ("skimage", "data/rocket.jpg", "SpaceX", "public domain"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "U.S. Navy", "public domain"),
)


def bundled_photos() -> list[dict[str, str]]:
    """The bundled photographs with author and licence, read from the table in ``LICENSES.md``."""
    photos = []
    for line in LICENSE_FILE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].endswith(".jpg"):
            photos.append({"file": cells[0], "author": cells[1], "license": cells[2]})
    return photos


def package_photos() -> list[dict[str, str | Path]]:
    """The permissive photographs found in installed packages (located without importing the packages)."""
    found = []
    for package, relative, author, license_ in PACKAGE_PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(next(iter(spec.submodule_search_locations))) / relative
        if path.is_file():
            found.append({"path": path, "origin": f"{package}/{relative}", "author": author, "license": license_})
    return found


def attribution() -> list[tuple[str, str, str]]:
    """Picture, author and licence of every demo photograph (CC-BY-4.0 asks that puzzles made from them say so)."""
    rows = [
        (f"verl_ext/demo_images/{p['file']} (and its quadrants)", p["author"], p["license"]) for p in bundled_photos()
    ]
    return rows + [(str(p["origin"]), str(p["author"]), str(p["license"])) for p in package_photos()]


def iter_demo(path: Path | None, spec: SourceSpec, skips: SkipCounter, carve: bool = False) -> Iterator[RawItem]:
    """The demo pictures: bundled photographs and their quadrants (train/val by photograph), then package photos."""
    for photo in bundled_photos():
        file = DEMO_DIR / photo["file"]
        stem = file.stem
        split = None if carve else (VAL if stem in VAL_PHOTOS else TRAIN)
        meta = {
            "origin": f"verl_ext/demo_images/{photo['file']}",
            "author": photo["author"],
            "license": photo["license"],
        }
        yield RawItem(f"demo/{stem}", split, file, group=stem, meta=meta)
        for name, box in QUADRANTS.items():
            yield RawItem(f"demo/{stem}#{name}", split, file, box=box, group=stem, meta={**meta, "crop": name})
    for photo in package_photos():
        origin = str(photo["origin"])
        meta = {"origin": origin, "author": photo["author"], "license": photo["license"]}
        yield RawItem(f"demo/{origin}", None if carve else TRAIN, Path(photo["path"]), group=origin, meta=meta)
