"""Parquet benchmarks, streamed batch by batch: one reader for every layout we know.

The image column is found from the schema:

* ``image`` as a base64 string (HuggingFaceM4/MMBench), raw bytes, or an HF ``Image`` struct
  ``{bytes, path}`` (MMStar, lmms-lab copies);
* ``image_1`` ... ``image_N`` structs, None when a row uses fewer (BLINK, one folder per config);
* ``images``, a list of structs (the ImageNet subset);
* ``bytes``, base64 text (the lmms-eval copy of MME-RealWorld).

The split comes from the file name (``validation-00000-of-00001.parquet`` -> ``validation``), mapped through the
source's split names; files without a split word are single-split and get carved.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.sources.base import MMBENCH_CIRCULAR, RawItem, SkipCounter, SourceSpec

_ID_COLUMNS = ("index", "idx", "id", "question_id", "data_id", "filename", "file_name", "image_id")
_SPLIT_WORDS = ("train", "validation", "val", "dev", "test")
_BATCH_ROWS = 64
_MULTI_IMAGE = re.compile(r"^image_(\d+)$")


def parquet_files(path: Path) -> list[Path]:
    """The parquet files of ``path`` (a file, or a folder searched recursively), in a stable order."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts))
    if not files:
        raise FileNotFoundError(f"no .parquet files under {path}")
    return files


def split_from_parquet_name(path: Path) -> str | None:
    """``validation-00000-of-00001.parquet`` -> ``validation``; ``mmstar.parquet`` -> None."""
    word = re.split(r"[-_.]", path.stem.lower())[0]
    return word if word in _SPLIT_WORDS else None


def image_columns(schema: pa.Schema) -> list[str]:
    """Names of the columns that hold images, in the order their images are numbered."""
    names = schema.names
    multi = sorted((n for n in names if _MULTI_IMAGE.match(n)), key=lambda n: int(n.split("_")[1]))
    if multi:
        return multi
    for name in ("image", "images", "bytes", "img"):
        if name in names:
            return [name]
    raise ValueError(f"no image column found; columns are {names} (expected image, image_1.., images or bytes)")


def iter_parquet(
    path: Path,
    spec: SourceSpec,
    skips: SkipCounter,
    carve: bool = False,
    done_splits: set[str] | None = None,
) -> Iterator[RawItem]:
    """Raw items of every parquet file under ``path``; files of the validation split come first.

    ``done_splits`` may grow while iterating (the builder adds splits whose ``--limit`` is reached): the rest of
    their files is then skipped instead of read.
    """
    done_splits = done_splits if done_splits is not None else set()
    files = parquet_files(path)
    splits = {f: _split_of(f, spec, carve) for f in files}
    # Read the validation split first: a picture found in both splits then stays in validation only.
    order = {f: n for n, f in enumerate(files)}
    files.sort(key=lambda f: (splits[f] != spec.val_split, order[f]))
    root = path if path.is_dir() else path.parent
    # Sub-folders name configs (BLINK's Art_Style, Counting ...) only when there are several of them.
    several = len({f.parent for f in files}) > 1
    for file in files:
        split = splits[file]
        config = "/".join(file.parent.relative_to(root).parts) if several else ""
        yield from _iter_file(file, split, config, spec, skips, done_splits)


def _split_of(file: Path, spec: SourceSpec, carve: bool) -> str | None:
    found = split_from_parquet_name(file)
    if carve or found is None:
        return None
    return spec.split_names.get(found, found)


def _iter_file(
    file: Path, split: str | None, config: str, spec: SourceSpec, skips: SkipCounter, done_splits: set[str]
) -> Iterator[RawItem]:
    parquet = pq.ParquetFile(file)
    schema = parquet.schema_arrow
    columns = image_columns(schema)
    id_column = next((c for c in _ID_COLUMNS if c in schema.names), None)
    wanted = [c for c in (id_column, *columns) if c]
    prefix = f"{config}/" if config else ""
    row = 0
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=wanted):
        if (split or "") in done_splits:
            return
        ids = batch.column(id_column).to_pylist() if id_column else [None] * batch.num_rows
        cells = {c: batch.column(c).to_pylist() for c in columns}
        for i in range(batch.num_rows):
            row_id = f"{prefix}{ids[i] if ids[i] is not None else f'{file.stem}:{row}'}"
            meta = {"file": file.name, "row": row}
            row += 1
            dedupe = _circular_key(ids[i], split) if spec.circular else None
            images = _row_images(cells, columns, i)
            if not images:
                skips.skip("missing image")
                continue
            for suffix, cell in images:
                payload = _payload(cell, file.parent)
                if payload is None:
                    skips.skip("missing image")
                    continue
                yield RawItem(f"{row_id}{suffix}", split, payload, dedupe_key=dedupe, meta=meta)


def _row_images(cells: dict[str, list[Any]], columns: list[str], i: int) -> list[tuple[str, Any]]:
    """(id suffix, cell) for every image of row ``i``; unused ``image_k`` slots (None) are left out."""
    if len(columns) > 1:
        return [(f"/{c}", cells[c][i]) for c in columns if cells[c][i] is not None]
    cell = cells[columns[0]][i]
    if cell is None:
        return []
    if isinstance(cell, list):
        items = [c for c in cell if c is not None]
        return [(f"/{j}" if len(items) > 1 else "", c) for j, c in enumerate(items)]
    return [("", cell)]


def _payload(cell: Any, folder: Path) -> str | bytes | Path | None:
    """The encoded image inside a cell; HF Image structs without bytes point to a file next to the parquet."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return cell["bytes"]
        if cell.get("path"):
            path = Path(cell["path"])
            return path if path.is_absolute() else folder / path
        return None
    if isinstance(cell, (str, bytes)) and cell:
        return cell
    return None


def _circular_key(row_id: Any, split: str | None) -> str | None:
    try:
        return f"{split}:{int(row_id) % MMBENCH_CIRCULAR}"
    except (TypeError, ValueError):
        return None
