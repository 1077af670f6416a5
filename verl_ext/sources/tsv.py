"""OpenCompass / VLMEvalKit TSV files (MMBench_DEV_EN.tsv, SEEDBench_IMG.tsv, RealWorldQA.tsv, MMStar.tsv, ...).

The file is read in chunks of rows, so multi-gigabyte TSVs stream. An ``image`` cell holds base64, or a short
string that is the ``index`` of another row whose image it repeats (VLMEvalKit's deduplication), or a
stringified Python list of either (multi-image rows, e.g. BLINK.tsv). Localised files carry an ``image_path``
column instead, relative to the TSV or absolute.
"""

from __future__ import annotations

import ast
import csv
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from verl_ext.sources.base import MMBENCH_CIRCULAR, RawItem, SkipCounter, SourceSpec

# VLMEvalKit treats an image cell of at most this many characters as a reference to another row's index.
REFERENCE_MAX_CHARS = 64
_ID_COLUMNS = ("index", "idx", "id", "question_id")
_SPLIT_TOKENS = {"DEV": "dev", "TEST": "test", "VAL": "val", "VALIDATION": "validation", "TRAIN": "train"}
_CHUNK_ROWS = 256


def split_from_tsv_name(path: Path) -> str | None:
    """``MMBench_DEV_EN.tsv`` -> ``dev``; a name without a split word (``SEEDBench_IMG.tsv``) -> None."""
    for token in path.stem.upper().replace("-", "_").split("_"):
        if token in _SPLIT_TOKENS:
            return _SPLIT_TOKENS[token]
    return None


def iter_tsv(path: Path, spec: SourceSpec, skips: SkipCounter, carve: bool = False) -> Iterator[RawItem]:
    """Raw items of one TSV file, in file order."""
    # pandas' C parser has no field limit, but its python fallback uses the csv module's (131072 by default).
    csv.field_size_limit(sys.maxsize)
    columns = list(pd.read_csv(path, sep="\t", nrows=0).columns)
    id_column = next((c for c in _ID_COLUMNS if c in columns), None)
    image_columns = [c for c in ("image", "image_path") if c in columns]
    if not image_columns:
        raise ValueError(f"{path}: no 'image' or 'image_path' column (columns: {columns})")
    found = split_from_tsv_name(path)
    split = None if carve or found is None else spec.split_names.get(found, found)

    own_image: set[str] = set()  # ids of rows that hold an image themselves
    references: list[str] = []  # ids that rows point to instead of holding an image
    reader = pd.read_csv(
        path,
        sep="\t",
        usecols=[c for c in (id_column, *image_columns) if c],
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        chunksize=_CHUNK_ROWS,
    )
    row = 0
    for chunk in reader:
        ids = chunk[id_column].tolist() if id_column else [str(row + i) for i in range(len(chunk))]
        cells = chunk["image"].tolist() if "image" in chunk else [""] * len(chunk)
        paths = chunk["image_path"].tolist() if "image_path" in chunk else [""] * len(chunk)
        for row_id, cell, image_path in zip(ids, cells, paths):
            row += 1
            row_id = str(row_id).strip()
            meta = {"file": path.name, "row": row - 1}
            dedupe = _circular_key(row_id, split) if spec.circular else None
            cell = cell.strip()
            if not cell and image_path.strip():
                own_image.add(row_id)
                for j, p in enumerate(_as_list(image_path.strip())):
                    target = Path(p) if Path(p).is_absolute() else path.parent / p
                    yield RawItem(_multi_id(row_id, j, image_path), split, target, dedupe_key=dedupe, meta=meta)
                continue
            if not cell:
                skips.skip("missing image")
                continue
            try:
                parts = _as_list(cell)
            except (ValueError, SyntaxError):
                skips.skip("unparseable image list")
                continue
            for j, part in enumerate(parts):
                part = str(part).strip()
                if len(part) <= REFERENCE_MAX_CHARS:
                    # Another row's image: that row yields it, so this one adds no new picture.
                    references.append(part)
                    continue
                own_image.add(row_id)
                yield RawItem(_multi_id(row_id, j, cell), split, part, dedupe_key=dedupe, meta=meta)
    resolved = sum(1 for ref in references if ref in own_image)
    if resolved:
        skips.skip("image repeats another row (reference)", resolved)
    if len(references) > resolved:
        skips.skip("dangling image reference", len(references) - resolved)


def _as_list(cell: str) -> list[str]:
    """A multi-image cell (``"['...', '...']"``) as its list; any other cell as a one-element list."""
    if cell.startswith("["):
        value = ast.literal_eval(cell)
        if not isinstance(value, list):
            raise ValueError("not a list")
        return [str(v) for v in value]
    return [cell]


def _multi_id(row_id: str, j: int, cell: str) -> str:
    return f"{row_id}/{j}" if cell.startswith("[") else row_id


def _circular_key(row_id: str, split: str | None) -> str | None:
    try:
        return f"{split}:{int(float(row_id)) % MMBENCH_CIRCULAR}"
    except ValueError:
        return None
