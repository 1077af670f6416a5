"""Command line of the dataset builder: ``build_benchmarks/build.py --task T --source S --input P --output D``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from verl_ext.builder.order import ORDERS
from verl_ext.builder.plan import CONTROLS, DEFAULT_MAX_PROMPT_TOKENS, DIFFICULTIES, BuildConfig
from verl_ext.sources import ALIASES, SOURCES


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every build entry point shares (the per-benchmark scripts use only these)."""
    parser.add_argument("--seed", type=int, default=0, help="seed of every puzzle's randomness (default 0)")
    parser.add_argument(
        "--workers", type=int, default=default_workers(), help="worker processes (default: CPU count, at most 8)"
    )
    parser.add_argument("--limit", type=int, default=None, help="at most K pictures per source split (smoke tests)")


def parser() -> argparse.ArgumentParser:
    from verl_ext.tasks import TASKS

    p = argparse.ArgumentParser(
        description="Build self-supervised visual puzzle datasets (verl parquet) from benchmark images.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--task", required=True, help=f"one of {', '.join(sorted(TASKS))}, or 'mix' (with --tasks)")
    p.add_argument("--tasks", default=None, help="for --task mix: weights, e.g. rotation:0.25,jigsaw:0.25,position:0.5")
    sources = ", ".join(sorted([*SOURCES, *ALIASES]))
    p.add_argument("--source", default=None, help=f"image source ({sources}); guessed from --input when omitted")
    p.add_argument("--input", type=Path, default=None, help="benchmark file or folder (not needed for --source demo)")
    p.add_argument("--output", type=Path, required=True, help="folder for <split>.parquet and manifest.json")
    add_common_arguments(p)
    p.add_argument("--difficulty", choices=DIFFICULTIES, default=None, help="task preset (default: the task's own)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="task knob, repeatable; JSON values (rows=3, angles=[0,180]); task.NAME=VALUE in a mix",
    )
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of val when carving a single split")
    p.add_argument("--carve", action="store_true", help="carve every source split into train/val by content")
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=DEFAULT_MAX_PROMPT_TOKENS,
        help="every prompt (text + images) fits this; match verl's data.max_prompt_length",
    )
    p.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="model folder whose processor counts prompt tokens exactly (default: a safe upper bound)",
    )
    p.add_argument("--puzzles-per-image", type=int, default=1, help="puzzles made from each distinct picture")
    p.add_argument(
        "--image-format",
        choices=("jpeg", "png"),
        default="jpeg",
        help="encoding of puzzle images (JPEG q95 4:2:0; PNG is lossless but ~30x slower)",
    )
    p.add_argument(
        "--control",
        choices=CONTROLS,
        default=None,
        help="a control build for learning experiments: grey = every picture shown is flat grey (same size, same"
        " prompts and answers), so nothing visual can be learned",
    )
    p.add_argument(
        "--order",
        choices=ORDERS,
        default="source",
        help="row order of each split: source (as the pictures came; verl shuffles them), stratified (every run of"
        " consecutive rows holds each answer in its overall share; train with data.shuffle=false to keep it) or"
        " balanced (stratified, after dropping rows until every answer is equally frequent; label tasks)",
    )
    p.add_argument("--strict", action="store_true", help="stop on an error inside a task instead of counting it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    return BuildConfig(
        task=args.task,
        tasks=args.tasks,
        source=args.source,
        input=args.input,
        output=args.output,
        seed=args.seed,
        workers=args.workers,
        limit=args.limit,
        difficulty=args.difficulty,
        val_fraction=args.val_fraction,
        carve=args.carve,
        max_prompt_tokens=args.max_prompt_tokens,
        tokenizer=args.tokenizer,
        puzzles_per_image=args.puzzles_per_image,
        image_format=args.image_format,
        options=tuple(args.option),
        strict=args.strict,
        progress=not args.no_progress,
        control=args.control,
        order=args.order,
    )


def run(config: BuildConfig) -> int:
    """Build, turning configuration and input errors into one readable line and exit status 2."""
    from verl_ext.builder.pipeline import build

    try:
        build(config)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run(config)


def benchmark_main(task: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``build_benchmarks/make<task>_mmbench.py``: MMBench in, ``datasets/ssl/mmbench_<task>`` out."""
    p = argparse.ArgumentParser(
        description=f"Build the {task} puzzle dataset from MMBench (dev -> val, test -> train)."
    )
    p.add_argument(
        "--input",
        type=Path,
        default=Path("datasets/MMBench"),
        help="MMBench HF parquet folder or OpenCompass TSV (default: datasets/MMBench)",
    )
    p.add_argument("--output", type=Path, default=Path(f"datasets/ssl/mmbench_{task}"))
    add_common_arguments(p)
    args = p.parse_args(argv)
    config = BuildConfig(
        task=task,
        source="mmbench",
        input=args.input,
        output=args.output,
        seed=args.seed,
        workers=args.workers,
        limit=args.limit,
    )
    return run(config)
