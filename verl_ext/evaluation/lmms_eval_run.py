"""Downstream benchmarks with lmms-eval 0.7.3: the command line, a run that fails when nothing was scored, and
its results.

The tasks are the project's own variants (``verl_ext/evaluation/lmms_tasks``, passed with ``--include_path``; see
:mod:`verl_ext.evaluation.lmms_questions` for why), mapped from the benchmark names VLMEvalKit uses by
``configs/eval/lmms_eval_ssl.json``.

lmms-eval exits 0 even when it could not load a single task (an unknown task name aborts them all), so
:func:`run` checks what it wrote: a results file, newer than the run's start, that holds every task asked for.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verl_ext.evaluation.downstream import parse_models

TASKS_DIR = Path(__file__).resolve().parent / "lmms_tasks"
PATH_PLACEHOLDER = "MODEL_PATH"


@dataclass(frozen=True)
class TaskResult:
    """One task's scores as lmms-eval wrote them (fractions) and how many documents it scored."""

    metrics: dict[str, float]
    n: int | None


def load_template(path: str | Path) -> dict[str, Any]:
    try:
        template = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the lmms-eval template ({err})") from None
    for key in ("model", "model_args", "tasks"):
        if key not in template:
            raise ValueError(f"{path}: the lmms-eval template has no {key!r}")
    return template


def chosen_tasks(template: Mapping[str, Any], datasets: Sequence[str] | None) -> dict[str, str]:
    """``{benchmark: task}`` for ``datasets`` (all of the template's when none are given)."""
    tasks = template["tasks"]
    chosen = list(datasets or tasks)
    unknown = [d for d in chosen if d not in tasks]
    if unknown:
        raise ValueError(f"benchmarks without an lmms-eval task: {unknown}; known: {list(tasks)}")
    return {d: tasks[d] for d in chosen}


def lmms_eval_args(
    template: Mapping[str, Any], model_path: str, output_path: str, datasets: Sequence[str] | None = None
) -> list[str]:
    """The arguments of ``python -m lmms_eval`` for one checkpoint."""
    args = {**template["model_args"], "pretrained": model_path}
    for key, value in args.items():
        # lmms-eval splits --model_args on commas and '='.
        if "," in str(value) or "=" in str(value):
            raise ValueError(f"lmms-eval model arg {key} must not contain ',' or '=': {value!r}")
    return [
        "--model",
        str(template["model"]),
        "--model_args",
        ",".join(f"{k}={v}" for k, v in args.items()),
        "--tasks",
        ",".join(chosen_tasks(template, datasets).values()),
        "--include_path",
        str(TASKS_DIR),
        "--batch_size",
        "1",
        "--log_samples",
        "--output_path",
        str(output_path),
    ]


def command(
    template: Mapping[str, Any],
    model_path: str,
    output_path: str,
    datasets: Sequence[str] | None = None,
    num_processes: int = 1,
    python: str = "python",
) -> list[str]:
    """The whole command: ``accelerate launch`` over ``num_processes`` GPUs, or plain ``python`` for one."""
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    launcher = [python] if num_processes == 1 else ["accelerate", "launch", "--num_processes", str(num_processes)]
    return [*launcher, "-m", "lmms_eval", *lmms_eval_args(template, model_path, output_path, datasets)]


# ------------------------------------------------------------------------------------------------ results


def results_files(output_path: str | Path, newer_than: float | None = None) -> list[Path]:
    """lmms-eval's ``<output_path>/<model>/<date>_results.json`` files, oldest first."""
    found = [p for p in Path(output_path).rglob("*_results.json") if p.is_file()]
    if newer_than is not None:
        found = [p for p in found if p.stat().st_mtime >= newer_than]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def read_results(path: str | Path) -> dict[str, TaskResult]:
    """``{task: TaskResult}`` of one results file; a group's n is the sum of its tasks'."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(f"{path}: not an lmms-eval results file (no 'results')")
    samples = data.get("n-samples", {})
    subtasks = data.get("group_subtasks", {})

    def count(task: str) -> int | None:
        if task in samples:
            return int(samples[task].get("effective", samples[task].get("original")))
        parts = [count(t) for t in subtasks.get(task, [])]
        return sum(parts) if parts and None not in parts else None

    out = {}
    for task, values in data["results"].items():
        metrics = {}
        for key, value in values.items():
            name, _, filt = key.partition(",")
            if filt == "none" and not name.endswith("_stderr") and isinstance(value, int | float):
                metrics[name] = float(value)
        out[task] = TaskResult(metrics, count(task))
    return out


def latest_results(output_path: str | Path, newer_than: float | None = None) -> dict[str, TaskResult]:
    """Every task's newest result under ``output_path`` (later files win)."""
    merged: dict[str, TaskResult] = {}
    for path in results_files(output_path, newer_than):
        merged.update(read_results(path))
    return merged


# ------------------------------------------------------------------------------------------------ run


def run(
    template: Mapping[str, Any],
    models: Mapping[str, str],
    output_root: str | Path,
    datasets: Sequence[str] | None = None,
    num_processes: int = 1,
) -> int:
    """Run lmms-eval for each ``NAME=PATH`` into ``output_root/NAME``; 1 when a run failed or scored nothing."""
    tasks = chosen_tasks(template, datasets)
    status = 0
    for name, path in models.items():
        out = Path(output_root) / name
        cmd = command(template, path, str(out), datasets, num_processes, python=sys.executable)
        print(f"[lmms-eval] {name}: {shlex.join(cmd)}", flush=True)
        # File times have a coarser clock than time.time() on some file systems: allow one second.
        started = time.time() - 1.0
        code = subprocess.run(cmd, check=False).returncode
        written = latest_results(out, newer_than=started)
        missing = [task for task in tasks.values() if task not in written]
        if code != 0:
            print(f"error: lmms-eval exited with {code} for {name}", file=sys.stderr)
            status = 1
        elif missing:
            # lmms-eval logs an unknown or broken task, skips every task, and still exits 0.
            print(
                f"error: lmms-eval wrote no results for {name}'s tasks {missing} under {out} "
                "(its log above says why; an unknown task name aborts all of them)",
                file=sys.stderr,
            )
            status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl_ext.evaluation.lmms_eval_run", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("command", "print the command for one checkpoint"), ("run", "run and check")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--template", type=Path, required=True)
        p.add_argument("--data", nargs="+", default=None, help="benchmarks (VLMEvalKit names) [all in the template]")
        p.add_argument("--num-processes", type=int, default=1, help="GPUs (accelerate launch when more than 1)")
    sub.choices["command"].add_argument("--model-path", required=True)
    sub.choices["command"].add_argument("--output-path", required=True)
    sub.choices["run"].add_argument("--model", action="append", required=True, help="NAME=PATH (repeatable)")
    sub.choices["run"].add_argument("--output-root", type=Path, required=True, help="results go to OUTPUT_ROOT/NAME")
    args = parser.parse_args(argv)
    try:
        template = load_template(args.template)
        if args.command == "command":
            print(shlex.join(command(template, args.model_path, args.output_path, args.data, args.num_processes)))
            return 0
        return run(template, parse_models(args.model), args.output_root, args.data, args.num_processes)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
