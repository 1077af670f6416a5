#!/usr/bin/env python
"""Speed of the puzzle reward: calls/s on typical responses (one core) and time for 1 MB adversarial output.

Targets (issue 2): at least 50,000 calls/s on typical outputs; under 10 ms for a 1 MB adversarial output.

    python scripts/bench_reward.py [--seconds 3] [--core 0]

Prints one line per measurement. Typical responses are real puzzles of every registered task (synthetic
images), each answered right, wrong, partially right, without think block and without tags, with a few
sentences of thinking. The adversarial set is scored twice: through ``compute_score`` (responses over
``MAX_RESPONSE_CHARS`` are rejected by length) and with the length cap lifted, which times the parser itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from verl_ext import answers
from verl_ext.reward import compute_score
from verl_ext.tasks import TASKS, PuzzleSkip

THINKING = (
    "The second image shows the same scene. The sky is at the left edge and the horizon runs vertically, so "
    "the picture was turned a quarter turn. Tiles at the border keep their straight edges. "
)


def photo_like(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = (rng.random((6, 7, 3)) * 255).astype(np.uint8)
    big = np.asarray(Image.fromarray(coarse).resize((448, 384), Image.Resampling.BICUBIC), float)
    return Image.fromarray(np.clip(big + rng.normal(0, 18, big.shape), 0, 255).astype(np.uint8))


def typical_calls() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(data_source, response, ground truth, extra_info) for every registered task, five kinds of answer each."""
    calls = []
    for seed, (name, task) in enumerate(sorted(TASKS.items())):
        puzzle = None
        for attempt in range(10):
            try:
                partner = photo_like(100 + seed + attempt) if task.needs_partner else None
                puzzle = task.make(
                    photo_like(seed + attempt), np.random.default_rng(attempt), partner=partner, **task.knobs_for()
                )
                break
            except PuzzleSkip:
                continue
            except Exception as error:  # a task under construction must not stop the benchmark of the others
                print(f"skipping task {name}: make() failed: {error!r}")
                break
        else:
            continue
        if puzzle is None:
            continue
        truth = puzzle.answer
        if task.answer_kind == "permutation":
            tiles = truth.split(",")
            tiles[0], tiles[1] = tiles[1], tiles[0]
            wrong = ",".join(tiles)
        else:
            wrong = next(label for label in task.labels(puzzle.params) if label != truth)
        extra_info = {"task": name, "params": json.dumps(puzzle.params)}
        for response in (
            f"<think>{THINKING}</think>\n<answer>{truth}</answer>",
            f"<think>{THINKING}</think>\n<answer>{wrong}</answer>",
            f"<think>{THINKING}</think>\n<answer>{truth} or {wrong}</answer>",
            f"{THINKING}<answer>{truth}</answer>",
            f"{THINKING} So the answer is {truth}.",
        ):
            calls.append((f"ssl_{name}", response, truth, extra_info))
    return calls


ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "open brackets": lambda n: "<" * n,
    "tag flood": lambda n: ("<think>" * (n // 7 + 1))[:n],
    "near-miss tags": lambda n: ("<thin<answe</answe<" * (n // 19 + 1))[:n],
    "one bracket then spaces": lambda n: "<" + " " * (n - 1),
    "huge think, then answer": lambda n: "<think>" + "a" * (n - 40) + "</think><answer>1</answer>",
    "huge answer": lambda n: "<think>a</think><answer>" + "1," * ((n - 40) // 2) + "</answer>",
    "binary junk": lambda n: bytes(np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8)).decode("latin-1"),
    "alternating scripts": lambda n: ("a中" * (n // 2 + 1))[:n],
    "emoji and tags": lambda n: ("😀<think>" * (n // 8 + 1))[:n],
}


def time_call(fn: Callable[[], Any], repeats: int) -> tuple[float, float, float]:
    """(min, median, max) seconds of ``repeats`` calls; min is the best estimate on a shared machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), max(times)


def ms(fastest: float, median: float, longest: float) -> str:
    return f"min {fastest * 1e3:.3f} ms, median {median * 1e3:.3f} ms, max {longest * 1e3:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to run the throughput loop")
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to (-1: do not pin)")
    parser.add_argument("--size", type=int, default=1_000_000, help="adversarial output size in characters")
    args = parser.parse_args()

    if args.core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    print(
        f"cpus visible: {os.cpu_count()}, pinned to core: {args.core if args.core >= 0 else 'no'}, "
        f"load: {os.getloadavg()}"
    )

    calls = typical_calls()
    print(f"typical responses: {len(calls)} ({len(calls) // 5} tasks x 5 kinds)")
    for call in calls:  # warm caches the way a training run does (many rollouts per puzzle)
        compute_score(*call)
    done = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    deadline = start + args.seconds
    while time.perf_counter() < deadline:
        for data_source, response, truth, extra_info in calls:
            compute_score(data_source, response, truth, extra_info)
        done += len(calls)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rate, cpu_rate = done / elapsed, done / cpu
    # Wall-clock rate suffers when other processes share the core; the CPU-time rate is what one free core does.
    print(
        f"typical: {rate:,.0f} calls/s wall, {cpu_rate:,.0f} calls per CPU-second ({1e6 / cpu_rate:.1f} us CPU/call; "
        f"{done:,} calls, {elapsed:.2f} s wall, {cpu:.2f} s CPU) target >= 50,000"
    )

    name, task = sorted(TASKS.items())[0]
    extra_info = next(c[3] for c in calls if c[3]["task"] == name)
    truth = next(c[2] for c in calls if c[3]["task"] == name)
    worst = 0.0
    for label, make in ADVERSARIAL.items():
        text = make(args.size)
        fastest, median, longest = time_call(
            lambda text=text: compute_score(f"ssl_{name}", text, truth, extra_info), 20
        )
        worst = max(worst, median)
        print(f"adversarial {len(text) / 1e6:.1f} MB '{label}': compute_score {ms(fastest, median, longest)}")
    print(f"adversarial 1 MB worst median: {worst * 1e3:.3f} ms (target < 10 ms)")

    # Just under the length cap: the most text compute_score ever scans.
    under_cap = answers.MAX_RESPONSE_CHARS - 10
    worst_under = 0.0
    for label, make in ADVERSARIAL.items():
        text = make(under_cap)
        fastest, median, longest = time_call(
            lambda text=text: compute_score(f"ssl_{name}", text, truth, extra_info), 20
        )
        worst_under = max(worst_under, median)
        print(f"adversarial {len(text):,} chars (cap - 10) '{label}': {ms(fastest, median, longest)}")
    print(f"under-cap worst median: {worst_under * 1e3:.3f} ms")

    # The parser itself on 1 MB, with the length cap lifted: linear scans only, no backtracking.
    cap = answers.MAX_RESPONSE_CHARS
    answers.MAX_RESPONSE_CHARS = 10 * args.size
    try:
        worst_uncapped = 0.0
        for label, make in ADVERSARIAL.items():
            text = make(args.size)
            fastest, median, longest = time_call(lambda text=text: answers.parse_response(text), 10)
            worst_uncapped = max(worst_uncapped, median)
            print(f"uncapped parse {len(text) / 1e6:.1f} MB '{label}': {ms(fastest, median, longest)}")
        print(f"uncapped parse worst median: {worst_uncapped * 1e3:.3f} ms")
    finally:
        answers.MAX_RESPONSE_CHARS = cap


if __name__ == "__main__":
    main()
