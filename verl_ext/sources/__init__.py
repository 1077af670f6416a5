"""Image sources: benchmark files in, decoded pictures with ids out; no puzzle logic here.

>>> from verl_ext.sources import iter_images
>>> for source_id, split, image, meta in iter_images("demo"):  # doctest: +SKIP
...     print(source_id, split, image.size)

``--source`` names a benchmark (how its splits are named and used); the reader (TSV, parquet, folder) follows
from the input path, so ``mmbench`` works with the HF parquet folder and with the OpenCompass TSV alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq

from verl_ext.images import content_id
from verl_ext.sources.base import (
    TRAIN,
    VAL,
    RawDeduper,
    RawItem,
    SkipCounter,
    SourceImage,
    SourceSpec,
)
from verl_ext.sources.decode import DEFAULT_LIMITS, DecodeLimits, ImageSkip, decode_item
from verl_ext.sources.demo import attribution as demo_attribution
from verl_ext.sources.demo import iter_demo
from verl_ext.sources.folder import has_images, iter_folder
from verl_ext.sources.parquet import image_columns, iter_parquet, parquet_files
from verl_ext.sources.scenes import SPEC as SCENES_SPEC
from verl_ext.sources.scenes import SceneSettings, iter_scenes
from verl_ext.sources.split import carve_split
from verl_ext.sources.tsv import iter_tsv, split_from_tsv_name

_SINGLE = "one split, carved into train/val by content"
SOURCES: dict[str, SourceSpec] = {
    "mmbench": SourceSpec(
        "mmbench",
        "MMBench: HF parquet folder (data/{validation,test}-*.parquet, base64 images) or OpenCompass TSV",
        split_names={"validation": "dev", "val": "dev", "dev": "dev", "test": "test"},
        train_split="test",
        val_split="dev",
        circular=True,
    ),
    "seedbench": SourceSpec("seedbench", f"SEEDBench_IMG.tsv (OpenCompass); {_SINGLE}"),
    "realworldqa": SourceSpec("realworldqa", f"RealWorldQA.tsv (OpenCompass); {_SINGLE}"),
    "mmstar": SourceSpec("mmstar", f"MMStar: mmstar.parquet (HF) or MMStar.tsv; {_SINGLE}"),
    "blink": SourceSpec(
        "blink",
        "BLINK: HF parquet folder (<Config>/{val,test}-*.parquet, image_1..image_4) or BLINK.tsv (carved)",
        split_names={"validation": "val", "val": "val", "test": "test"},
        train_split="test",
        val_split="val",
    ),
    "mme_realworld_lite": SourceSpec(
        "mme_realworld_lite", f"MME-RealWorld-Lite: its image folder (data/imgs) or the base64 TSV; {_SINGLE}"
    ),
    "imagenet": SourceSpec(
        "imagenet",
        "ImageNet subset parquet (images = list of Image structs): train / validation files",
        split_names={"validation": "val", "val": "val", "train": "train"},
        train_split="train",
        val_split="val",
    ),
    "folder": SourceSpec("folder", f"any folder of image files (COCO, V*, ...), walked recursively; {_SINGLE}"),
    "tsv": SourceSpec("tsv", "any VLMEvalKit-style TSV with an image column"),
    "parquet": SourceSpec("parquet", "any parquet file or folder with an image column"),
    "demo": SourceSpec(
        "demo",
        "bundled real photographs (no input needed)",
        train_split=TRAIN,
        val_split=VAL,
        needs_input=False,
        licence="cc-by-4.0",
        licence_note="The photographs are CC-BY-4.0, CC0-1.0 or public domain (below); CC-BY-4.0 asks that copies "
        "of these pictures, and puzzles made from them, name their authors: keep the table with the data.",
        attribution=demo_attribution,
    ),
    "scenes": SCENES_SPEC,
}
ALIASES = {"coco": "folder", "vstar": "folder", "images": "folder", "mme_realworld": "mme_realworld_lite"}

# File-name prefixes that tell which benchmark a TSV is (VLMEvalKit's dataset names).
_TSV_NAMES = (
    ("mmbench", "mmbench"),
    ("seedbench", "seedbench"),
    ("realworldqa", "realworldqa"),
    ("mmstar", "mmstar"),
    ("blink", "blink"),
    ("mme_realworld", "mme_realworld_lite"),
    ("mme-realworld", "mme_realworld_lite"),
)

Reader = Callable[..., Iterator[RawItem]]


def get_source(name: str) -> SourceSpec:
    """The source called ``name`` (or an alias of it); a clear error listing the valid names otherwise."""
    key = ALIASES.get(name, name)
    if key not in SOURCES:
        valid = ", ".join(sorted([*SOURCES, *ALIASES]))
        raise ValueError(f"unknown image source {name!r}; valid sources: {valid}")
    return SOURCES[key]


@dataclass(frozen=True)
class InputLayout:
    """How an input path is laid out: the one rule both the benchmark guess and the reader choice follow.

    ``kind`` is ``"tsv"`` (``files``: one TSV, or one benchmark's TSV per split), ``"parquet"`` (``files``: every
    parquet file under the path) or ``"folder"`` (image files walked recursively; ``files`` is empty).
    """

    kind: Literal["tsv", "parquet", "folder"]
    files: tuple[Path, ...] = ()


def input_layout(path: Path) -> InputLayout:
    """The layout of ``path``; parquet wins over TSV, and TSV over loose images, as a benchmark download holds them."""
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".tsv":
            return InputLayout("tsv", (path,))
        if suffix == ".parquet":
            return InputLayout("parquet", (path,))
    if path.is_file() or not path.is_dir():
        raise ValueError(f"{path}: cannot tell the format (expected a .tsv, a .parquet, or a folder of images/parquet)")
    if any(path.rglob("*.parquet")):
        return InputLayout("parquet", tuple(parquet_files(path)))
    images = has_images(path)
    tsvs = tuple(sorted(path.glob("*.tsv")))
    if tsvs and not images:
        return InputLayout("tsv", tsvs)
    if images:
        return InputLayout("folder")
    raise ValueError(f"{path}: found no images, no .parquet and no .tsv file to read")


def _tsv_source(tsv: Path) -> str:
    stem = tsv.stem.lower()
    return next((source for prefix, source in _TSV_NAMES if stem.startswith(prefix)), "tsv")


def detect_source(path: Path) -> str:
    """Guess the benchmark from a path: TSV file names, parquet columns, or a folder of images."""
    layout = input_layout(path)
    if layout.kind == "parquet":
        return _detect_parquet(layout.files[0])
    if layout.kind == "tsv":
        named = {_tsv_source(tsv) for tsv in layout.files}
        return named.pop() if len(named) == 1 else "tsv"
    return "folder"


def _detect_parquet(file: Path) -> str:
    schema = pq.read_schema(file)
    names = set(schema.names)
    columns = image_columns(schema)
    if columns[0].startswith("image_"):
        return "blink"
    if columns == ["images"]:
        return "imagenet"
    if {"hint", "A", "B"} <= names:
        return "mmbench"
    if "l2_category" in names and "meta_info" in names:
        return "mmstar"
    if columns == ["bytes"] or "multi-choice options" in names:
        return "mme_realworld_lite"
    return "parquet"


def resolve_input(source: str | None, input_path: str | Path | None) -> tuple[SourceSpec, Path | None]:
    """The source spec and input path of a build, with errors a user can act on.

    For ``scenes`` the "path" is its settings text (``size=112,train=320``), checked here and kept as given.
    """
    if source is not None and get_source(source).name == "demo":
        return get_source("demo"), None
    if source is not None and get_source(source).name == "scenes":
        SceneSettings.parse(input_path)  # a bad setting fails now, with its message
        return SCENES_SPEC, Path(str(input_path)) if input_path is not None and str(input_path).strip() else None
    if input_path is None:
        raise ValueError(
            f"--input is required for source {source or '(auto)'}; only --source demo and --source scenes need none"
        )
    path = Path(input_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"input path does not exist: {path}")
    return get_source(source or detect_source(path)), path


def reader_for(spec: SourceSpec, path: Path | None) -> Reader:
    """The reader that walks ``path``; the format follows from the path's layout, the naming from ``spec``."""
    if spec.name == "demo":
        return iter_demo
    if spec.name == "scenes":
        settings = SceneSettings.parse(path)
        return lambda _path, _spec, skips, carve=False, **_: iter_scenes(settings, skips, carve)
    assert path is not None
    layout = input_layout(path)
    if layout.kind == "parquet":
        return iter_parquet
    if layout.kind == "folder":
        return iter_folder
    if len(layout.files) == 1:
        tsv = layout.files[0]
        return lambda _path, *args, **kwargs: iter_tsv(tsv, *args, **kwargs)
    return _split_tsvs_reader(path, spec, list(layout.files))


def _split_tsvs_reader(path: Path, spec: SourceSpec, tsvs: list[Path]) -> Reader:
    """One benchmark saved as one TSV per split (``MMBench_DEV_EN.tsv`` + ``MMBench_TEST_EN.tsv``): read them all.

    Each file must name a different split. The validation split's file is read first, so a picture found in both
    stays in validation only (first sighting wins the dedupe) and the training split never holds it.
    """
    splits = [split_from_tsv_name(tsv) for tsv in tsvs]
    if None in splits or len(set(splits)) < len(tsvs):
        raise ValueError(
            f"{path} holds several TSV files that are not one benchmark's splits (each name must carry a different"
            f" DEV/TEST/VAL/TRAIN word); point --input at one of them: {[tsv.name for tsv in tsvs]}"
        )
    ordered = sorted(tsvs, key=lambda tsv: spec.split_names.get(split_from_tsv_name(tsv), "") != spec.val_split)

    def read(_path: Path, *args, **kwargs) -> Iterator[RawItem]:
        for tsv in ordered:
            yield from iter_tsv(tsv, *args, **kwargs)

    return read


def iter_raw(
    spec: SourceSpec,
    path: Path | None,
    skips: SkipCounter,
    carve: bool = False,
    done_splits: set[str] | None = None,
) -> Iterator[RawItem]:
    """Undecoded items of a source, in a stable order (``done_splits``: see :func:`iter_parquet`)."""
    reader = reader_for(spec, path)
    if reader is iter_parquet:
        return iter_parquet(path, spec, skips, carve=carve, done_splits=done_splits)
    return reader(path, spec, skips, carve=carve)


def item_split(item: RawItem, image_content_id: str, val_fraction: float) -> str:
    """The split an item lands in: its source's own, or train/val carved by its group or content id."""
    if item.split is not None:
        return item.split
    return carve_split(item.group or image_content_id, val_fraction)


def iter_images(
    source: str,
    input_path: str | Path | None = None,
    *,
    val_fraction: float = 0.1,
    carve: bool = False,
    limits: DecodeLimits = DEFAULT_LIMITS,
    skips: SkipCounter | None = None,
    notes: Counter | None = None,
) -> Iterator[SourceImage]:
    """Decoded, normalised pictures of a source, one per stored image (repeats removed, skips counted).

    ``meta`` carries the reader's metadata plus ``content_id``.
    """
    spec, path = resolve_input(source, input_path)
    skips = skips if skips is not None else SkipCounter()
    repeats = RawDeduper()
    seen_content: set[str] = set()
    for item in iter_raw(spec, path, skips, carve=carve):
        reason = repeats.repeat_reason(item)
        if reason is not None:
            skips.skip(reason)
            continue
        try:
            image = decode_item(item, limits, notes)
        except ImageSkip as skip:
            skips.skip(str(skip))
            continue
        cid = content_id(image)
        if cid in seen_content:
            skips.skip("duplicate image")
            continue
        seen_content.add(cid)
        yield SourceImage(item.source_id, item_split(item, cid, val_fraction), image, {**item.meta, "content_id": cid})


__all__ = [
    "ALIASES",
    "SOURCES",
    "DecodeLimits",
    "ImageSkip",
    "InputLayout",
    "RawDeduper",
    "RawItem",
    "SkipCounter",
    "SourceImage",
    "SourceSpec",
    "detect_source",
    "get_source",
    "input_layout",
    "item_split",
    "iter_images",
    "iter_raw",
    "reader_for",
    "resolve_input",
]
