"""What every image source yields, and how a source's splits are named and used.

A reader walks a benchmark file cheaply and yields :class:`RawItem` records: ids plus the still-encoded image
(base64 text, bytes or a file path). Decoding happens later, in the build workers, through
:func:`verl_ext.sources.decode.decode_item`, so a process pool decodes in parallel and the reader stays light.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Union

from PIL import Image

if TYPE_CHECKING:
    from verl_ext.sources.scenes import SceneRecipe

# A still-encoded image: base64 text (optionally a data URI), raw file bytes, a path to an image file, or the
# recipe of a procedural scene (drawn on decode).
Payload = Union[str, bytes, Path, "SceneRecipe"]

# Fractions (left, top, right, bottom) of the decoded picture to keep; None keeps it whole.
Box = tuple[float, float, float, float]

TRAIN, VAL = "train", "val"


@dataclass(frozen=True)
class RawItem:
    """One image of a source before decoding.

    ``split`` is the source's own split name (``dev``, ``test``, ``val`` ...) or None for single-split sources,
    which the builder carves into train/val by content. ``group`` names the original picture when several items
    are cut from one (demo crops): items of one group always land in the same split and never serve as each
    other's contrastive partner. ``dedupe_key`` lets a reader mark rows that repeat another row's image
    (MMBench circular copies) without decoding anything.
    """

    source_id: str
    split: str | None
    payload: Payload
    box: Box | None = None
    group: str | None = None
    dedupe_key: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def raw_key(self) -> bytes:
        """A digest of the encoded image (and crop box): equal keys mean the very same stored image."""
        digest = hashlib.blake2b(digest_size=16)
        if isinstance(self.payload, Path):
            digest.update(b"path:" + str(self.payload).encode())
        elif isinstance(self.payload, str):
            digest.update(self.payload.encode("ascii", "surrogateescape"))
        elif hasattr(self.payload, "key"):  # a scene recipe
            digest.update(self.payload.key())
        else:
            digest.update(self.payload)
        digest.update(repr(self.box).encode())
        return digest.digest()


class SourceImage(NamedTuple):
    """A decoded, normalised picture: what :func:`verl_ext.sources.iter_images` yields."""

    source_id: str
    split: str
    image: Image.Image
    meta: dict[str, Any]


class SkipCounter(Counter):
    """Counts skipped inputs by a short, stable reason (``"corrupt or truncated image"``)."""

    def skip(self, reason: str, n: int = 1) -> None:
        self[reason] += n


@dataclass(frozen=True)
class SourceSpec:
    """How one benchmark names and uses its splits.

    ``split_names`` maps split names found in file names (``validation``, ``test`` ...) to ours; a name that is
    not listed is kept as it is. ``train_split``/``val_split`` say which split a run trains and validates on
    (None: whichever of ``train``/``val`` the carving produced). ``circular`` turns on MMBench's rule that row
    ``index + k * 1_000_000`` repeats row ``index``.
    """

    name: str
    description: str
    split_names: dict[str, str] = field(default_factory=dict)
    train_split: str | None = None
    val_split: str | None = None
    circular: bool = False
    needs_input: bool = True
    # The source's --input is settings text (scenes: "size=112,train=320"), not a path: never checked as a file.
    input_is_settings: bool = False
    # What a dataset card (verl_ext.builder.hub) says of the pictures: the Hub's licence id for puzzles made from
    # them, a sentence on their terms, and, where a licence asks for it, the attribution rows (picture, author,
    # licence).
    licence: str = "other"
    licence_note: str = (
        "The pictures keep the licence and terms of use of the dataset they come from; check those before "
        "publishing puzzles made from them."
    )
    attribution: Callable[[], list[tuple[str, str, str]]] | None = None


MMBENCH_CIRCULAR = 1_000_000


class RawDeduper:
    """Drops items that repeat an earlier stored image, before anything is decoded.

    Two cheap rules: the reader's ``dedupe_key`` (MMBench circular copies, ``index % 1_000_000``) and a digest of
    the encoded bytes. Copies of a picture stored with different bytes are caught later by content id.
    """

    def __init__(self) -> None:
        self._keys: set[str] = set()
        self._digests: set[bytes] = set()

    def repeat_reason(self, item: RawItem) -> str | None:
        """Why ``item`` repeats an earlier one (a skip reason), or None if it is new (and now remembered)."""
        if item.dedupe_key is not None and item.dedupe_key in self._keys:
            return "circular copy of an earlier row"
        digest = item.raw_key()
        if digest in self._digests:
            return "duplicate image"
        self._digests.add(digest)
        if item.dedupe_key is not None:
            self._keys.add(item.dedupe_key)
        return None
