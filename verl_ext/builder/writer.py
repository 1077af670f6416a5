"""Atomic output: per-split parquet files that appear complete or not at all.

Rows go to a hidden temporary file in the output folder; only when the whole build succeeded is each file
flushed to disk (fsync) and renamed over ``<split>.parquet``, then ``manifest.json`` is written the same way.
A build killed midway leaves at most hidden ``.tmp`` files, which the next build in that folder removes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.builder.hub import with_hub_features
from verl_ext.builder.order import WRITTEN_ORDERS, balanced_subset, stratified_order
from verl_ext.builder.rows import SCHEMA

MANIFEST = "manifest.json"
_TMP_MARK = ".tmp-"
# Images are already compressed: compressing them again costs time for nothing.
_COMPRESSION = {
    "images.list.element.bytes": "NONE",
    "images.list.element.path": "SNAPPY",
    "data_source": "ZSTD",
    "prompt.list.element.role": "ZSTD",
    "prompt.list.element.content": "ZSTD",
    "ability": "ZSTD",
    "reward_model.style": "ZSTD",
    "reward_model.ground_truth": "ZSTD",
}
_ROWS_PER_GROUP = 64
# The rows' schema, carrying the datasets features that make `images` load as pictures (verl_ext/builder/hub.py).
_FILE_SCHEMA = with_hub_features(SCHEMA)


def split_file(output: Path, split: str) -> Path:
    return output / f"{split}.parquet"


def remove_stale_temporaries(output: Path) -> int:
    """Delete temporary files left by killed builds; returns how many."""
    stale = [p for p in output.glob(".*") if _TMP_MARK in p.name and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_writer(path: Path) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        path, _FILE_SCHEMA, compression=_COMPRESSION, use_dictionary=["data_source", "ability", "prompt"]
    )


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    _fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


class SplitWriter:
    """Numbers rows per split (``extra_info.index``) and streams them into per-split temporary parquet files.

    With ``order="stratified"`` every split is rewritten once, at commit, in the order of
    :func:`verl_ext.builder.order.stratified_order` (seeded by ``seed``) and numbered anew; that pass holds one
    split in memory. ``order="balanced"`` first drops rows so that every answer is equally frequent
    (:func:`verl_ext.builder.order.balanced_subset`): ``rows`` then counts what was written, and ``dropped`` holds
    the ``extra_info`` of each dropped row by split, for the build's statistics.
    """

    def __init__(self, output: Path, order: str = "source", seed: int = 0) -> None:
        self.output = output
        self.order = order
        self.seed = seed
        self.rows: dict[str, int] = {}
        self.dropped: dict[str, list[dict[str, Any]]] = {}
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._temps: dict[str, Path] = {}

    def add(self, row: dict[str, Any]) -> None:
        split = row["extra_info"]["split"]
        row["extra_info"]["index"] = self.rows.get(split, 0)
        self.rows[split] = self.rows.get(split, 0) + 1
        buffer = self._buffers.setdefault(split, [])
        buffer.append(row)
        if len(buffer) >= _ROWS_PER_GROUP:
            self._flush(split)

    def _flush(self, split: str) -> None:
        buffer = self._buffers.get(split)
        if not buffer:
            return
        if split not in self._writers:
            tmp = self.output / f".{split}.parquet{_TMP_MARK}{os.getpid()}"
            self._temps[split] = tmp
            self._writers[split] = _open_writer(tmp)
        self._writers[split].write_table(pa.Table.from_pylist(buffer, schema=_FILE_SCHEMA))
        buffer.clear()

    def commit(self) -> dict[str, Path]:
        """Flush, fsync and rename every split file into place; returns split -> final path."""
        for split in list(self._buffers):
            self._flush(split)
        for writer in self._writers.values():
            writer.close()
        if self.order in WRITTEN_ORDERS:
            for split, tmp in self._temps.items():
                dropped = _rewrite_stratified(tmp, self.seed, balance=self.order == "balanced")
                if dropped:
                    self.dropped[split] = dropped
                    self.rows[split] -= len(dropped)
        final = {}
        for split, tmp in self._temps.items():
            _fsync_file(tmp)
            final[split] = split_file(self.output, split)
            os.replace(tmp, final[split])
        fsync_dir(self.output)
        self._writers.clear()
        self._temps.clear()
        return final

    def abort(self) -> None:
        """Drop everything written so far (temporaries only: earlier complete files stay untouched)."""
        for writer in self._writers.values():
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - best effort while already failing
                pass
        for tmp in self._temps.values():
            tmp.unlink(missing_ok=True)
        self._writers.clear()
        self._temps.clear()


def _rewrite_stratified(path: Path, seed: int, balance: bool = False) -> list[dict[str, Any]]:
    """Rewrite one temporary split file in stratified order (by data source and answer), numbering rows anew;
    with ``balance``, without the rows that make one answer more frequent than another. Returns the ``extra_info``
    of the rows dropped."""
    table = pq.read_table(path, schema=_FILE_SCHEMA)
    sources = table.column("data_source").to_pylist()
    answers = [cell["ground_truth"] for cell in table.column("reward_model").to_pylist()]
    keys = [f"{s}\x00{a}" for s, a in zip(sources, answers)]
    dropped: list[dict[str, Any]] = []
    if balance:
        kept = balanced_subset(keys, seed)
        kept_set = set(kept)
        infos = table.column("extra_info").to_pylist()
        dropped = [infos[i] for i in range(len(keys)) if i not in kept_set]
        table, keys = table.take(kept), [keys[i] for i in kept]
    rows = table.take(stratified_order(keys, seed)).to_pylist()
    for index, row in enumerate(rows):
        row["extra_info"]["index"] = index
    with _open_writer(path) as writer:
        for start in range(0, len(rows), _ROWS_PER_GROUP):
            writer.write_table(pa.Table.from_pylist(rows[start : start + _ROWS_PER_GROUP], schema=_FILE_SCHEMA))
    return dropped
