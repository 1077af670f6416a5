"""A training run's per-step figures from verl's file logger, and the two summaries people ask of them.

verl's ``file`` logger (``trainer.logger`` includes ``file``) appends one JSON line per step to
``$VERL_FILE_LOGGER_PATH``: ``{"step": N, "data": {metric: value, ...}}``. From it:

* ``times``: verl's per-phase timers (``timing_s/<phase>``) of every step and their median over the steady-state
  steps (step >= 2: step 1 also pays vLLM's first batch and the optimizer's state allocation);
* ``curve``: score, format, answered and accuracy per step, and whether the run learned: the mean over the last
  third of the steps against the first third;
* ``heldout``: validation accuracy (verl's greedy pass over the val split) at every evaluated step, first against
  last, next to the two bars a learner must beat: chance and always giving the split's most common answer. With
  ``--val-data`` it gives the last figure a 95% Wilson interval over the held-out count and a verdict: *learned*
  when the interval's lower bound is above the most-common-answer bar.

    python -m verl_ext.evaluation.run_log times outputs/demo/metrics.jsonl
    python -m verl_ext.evaluation.run_log curve outputs/demo/metrics.jsonl --min-gain 0.1 --min-format 0.9
    python -m verl_ext.evaluation.run_log heldout outputs/bench_learning/metrics.jsonl --val-data VAL.parquet
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Series = tuple[np.ndarray, np.ndarray]  # steps, values (sorted by step)

# verl's timer names in the order a step runs them; other timing_s/* keys are listed after these.
PHASES = ("gen", "reward", "old_log_prob", "ref", "values", "adv", "update_critic", "update_actor", "update_weights")
SCORE = "critic/score/mean"
TASK_KEYS = ("format", "answered", "acc")  # per task: train/<data_source>/<key>, shown next to the score
STEADY_FROM = 2


def load_jsonl_scalars(path: str | Path) -> dict[str, Series]:
    """Every numeric metric of a ``metrics.jsonl`` as a series; a repeated step (a resumed run) keeps its last value."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metrics file (the run's VERL_FILE_LOGGER_PATH)")
    points: dict[str, dict[int, float]] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step, data = int(record["step"]), record["data"]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: not a verl file-logger line ({error})") from None
            for key, value in data.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    points.setdefault(key, {})[step] = float(value)
    if not points:
        raise ValueError(f"{path}: holds no metrics")
    return {
        key: (np.array(sorted(by_step), dtype=float), np.array([by_step[s] for s in sorted(by_step)], dtype=float))
        for key, by_step in points.items()
    }


def phase_names(scalars: Mapping[str, Series]) -> list[str]:
    """The ``timing_s`` phases present, in step order, ``step`` (the whole step) last."""
    present = {key.removeprefix("timing_s/") for key in scalars if key.startswith("timing_s/")}
    ordered = [phase for phase in PHASES if phase in present]
    ordered += sorted(present - set(ordered) - {"step"})
    return ordered + (["step"] if "step" in present else [])


def steady_medians(scalars: Mapping[str, Series], first: int = STEADY_FROM) -> dict[str, float]:
    """Median seconds per phase over steps >= ``first``; empty when the run has no such step."""
    medians = {}
    for phase in phase_names(scalars):
        steps, values = scalars[f"timing_s/{phase}"]
        kept = values[steps >= first]
        if len(kept):
            medians[phase] = float(statistics.median(kept))
    return medians


def times_table(scalars: Mapping[str, Series]) -> str:
    """A text table: one row per step, one column per phase, and the steady-state median row."""
    phases = phase_names(scalars)
    if not phases:
        raise ValueError("the log has no timing_s/* metrics (did the run finish a step?)")
    steps = sorted({int(s) for phase in phases for s in scalars[f"timing_s/{phase}"][0]})
    width = max(8, *(len(p) for p in phases))
    lines = ["step  " + "".join(f"{p:>{width + 1}}" for p in phases)]
    for step in steps:
        values = (value_at(scalars[f"timing_s/{phase}"], step) for phase in phases)
        cells = (" " * width + "-" if v is None else f"{v:>{width + 1}.2f}" for v in values)
        lines.append(f"{step:>4}  " + "".join(cells))
    medians = steady_medians(scalars)
    if medians:
        label = f"median of steps >= {STEADY_FROM}"
        lines.append(label)
        lines.append(" " * 6 + "".join(f"{medians.get(p, math.nan):>{width + 1}.2f}" for p in phases))
    return "\n".join(lines)


@dataclass(frozen=True)
class Learning:
    """First third against last third of a run's steps."""

    steps: int
    score_first: float
    score_last: float
    format_last: float | None  # None when no per-task format figure was logged

    @property
    def gain(self) -> float:
        return self.score_last - self.score_first


def value_at(series: Series | None, step: float) -> float | None:
    """The value a series logged at ``step``; None when it has none there."""
    if series is None:
        return None
    hit = series[1][series[0] == step]
    return float(hit[0]) if len(hit) else None


def _thirds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    third = max(1, len(values) // 3)
    return values[:third], values[-third:]


def task_sources(scalars: Mapping[str, Series]) -> list[str]:
    """Data sources with per-task training figures (``train/<source>/score``)."""
    return sorted({key.split("/")[1] for key in scalars if key.startswith("train/") and key.endswith("/score")})


def learning(scalars: Mapping[str, Series]) -> Learning:
    """Score gain and late format rate; the format rate is the mean over tasks of ``train/<source>/format``."""
    if SCORE not in scalars:
        raise ValueError(f"the log has no {SCORE} (did the run finish a step?)")
    steps, scores = scalars[SCORE]
    first, last = _thirds(scores)
    formats = [scalars[f"train/{s}/format"][1] for s in task_sources(scalars) if f"train/{s}/format" in scalars]
    format_last = float(np.mean([_thirds(values)[1].mean() for values in formats])) if formats else None
    return Learning(len(steps), float(first.mean()), float(last.mean()), format_last)


def curve_table(scalars: Mapping[str, Series]) -> str:
    """Per step: mean score (min..max) and, per task, format / answered / accuracy."""
    steps, scores = scalars[SCORE]
    sources = task_sources(scalars)
    lines = []
    for step, score in zip(steps, scores):
        low, high = value_at(scalars.get("critic/score/min"), step), value_at(scalars.get("critic/score/max"), step)
        band = "" if low is None or high is None else f" ({low:.2f}..{high:.2f})"
        parts = [f"step {int(step):>3}: score {score:.3f}{band}"]
        for source in sources:
            figures = [(key, value_at(scalars.get(f"train/{source}/{key}"), step)) for key in TASK_KEYS]
            shown = " ".join(f"{key} {value:.2f}" for key, value in figures if value is not None)
            if shown:
                parts.append(f"{source}: {shown}")
        seconds = value_at(scalars.get("timing_s/step"), step)
        if seconds is not None:
            parts.append(f"{seconds:.1f} s")
        lines.append(", ".join(parts))
    return "\n".join(lines)


def validation_series(scalars: Mapping[str, Series], section: str, key: str) -> dict[str, Series]:
    """``<section>/<source>/<key>/mean@N`` per data source, with the largest N logged (the headline figure)."""
    pattern = re.compile(rf"{re.escape(section)}/(.+)/{re.escape(key)}/mean@(\d+)")
    best: dict[str, tuple[int, Series]] = {}
    for name, series in scalars.items():
        match = pattern.fullmatch(name)
        if match and (match.group(1) not in best or int(match.group(2)) > best[match.group(1)][0]):
            best[match.group(1)] = (int(match.group(2)), series)
    return {source: series for source, (_, series) in sorted(best.items())}


def answer_baselines(val_parquet: str | Path) -> tuple[float, float]:
    """(chance, most-common-answer rate) of a label-task split: what guessing and a constant answer score."""
    import pyarrow.parquet as pq

    from verl_ext.tasks import get_task
    from verl_ext.tasks.base import PuzzleParams

    rows = pq.read_table(val_parquet, columns=["reward_model", "extra_info"]).to_pylist()
    if not rows:
        raise ValueError(f"{val_parquet}: no rows")
    truths = [row["reward_model"]["ground_truth"] for row in rows]
    chance = []
    for row in rows:
        task = get_task(row["extra_info"]["task"])
        if task.answer_kind != "label":
            raise ValueError(f"{val_parquet}: task {task.name!r} has no label set; baselines need a label task")
        chance.append(1 / len(task.labels(PuzzleParams(row["extra_info"]["params"]))))
    return float(np.mean(chance)), Counter(truths).most_common(1)[0][1] / len(truths)


def _main_times(args: argparse.Namespace) -> int:
    print(times_table(load_jsonl_scalars(args.metrics)))
    return 0


def _main_curve(args: argparse.Namespace) -> int:
    scalars = load_jsonl_scalars(args.metrics)
    print(curve_table(scalars))
    result = learning(scalars)
    third = max(1, result.steps // 3)
    fmt = "n/a" if result.format_last is None else f"{result.format_last:.3f}"
    print(
        f"score: first {third} steps {result.score_first:.3f}, last {third} steps {result.score_last:.3f}"
        f" (gain {result.gain:+.3f}); format rate over the last {third} steps: {fmt}"
    )
    failed = []
    if args.min_gain is not None and result.gain < args.min_gain:
        failed.append(f"score gain {result.gain:+.3f} < {args.min_gain}")
    if args.min_format is not None and (result.format_last is None or result.format_last < args.min_format):
        failed.append(f"late format rate {fmt} < {args.min_format}")
    if failed:
        print("not learned: " + "; ".join(failed))
        return 1
    return 0


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a proportion ``successes / n``.

    Unlike the normal approximation it stays inside [0, 1] and keeps a sensible width at 0 or n successes,
    which is where a held-out score of a few dozen puzzles often sits.
    """
    if n <= 0:
        raise ValueError("an interval needs at least one trial")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class HeldoutVerdict:
    """The last held-out accuracy of one task against the bars."""

    accuracy: float
    n: int
    low: float
    high: float
    chance: float
    majority: float

    @property
    def learned(self) -> bool:
        """The interval lies wholly above what always giving the most common answer scores."""
        return self.low > self.majority


def heldout_verdict(accuracy: float, val_parquet: str | Path) -> HeldoutVerdict:
    """Judge a held-out accuracy measured on the rows of ``val_parquet`` (all of them, one greedy answer each)."""
    import pyarrow.parquet as pq

    n = pq.read_metadata(val_parquet).num_rows
    chance, majority = answer_baselines(val_parquet)
    low, high = wilson_interval(round(accuracy * n), n)
    return HeldoutVerdict(accuracy, n, low, high, chance, majority)


def _main_heldout(args: argparse.Namespace) -> int:
    per_source = validation_series(load_jsonl_scalars(args.metrics), "val-core", "acc")
    if not per_source:
        raise ValueError(f"{args.metrics}: no val-core/<task>/acc/mean@N (did the run validate?)")
    if args.expect and not args.val_data:
        raise ValueError("--expect needs --val-data (the bars come from the val split)")
    if len(per_source) > 1 and args.val_data:
        raise ValueError("--val-data judges a single-task run; this log validates several tasks")
    status = 0
    for source, (steps, values) in per_source.items():
        points = ", ".join(f"step {int(s)}: {v:.3f}" for s, v in zip(steps, values))
        print(f"{source} held-out accuracy: {points}")
        print(f"  first {values[0]:.3f} (step {int(steps[0])}) -> last {values[-1]:.3f} (step {int(steps[-1])})")
        if not args.val_data:
            continue
        verdict = heldout_verdict(float(values[-1]), args.val_data)
        print(f"  bars: chance {verdict.chance:.3f}; always the most common answer {verdict.majority:.3f}")
        print(
            f"  last: {verdict.accuracy:.3f} on {verdict.n} held-out puzzles, 95% interval"
            f" [{verdict.low:.3f}, {verdict.high:.3f}]: "
            + ("learned (the interval is above the most-common-answer bar)" if verdict.learned else "not learned")
        )
        if args.expect == "learned" and not verdict.learned:
            status = 1
        if args.expect == "baseline" and verdict.accuracy > verdict.majority + args.margin:
            print(f"  the control rose above the bar by more than {args.margin}: the answer leaks without pixels")
            status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_ext.evaluation.run_log",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    times = sub.add_parser("times", help="per-phase seconds of every step and the steady-state median")
    times.add_argument("metrics", type=Path, help="metrics.jsonl of verl's file logger")
    times.set_defaults(run=_main_times)
    curve = sub.add_parser("curve", help="per-step score and task figures; first third vs last third")
    curve.add_argument("metrics", type=Path, help="metrics.jsonl of verl's file logger")
    curve.add_argument("--min-gain", type=float, help="exit 1 when the score gain is below this")
    curve.add_argument("--min-format", type=float, help="exit 1 when the late format rate is below this")
    curve.set_defaults(run=_main_curve)
    held = sub.add_parser("heldout", help="validation accuracy per evaluated step against chance")
    held.add_argument("metrics", type=Path, help="metrics.jsonl of verl's file logger")
    held.add_argument("--val-data", type=Path, help="the val split's parquet, for the chance and constant-answer bars")
    held.add_argument(
        "--expect",
        choices=("learned", "baseline"),
        help="exit 1 unless the last figure is learned, or (baseline: a control) stays within --margin of the"
        " most-common-answer bar",
    )
    held.add_argument(
        "--margin", type=float, default=0.05, help="what a control may exceed the bar by (--expect baseline)"
    )
    held.set_defaults(run=_main_heldout)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
