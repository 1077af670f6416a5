"""The build: source items -> chunks -> worker processes -> ordered rows -> atomic per-split parquet files.

The main process reads the source (cheap: still-encoded images), drops stored repeats, cuts the stream into
fixed-size chunks and hands them to a process pool; results come back in chunk order, so rows, their numbering
and every dedupe decision are the same whatever ``--workers`` is.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any

from verl_ext import __version__
from verl_ext.builder.hub import CARD, dataset_card
from verl_ext.builder.plan import BuildConfig, BuildPlan, make_plan
from verl_ext.builder.worker import ChunkResult, Outcome, Worker, init_worker, run_chunk
from verl_ext.builder.writer import (
    MANIFEST,
    SplitWriter,
    fsync_dir,
    remove_stale_temporaries,
    split_file,
    write_json_atomic,
    write_text_atomic,
)
from verl_ext.folder_lock import FolderLock
from verl_ext.sources import RawDeduper, RawItem, SkipCounter, iter_raw, resolve_input
from verl_ext.sources.base import SourceSpec

# Items per chunk. Fixed (never derived from --workers) because contrastive pairs form inside a chunk.
CHUNK_ITEMS = 8
CHUNK_ITEMS_WITH_PARTNERS = 24
# The manifest's skip reason for the rows a balanced build leaves out (verl_ext/builder/order.py).
BALANCE_SKIP = "dropped to balance the answers (--order balanced)"


def build(config: BuildConfig) -> dict[str, Any]:
    """Run one build and return its manifest (also written to ``<output>/manifest.json``).

    The output folder is locked for the whole build (:mod:`verl_ext.folder_lock`): a second build into the same
    folder is refused with :class:`~verl_ext.folder_lock.FolderBusy` before it touches anything.
    """
    started = time.perf_counter()
    spec, path = resolve_input(config.source, config.input)
    plan = make_plan(config, spec.name)
    output = Path(config.output)
    purpose = f"a build of {config.task} puzzles from {spec.name}"
    with FolderLock(output, purpose, hint="wait for that build to end, or build into another --output folder"):
        return _build_locked(config, spec, path, plan, output, started)


def _build_locked(
    config: BuildConfig, spec: SourceSpec, path: Path | None, plan: BuildPlan, output: Path, started: float
) -> dict[str, Any]:
    remove_stale_temporaries(output)

    state = _BuildState(plan)
    writer = SplitWriter(output, order=config.order, seed=config.seed)
    chunk_items = CHUNK_ITEMS_WITH_PARTNERS if any(t.needs_partner for t in plan.tasks) else CHUNK_ITEMS
    items = limited_items(spec, path, limit=config.limit, carve=config.carve, skips=state.skips)
    progress = _progress(config, spec)
    try:
        chunks = chunked(items, chunk_items)
        for result, size in _ordered_results(state.worker(), config.workers, chunks):
            state.take(result, writer)
            progress.update(size)
            progress.set_postfix(rows=sum(writer.rows.values()), skipped=sum(state.skips.values()), refresh=False)
        state.finish(writer)
        if not writer.rows:
            raise RuntimeError(f"no puzzle could be made from {path or spec.name}; skips: {dict(state.skips)}")
        # The old manifest goes first: from here until the new one is written the folder reads as "not built"
        # (a kill in between makes the launcher build again), never as a manifest that describes other files.
        previous_splits = _retract_manifest(output)
        files = writer.commit()
        state.drop(writer.dropped)
    except BaseException:
        writer.abort()
        raise
    finally:
        progress.close()

    seconds = time.perf_counter() - started
    manifest = _manifest(config, spec, plan, state, writer.rows, seconds)
    written = set(files.values())
    for split in previous_splits:
        if split_file(output, split) not in written:
            split_file(output, split).unlink(missing_ok=True)
    # The dataset card first: a folder whose manifest exists always has the card of that build.
    write_text_atomic(output / CARD, dataset_card(manifest, output))
    write_json_atomic(output / MANIFEST, manifest)
    _print_summary(manifest, output, state.errors)
    return manifest


class _BuildState:
    """Main-process bookkeeping: skips, dedupe by content, cross-chunk contrastive pairs, row statistics."""

    def __init__(self, plan: BuildPlan) -> None:
        self.plan = plan
        self.skips = SkipCounter()
        self.notes: Counter = Counter()
        self.errors: list[str] = []
        self.seen: set[tuple[str, int]] = set()
        self.waiting: list = []  # partner-task units waiting for a partner from a later chunk
        self.carved = False
        self.tokens: dict[str, list[int]] = {}
        self.by_task: dict[str, Counter] = {}
        self.pair_roles: dict[str, Counter] = {}  # puzzles of paired tasks per split, by pair role
        self._worker: Worker | None = None

    def take(self, result: ChunkResult, writer: SplitWriter) -> None:
        self.notes.update(result.notes)
        self.errors.extend(result.errors[: max(0, 3 - len(self.errors))])
        for outcome in result.outcomes:
            self._emit(outcome, writer, check=True)
        for unit in result.leftovers:
            if unit.key in self.seen:
                self.skips.skip("duplicate image")
                continue
            self.seen.add(unit.key)
            outcomes, self.waiting = self.worker().pair_up(self.waiting, [unit], self.errors)
            for outcome in outcomes:
                self._emit(outcome, writer, check=False)

    def finish(self, writer: SplitWriter) -> None:
        if self.waiting:
            self.skips.skip("no partner picture left (odd one out)", len(self.waiting))
            self.waiting = []

    def drop(self, dropped: dict[str, list[dict[str, Any]]]) -> None:
        """Take the rows a balanced build dropped (their ``extra_info`` by split) out of the row statistics, and
        count them as skipped, so the manifest describes the rows written."""
        for split, infos in dropped.items():
            unwanted = Counter(info["prompt_tokens"] for info in infos)
            kept = []
            for tokens in self.tokens[split]:
                if unwanted[tokens]:
                    unwanted[tokens] -= 1
                else:
                    kept.append(tokens)
            self.tokens[split] = kept
            self.by_task[split] -= Counter(info["task"] for info in infos)
            self.skips.skip(BALANCE_SKIP, len(infos))

    def worker(self) -> Worker:
        """This process's worker: runs the chunks of a one-worker build and pairs leftovers across chunks."""
        if self._worker is None:
            self._worker = Worker(self.plan)
        return self._worker

    def _emit(self, outcome: Outcome, writer: SplitWriter, check: bool) -> None:
        if outcome.skip is not None:
            self.skips.skip(outcome.skip)
            return
        if check:
            repeated = [key for key in outcome.keys if key in self.seen]
            if repeated:
                self.skips.skip("duplicate image", len(repeated))
                if len(outcome.keys) > len(repeated):
                    self.skips.skip("partner of a duplicate image", len(outcome.keys) - len(repeated))
                return
            self.seen.update(outcome.keys)
        for row, role in zip(outcome.rows, outcome.roles or [None] * len(outcome.rows)):
            info = row["extra_info"]
            split = info["split"]
            self.carved |= info["source_split"] == ""
            self.tokens.setdefault(split, []).append(info["prompt_tokens"])
            self.by_task.setdefault(split, Counter())[info["task"]] += 1
            if role is not None:
                self.pair_roles.setdefault(split, Counter())[role] += 1
            writer.add(row)


def limited_items(
    spec: SourceSpec, path: Path | None, *, limit: int | None, carve: bool, skips: SkipCounter
) -> Iterator[RawItem]:
    """Source items minus stored repeats, at most ``limit`` per source split (the build's ``--limit``; the online
    picture index takes its pictures by the same rule)."""
    done: set[str] = set()
    taken: Counter = Counter()
    repeats = RawDeduper()
    for item in iter_raw(spec, path, skips, carve=carve, done_splits=done):
        bucket = item.split or ""
        if limit is not None and taken[bucket] >= limit:
            done.add(bucket)
            continue
        reason = repeats.repeat_reason(item)
        if reason is not None:
            skips.skip(reason)
            continue
        taken[bucket] += 1
        yield item


def chunked(items: Iterable[RawItem], size: int) -> Iterator[list[RawItem]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _ordered_results(main: Worker, workers: int, chunks: Iterator[list[RawItem]]) -> Iterator[tuple[ChunkResult, int]]:
    """Chunk results in chunk order: inline with one worker, else from a pool (:func:`ordered_pool_map`).

    The pool's workers get the main process's measured source-size hints, so they start without probing.
    """
    if workers <= 1:
        for chunk in chunks:
            yield main.process_chunk(chunk), len(chunk)
        return
    initargs = (main.plan, main.source_hints, main.tasks)
    for chunk, result in ordered_pool_map(run_chunk, chunks, workers, init_worker, initargs, "verl_ext.builder.worker"):
        yield result, len(chunk)


def ordered_pool_map(
    function: Callable[[Any], Any],
    chunks: Iterable[Any],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple,
    preload: str,
) -> Iterator[tuple[Any, Any]]:
    """``(chunk, function(chunk))`` in chunk order, from ``workers`` processes, with a bounded look-ahead.

    Workers come from a forkserver (a clean, thread-free process that has imported ``preload`` once): forking
    this process instead can hang a child on a lock held by one of its threads (pyarrow, torch, ...).
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload([preload])
    with context.Pool(workers, initializer=initializer, initargs=initargs) as pool:
        window: deque = deque()
        for chunk in chunks:
            window.append((chunk, pool.apply_async(function, (chunk,))))
            # Enough chunks in flight to keep every worker busy, few enough to bound memory.
            if len(window) >= 2 * workers + 1:
                done, pending = window.popleft()
                yield done, pending.get()
        while window:
            done, pending = window.popleft()
            yield done, pending.get()


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(config: BuildConfig, spec: SourceSpec) -> Any:
    if not config.progress:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(desc=f"{config.task} <- {spec.name}", unit="img", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)


def _roles(spec: SourceSpec, splits: dict[str, int], carved: bool) -> tuple[str | None, str | None]:
    """Which output split to train on and which to validate on (None when the build made none)."""
    if carved:
        return ("train" if "train" in splits else None), ("val" if "val" in splits else None)
    train = spec.train_split if spec.train_split in splits else ("train" if "train" in splits else None)
    val = (
        spec.val_split
        if spec.val_split in splits
        else next((s for s in ("val", "validation", "dev") if s in splits), None)
    )
    return train, val


def _manifest(
    config: BuildConfig, spec: SourceSpec, plan: BuildPlan, state: _BuildState, rows: dict[str, int], seconds: float
) -> dict[str, Any]:
    train_split, val_split = _roles(spec, rows, state.carved)
    total = sum(rows.values())
    args = {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(config).items()}
    args["limits"] = asdict(config.limits)
    return {
        "task": config.task,
        "tasks": {t.name: t.weight for t in plan.tasks},
        "source": spec.name,
        "input": str(config.input) if config.input else None,
        "train_split": train_split,
        "val_split": val_split,
        "splits": dict(sorted(rows.items())),
        "files": {split: split_file(Path("."), split).name for split in sorted(rows)},
        "skips": dict(state.skips.most_common()),
        "normalised": dict(state.notes.most_common()),
        "seed": config.seed,
        "difficulty": {t.name: t.difficulty for t in plan.tasks},
        "knobs": {t.name: t.knobs for t in plan.tasks},
        "max_prompt_tokens": config.max_prompt_tokens,
        "prompt_tokens": {
            split: {"max": max(values), "mean": round(sum(values) / len(values), 1)}
            for split, values in sorted(state.tokens.items())
        },
        "prompt_tokens_exact": plan.tokenizer is not None,
        "rows_by_task": {split: dict(sorted(c.items())) for split, c in sorted(state.by_task.items())},
        "pair_roles": {split: dict(sorted(c.items())) for split, c in sorted(state.pair_roles.items())},
        "image_format": config.image_format,
        "control": config.control,  # "grey": a control build whose pictures are flat grey (not for training a model)
        "puzzles_per_image": config.puzzles_per_image,
        "workers": config.workers,
        "seconds": round(seconds, 3),
        "puzzles_per_second": round(total / seconds, 2) if seconds > 0 else None,
        "args": args,
        "version": __version__,
    }


def _retract_manifest(output: Path) -> list[str]:
    """Remove the manifest of a previous build in ``output`` (durably); returns the splits it named."""
    import json

    old = output / MANIFEST
    if not old.is_file():
        return []
    try:
        previous = list(json.loads(old.read_text(encoding="utf-8")).get("splits", {}))
    except (ValueError, OSError, AttributeError):
        previous = []
    old.unlink()
    fsync_dir(output)
    return previous


def _print_summary(manifest: dict[str, Any], output: Path, errors: list[str]) -> None:
    out = sys.stderr
    total = sum(manifest["splits"].values())
    print(
        f"built {total} puzzles ({manifest['task']} from {manifest['source']}) in {manifest['seconds']:.1f} s, "
        f"{manifest['puzzles_per_second']} puzzles/s -> {output}",
        file=out,
    )
    for split, rows in manifest["splits"].items():
        role = " (train)" if split == manifest["train_split"] else " (val)" if split == manifest["val_split"] else ""
        tokens = manifest["prompt_tokens"][split]
        print(f"  {split}{role}: {rows} rows, prompt tokens max {tokens['max']} mean {tokens['mean']}", file=out)
    if manifest["skips"]:
        print("  skipped: " + ", ".join(f"{reason} {n}" for reason, n in manifest["skips"].items()), file=out)
    if manifest["normalised"]:
        print("  normalised: " + ", ".join(f"{what} {n}" for what, n in manifest["normalised"].items()), file=out)
    if manifest["train_split"] is None:
        print("  note: no training split was made (use --carve to split a single benchmark split)", file=out)
    for error in errors:
        print(f"  task error (counted as a skip; --strict raises):\n{error}", file=out)
