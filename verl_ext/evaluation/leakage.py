"""Leakage guard: training puzzles must not be made from the images of the benchmark a model is judged on.

Puzzles built from a benchmark's own pictures and then evaluated on that benchmark inflate the result (SSL4RL
built MMBench puzzles from dev+test images and reported MMBench dev). Every puzzle row carries the content id of
its picture (``extra_info["content_id"]``, plus ``partner_content_id`` for the second picture of a contrastive
negative); :func:`verl_ext.images.content_id` hashes decoded pixels, and every source decodes through one
canonical path (:mod:`verl_ext.sources.decode`), so the same picture has the same id in every file.

The benchmark side is either

* a raw benchmark file or folder (TSV, parquet, image folder): decoded with :func:`verl_ext.sources.iter_images`,
  optionally restricted to one of its own splits (``--split dev`` for MMBench dev), or
* a puzzle parquet in verl's row format (e.g. the validation split a run validates on): its content ids are read
  from ``extra_info`` without touching the images.

``guard`` is what run scripts call: exit 0 when there is no overlap (or ``ALLOW_EVAL_IMAGES=1`` says it is
intended), exit 1 with a report otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ALLOW_ENV = "ALLOW_EVAL_IMAGES"
PUZZLE_COLUMNS = {"extra_info", "reward_model", "prompt"}
PICTURE_INDEX = b"verl_ext.pictures"  # schema metadata of a picture index (verl_ext.online.pictures.KIND)


class LeakageError(RuntimeError):
    """Training data shares pictures with the evaluation benchmark."""


@dataclass
class ImageRef:
    """Where a content id was seen: a file, a row (or source id) in it."""

    file: str
    where: str


@dataclass
class ContentIds:
    """Content ids of one side, each with its first place of use, plus counts."""

    ids: dict[str, ImageRef] = field(default_factory=dict)
    rows: int = 0  # puzzle rows (training side) or decoded pictures (benchmark side)
    rows_by_id: Counter = field(default_factory=Counter)  # how many rows use each id
    skips: Counter = field(default_factory=Counter)

    def add(self, cid: str, ref: ImageRef) -> None:
        self.ids.setdefault(cid, ref)
        self.rows_by_id[cid] += 1


def is_puzzle_parquet(path: Path) -> bool:
    """A puzzle file, or the picture index online puzzles are made from (:mod:`verl_ext.online.pictures`): both
    carry their pictures' content ids in ``extra_info``."""
    if not (path.is_file() and path.suffix == ".parquet"):
        return False
    schema = pq.read_schema(path)
    return PUZZLE_COLUMNS <= set(schema.names) or (schema.metadata or {}).get(b"kind") == PICTURE_INDEX


def puzzle_content_ids(files: Iterable[str | Path]) -> ContentIds:
    """Content ids (picture and contrastive partner) of puzzle parquet files, read from ``extra_info`` only."""
    out = ContentIds()
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such puzzle file")
        if not is_puzzle_parquet(path):
            raise ValueError(f"{path}: not a puzzle parquet (needs columns {sorted(PUZZLE_COLUMNS)})")
        table = pq.read_table(path, columns=["extra_info"])
        for row, info in enumerate(table.column("extra_info").to_pylist()):
            out.rows += 1
            info = info or {}
            ids = [info.get("content_id"), info.get("partner_content_id")]
            ids = [str(c) for c in ids if c]
            if not ids:
                out.skips["row without content_id"] += 1
            for cid in ids:
                where = f"row {row} ({info.get('source', '?')} {info.get('source_id', '?')})"
                out.add(cid, ImageRef(path.name, where))
    return out


def benchmark_content_ids(path: str | Path, source: str | None = None, split: str | None = None) -> ContentIds:
    """Content ids of a benchmark: a puzzle parquet (from extra_info) or a raw benchmark (decoded).

    For a source whose input is settings (``scenes``: ``size=112,val=80``, as a build's ``--input``), ``path``
    holds those settings.
    """
    from verl_ext.sources import get_source

    path = Path(path)
    settings = source is not None and get_source(source).input_is_settings
    if not settings and not path.exists():
        raise FileNotFoundError(f"{path}: no such benchmark file or folder")
    if is_puzzle_parquet(path):
        if split is not None:
            raise ValueError("--split applies to raw benchmark files; a puzzle parquet is one split already")
        return puzzle_content_ids([path])
    # Imported here: decoding sources pulls in the image stack, which the puzzle-parquet path does not need.
    from verl_ext.sources import SkipCounter, iter_images

    out = ContentIds()
    skips = SkipCounter()
    seen_splits: Counter = Counter()
    # source None: detected from the path (file names, parquet columns), as the builders do.
    for image in iter_images(source, path, skips=skips):  # type: ignore[arg-type]
        seen_splits[image.split] += 1
        if split is not None and image.split != split:
            continue
        out.rows += 1
        out.add(image.meta["content_id"], ImageRef(path.name, f"id {image.source_id} (split {image.split})"))
    out.skips.update(skips)
    if split is not None and out.rows == 0:
        raise ValueError(f"{path}: no images in split {split!r}; splits found: {dict(seen_splits)}")
    return out


@dataclass
class LeakageReport:
    train: ContentIds
    benchmark: ContentIds
    overlap: list[str]
    benchmark_name: str

    @property
    def leaked(self) -> bool:
        return bool(self.overlap)

    def to_dict(self, max_examples: int = 10) -> dict[str, Any]:
        rows_hit = sum(self.train.rows_by_id[c] for c in self.overlap)
        return {
            "benchmark": self.benchmark_name,
            "overlap_images": len(self.overlap),
            "train_rows": self.train.rows,
            "train_images": len(self.train.ids),
            "train_rows_with_benchmark_images": rows_hit,
            "fraction_of_train_rows": rows_hit / self.train.rows if self.train.rows else 0.0,
            "benchmark_images": len(self.benchmark.ids),
            "fraction_of_benchmark_images": len(self.overlap) / len(self.benchmark.ids) if self.benchmark.ids else 0.0,
            "examples": [
                {
                    "content_id": c,
                    "train": f"{self.train.ids[c].file} {self.train.ids[c].where}",
                    "benchmark": f"{self.benchmark.ids[c].file} {self.benchmark.ids[c].where}",
                }
                for c in self.overlap[:max_examples]
            ],
            "train_skips": dict(self.train.skips),
            "benchmark_skips": dict(self.benchmark.skips),
        }

    def summary(self) -> str:
        d = self.to_dict(max_examples=5)
        head = (
            f"{d['overlap_images']} of {d['benchmark_images']} benchmark images "
            f"({100 * d['fraction_of_benchmark_images']:.1f}%) appear in the training puzzles: "
            f"{d['train_rows_with_benchmark_images']} of {d['train_rows']} training rows "
            f"({100 * d['fraction_of_train_rows']:.1f}%) are built from {d['benchmark']} images."
        )
        lines = [head]
        lines += [f"  {e['content_id']}: train {e['train']} = benchmark {e['benchmark']}" for e in d["examples"]]
        for side in ("train_skips", "benchmark_skips"):
            if d[side]:
                lines.append(f"  ({side.replace('_', ' ')}: {d[side]})")
        return "\n".join(lines)


def check_leakage(
    train_files: Sequence[str | Path], benchmark: str | Path, source: str | None = None, split: str | None = None
) -> LeakageReport:
    """Compare the content ids of training puzzles with those of a benchmark."""
    if not train_files:
        raise ValueError("no training files given")
    train = puzzle_content_ids(train_files)
    bench = benchmark_content_ids(benchmark, source, split)
    overlap = sorted(set(train.ids) & set(bench.ids))
    name = Path(benchmark).name + (f" ({split})" if split else "")
    return LeakageReport(train, bench, overlap, name)


def allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether the user explicitly allowed training on evaluation images (``ALLOW_EVAL_IMAGES=1``)."""
    value = (env if env is not None else os.environ).get(ALLOW_ENV, "")
    return value.strip().lower() in ("1", "true", "yes")


def guard(
    train_files: Sequence[str | Path],
    benchmark: str | Path,
    source: str | None = None,
    split: str | None = None,
    env: Mapping[str, str] | None = None,
) -> LeakageReport:
    """Raise :class:`LeakageError` if the training puzzles use benchmark images, unless explicitly allowed."""
    report = check_leakage(train_files, benchmark, source, split)
    if report.leaked and not allowed(env):
        raise LeakageError(
            f"training data shares pictures with the evaluation benchmark {report.benchmark_name}:\n"
            f"{report.summary()}\n"
            f"Build the training puzzles from other images (e.g. the benchmark's other split), or set {ALLOW_ENV}=1 "
            "if you mean to train on them (results on that benchmark are then not comparable)."
        )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``check`` (report, exit 1 on overlap) and ``guard`` (exit 1 on overlap unless ALLOW_EVAL_IMAGES=1)."""
    parser = argparse.ArgumentParser(
        prog="verl-ext-check-leakage",
        description=(
            "Compare the pictures of training puzzles with those of an evaluation benchmark (by content id). "
            "Exit 0: no overlap; 1: overlap; 2: error."
        ),
    )
    parser.add_argument("train", nargs="+", type=Path, help="training puzzle parquet files")
    parser.add_argument(
        "--benchmark",
        type=Path,
        required=True,
        help="benchmark file/folder (TSV, parquet, images) or a puzzle parquet (e.g. a val split)",
    )
    parser.add_argument("--source", default=None, help="benchmark source name (default: detected from the path)")
    parser.add_argument("--split", default=None, help="only this split of the benchmark (e.g. dev for MMBench dev)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument(
        "--guard",
        action="store_true",
        help=f"run-script mode: an overlap is allowed (exit 0, with a warning) when {ALLOW_ENV}=1",
    )
    args = parser.parse_args(argv)
    try:
        report = check_leakage(args.train, args.benchmark, args.source, args.split)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if not report.leaked:
        print(
            f"leakage check: no overlap between {len(report.train.ids)} training images and "
            f"{len(report.benchmark.ids)} images of {report.benchmark_name}"
        )
        return 0
    if args.guard and allowed():
        print(f"warning: {ALLOW_ENV}=1, training on evaluation images anyway.\n{report.summary()}", file=sys.stderr)
        return 0
    print(f"LEAKAGE: {report.summary()}", file=sys.stderr)
    if args.guard:
        print(f"Refusing to train. Set {ALLOW_ENV}=1 to train on these images anyway.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
