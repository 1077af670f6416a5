"""The picture index: the training pictures of a built dataset, for puzzles made during training.

Online puzzles are made from the same source, the same split rule and the same build settings as the offline
build in ``DATA_DIR`` (read from its ``manifest.json``), so the offline validation split stays held out. The
index is written once, next to the offline files (``DATA_DIR/online/pictures.parquet``), by
``python -m verl_ext.online.pictures DATA_DIR``:

* every training picture is decoded, normalised and cropped by the source rules once, reduced (by whole
  factors, never below what any level of the build's tasks shows) and stored as JPEG q95, so a loader worker
  decodes a small file per puzzle instead of a 12-megapixel photograph;
* its ``extra_info`` column carries the content ids, so the leakage guard reads an index like a puzzle file.

Pictures are decoded by a process pool (``--workers``) in the builder's chunked, ordered way, so the index is the
same whatever the number of processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.builder.pipeline import CHUNK_ITEMS, chunked, limited_items, ordered_pool_map
from verl_ext.builder.plan import BuildConfig, BuildPlan, TaskPlan, make_plan
from verl_ext.builder.rows import encode_image
from verl_ext.builder.worker import SourceHint, Worker, reduce_picture
from verl_ext.builder.writer import MANIFEST
from verl_ext.evaluation.leakage import PICTURE_INDEX
from verl_ext.folder_lock import FolderLock
from verl_ext.images import content_id
from verl_ext.sources import RawItem, SkipCounter, item_split, resolve_input
from verl_ext.sources.decode import DecodeLimits, ImageSkip, decode_item
from verl_ext.tasks import get_task

PICTURES_FILE = Path("online") / "pictures.parquet"
KIND = PICTURE_INDEX  # schema metadata that marks a picture index (the leakage check knows it)

SCHEMA = pa.schema(
    [
        ("source_id", pa.string()),
        ("group", pa.string()),  # the original picture of a crop ("" when the item is a whole picture)
        ("image", pa.binary()),  # JPEG q95 of the decoded, normalised, reduced picture
        (
            "extra_info",
            pa.struct(
                [
                    ("content_id", pa.string()),  # of the full decode, as the offline rows and the leakage check
                    ("partner_content_id", pa.string()),
                    ("source_id", pa.string()),
                    ("split", pa.string()),
                ]
            ),
        ),
    ]
)


@dataclass(frozen=True)
class Pictures:
    """A loaded picture index: one entry per training picture, in the source's order."""

    source_ids: list[str]
    groups: list[str]
    content_ids: list[str]
    images: list[bytes]
    build: dict[str, Any]  # the offline build's settings (its manifest's "args", plus train_split)

    def __len__(self) -> int:
        return len(self.source_ids)


def build_config(build: dict[str, Any]) -> BuildConfig:
    """The offline build's :class:`BuildConfig`, from its manifest's ``args``."""
    args = dict(build["args"])
    args["limits"] = DecodeLimits(**args.get("limits", {}))
    args["options"] = tuple(args.get("options") or ())
    for key in ("output", "input", "tokenizer"):
        if args.get(key) is not None:
            args[key] = Path(args[key])
    known = BuildConfig.__dataclass_fields__
    return BuildConfig(**{k: v for k, v in args.items() if k in known})


def read_manifest(data_dir: Path) -> dict[str, Any]:
    path = data_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: build the puzzles first (build_benchmarks/build.py)")
    manifest = json.loads(path.read_text())
    if "args" not in manifest or "train_split" not in manifest:
        raise ValueError(f"{path} lacks 'args' or 'train_split': it was not written by build_benchmarks/build.py")
    return manifest


def keep_pixels(plan: BuildPlan) -> int:
    """The most pixels any level of any task of ``plan`` can use from a source picture (the reduce target)."""
    worker = Worker(plan)
    largest = 32 * 32
    for task_plan in plan.tasks:
        task = get_task(task_plan.name)
        for knobs in (task_plan.knobs, *task.levels()):
            level_plan = TaskPlan(task_plan.name, task_plan.difficulty, dict(knobs), 1.0, task_plan.needs_partner)
            hint = worker.source_hint(level_plan)
            largest = max(largest, hint.max_pixels)
    return min(largest, plan.limits.max_pixels)


@dataclass(frozen=True)
class _Job:
    """What every decoding process needs (picklable)."""

    limits: DecodeLimits
    val_fraction: float
    train_split: str
    hint: SourceHint


@dataclass(frozen=True)
class _Decoded:
    """One source item, decoded: its content id and split, and for a training picture its stored JPEG."""

    source_id: str
    group: str
    content_id: str = ""
    split: str = ""
    image: bytes = b""  # empty outside the training split
    skip: str = ""  # the reason, when the item could not be decoded


def _decode(item: RawItem, job: _Job) -> _Decoded:
    try:
        image = decode_item(item, job.limits)
    except ImageSkip as skip:
        return _Decoded(item.source_id, item.group or "", skip=str(skip))
    cid = content_id(image)
    split = item_split(item, cid, job.val_fraction)
    data = encode_image(reduce_picture(image, job.hint)) if split == job.train_split else b""
    return _Decoded(item.source_id, item.group or "", cid, split, data)


_JOB: _Job | None = None


def _init(job: _Job) -> None:
    global _JOB
    _JOB = job


def _decode_chunk(chunk: list[RawItem]) -> list[_Decoded]:
    assert _JOB is not None, "_init was not called in this process"
    return [_decode(item, _JOB) for item in chunk]


def _decoded(items: Iterator[RawItem], job: _Job, workers: int) -> Iterator[_Decoded]:
    """The items decoded in source order: inline with one worker, else by the builder's ordered pool."""
    if workers <= 1:
        yield from (_decode(item, job) for item in items)
        return
    chunks = chunked(items, CHUNK_ITEMS)
    for _, decoded in ordered_pool_map(_decode_chunk, chunks, workers, _init, (job,), "verl_ext.online.pictures"):
        yield from decoded


def write_pictures(data_dir: str | Path, progress: bool = True, workers: int = 1) -> Path:
    """Write the picture index of the built dataset in ``data_dir`` with ``workers`` decoding processes; returns
    its path. The same pictures, in the same order, whatever ``workers`` is.

    Locked like a build (one writer per folder); written to a temporary file and renamed, so a reader never sees
    half an index.
    """
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    config = build_config(manifest)
    spec, path = resolve_input(config.source, config.input)
    plan = make_plan(config, spec.name)
    train_split = manifest["train_split"]
    out = data_dir / PICTURES_FILE
    job = _Job(config.limits, config.val_fraction, train_split, SourceHint(keep_pixels(plan), exact=False))
    with FolderLock(data_dir, "writing the online picture index", hint="wait for the build or the other run"):
        skips = SkipCounter()
        seen: set[str] = set()
        columns: dict[str, list[Any]] = {"source_id": [], "group": [], "image": [], "extra_info": []}
        items = limited_items(spec, path, limit=config.limit, carve=config.carve, skips=skips)
        for picture in _decoded(items, job, workers):
            if picture.skip:
                skips.skip(picture.skip)
                continue
            if picture.content_id in seen:  # the builder's rule: a picture stored twice counts once
                skips.skip("duplicate image")
                continue
            seen.add(picture.content_id)
            if picture.split != train_split:
                continue
            columns["source_id"].append(picture.source_id)
            columns["group"].append(picture.group)
            columns["image"].append(picture.image)
            columns["extra_info"].append(
                {
                    "content_id": picture.content_id,
                    "partner_content_id": "",
                    "source_id": picture.source_id,
                    "split": picture.split,
                }
            )
        if not columns["source_id"]:
            raise RuntimeError(f"the source {spec.name} has no picture in split {train_split!r}; skips: {dict(skips)}")
        build = {"args": manifest["args"], "train_split": train_split, "source": spec.name, "skips": dict(skips)}
        schema = SCHEMA.with_metadata({b"kind": KIND, b"build": json.dumps(build).encode()})
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        pq.write_table(pa.table(columns, schema=schema), tmp, compression={"image": "NONE"}, row_group_size=64)
        os.replace(tmp, out)
    if progress:
        print(f"[online] {len(columns['source_id'])} training pictures of {spec.name} -> {out} (skips: {dict(skips)})")
    return out


def is_picture_index(path: Path) -> bool:
    schema = pq.read_schema(path)
    return (schema.metadata or {}).get(b"kind") == KIND


def is_current(data_dir: Path) -> bool:
    """True when the index in ``data_dir`` exists and was written from the build now there."""
    path = data_dir / PICTURES_FILE
    if not path.is_file() or not is_picture_index(path):
        return False
    build = json.loads(pq.read_schema(path).metadata[b"build"])
    return build["args"] == read_manifest(data_dir)["args"]


def read_pictures(path: str | Path) -> Pictures:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"picture index {path} does not exist: write it with python -m verl_ext.online.pictures DATA_DIR"
        )
    if not is_picture_index(path):
        raise ValueError(f"{path} is not a picture index (written by python -m verl_ext.online.pictures)")
    table = pq.read_table(path)
    info = table.column("extra_info").to_pylist()
    return Pictures(
        source_ids=table.column("source_id").to_pylist(),
        groups=table.column("group").to_pylist(),
        content_ids=[i["content_id"] for i in info],
        images=table.column("image").to_pylist(),
        build=json.loads(table.schema.metadata[b"build"]),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="a folder written by build_benchmarks/build.py")
    parser.add_argument("--if-missing", action="store_true", help="keep an index written from the same build")
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="decoding processes [min(8, cores)]"
    )
    args = parser.parse_args(argv)
    try:
        if args.if_missing and is_current(args.data_dir):
            print(args.data_dir / PICTURES_FILE)
            return 0
        print(write_pictures(args.data_dir, progress=False, workers=args.workers))
    except (OSError, ValueError, RuntimeError) as error:
        print(f"[online] ERROR: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
