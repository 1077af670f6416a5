"""Downstream benchmarks with VLMEvalKit: configs, prediction files, score files.

The path from a merged checkpoint to a table (``scripts/eval_downstream.sh`` runs it):

1. ``config``: write a VLMEvalKit ``--config`` JSON from ``configs/eval/vlmevalkit_ssl.json`` for one or more
   local checkpoints (``NAME=PATH``), e.g. the base model and the trained one.
2. VLMEvalKit ``--mode infer`` writes ``WORK/<NAME>/<eval_id>/<NAME>_<DATASET>.xlsx``.
3. ``predictions``: list those files (newest per model and dataset); ``verl-ext-extract-answers`` rewrites each
   in place to the chosen letter (:mod:`verl_ext.evaluation.predictions`).
4. VLMEvalKit ``--mode eval --judge exact_matching --reuse --reuse-aux infer`` scores them without a judge model.
   It is started with ``--model NAME … --data … --data-config JSON`` (``data-config`` prints the JSON), not with
   ``--config``: with a config, VLMEvalKit's run.py builds (loads) every model even in eval mode; with model
   names it builds none. ``--reuse-aux infer``: the default (``all``) also copies the previous run's judged
   results, so a changed prediction would keep its old score.
5. ``collect`` (``verl-ext-downstream collect``): the score files (``*_acc.csv``, MME-RealWorld's
   ``*_rating.json``) and extraction reports of every model and dataset → one Markdown/JSON table
   (:mod:`verl_ext.evaluation.downstream_table` joins it with lmms-eval's results).

``vlmevalkit-command`` finds how to start VLMEvalKit, which has no ``python -m vlmeval``: its ``run.py`` in
``$VLMEVALKIT_DIR``, or next to the ``vlmeval`` package of an editable install from a clone.

Score files and their headline figure (VLMEvalKit writes fractions; the table shows percent):

* ``<M>_<D>_acc.csv`` with an ``Overall`` column (MMBench, SEED-Bench, MMStar, RealWorldQA, BLINK): ``Overall``
  (row ``split == dev`` when there are several splits, else the first row); other numeric columns are details.
* HR-Bench: long form ``cycle, type, accuracy``: the row ``cycle == Average, type == all``.
* MMVP: ``Overall`` is pair accuracy (both questions of a pair right), the headline; ``Average`` is per-question
  accuracy. (Older VLMEvalKit releases wrote ``case_accuray``/``question_accuray``, sic; read too.)
* ``<M>_MME-RealWorld-Lite_rating.json``: ``Overall``; ``Perception``/``Reasoning`` ``Avg`` as details.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

DATASETS = (
    "MMBench_DEV_EN",
    "SEEDBench_IMG",
    "MMStar",
    "RealWorldQA",
    "BLINK",
    "MME-RealWorld-Lite",
    "HRBench8K",
    "MMVP",
)
NAME_PLACEHOLDER, PATH_PLACEHOLDER = "MODEL_NAME", "MODEL_PATH"
PREDICTION_SUFFIXES = (".xlsx", ".tsv")


# ------------------------------------------------------------------------------------------------ configs


def parse_models(specs: Sequence[str]) -> dict[str, str]:
    """``["base=/ckpt/a", "trained=/ckpt/b"]`` → ``{"base": "/ckpt/a", ...}`` (names must be file-name safe)."""
    models: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"model must be NAME=PATH, got {spec!r}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"model name {name!r} must be letters, digits, '_', '.' or '-' (it names files)")
        if name in models:
            raise ValueError(f"model name {name!r} given twice")
        models[name] = path
    if not models:
        raise ValueError("give at least one model as NAME=PATH")
    return models


def vlmevalkit_config(
    template: Mapping[str, Any], models: Mapping[str, str], datasets: Sequence[str] | None = None
) -> dict[str, Any]:
    """The template with its placeholder model copied once per ``NAME=PATH`` and the data narrowed to ``datasets``."""
    if set(template) != {"model", "data"}:
        raise ValueError(f"a VLMEvalKit config has exactly the keys model and data, got {sorted(template)}")
    if list(template["model"]) != [NAME_PLACEHOLDER]:
        raise ValueError(f"the template must hold one model named {NAME_PLACEHOLDER}")
    base = template["model"][NAME_PLACEHOLDER]
    out_models = {}
    for name, path in models.items():
        entry = copy.deepcopy(base)
        entry["model_path"] = str(path)
        out_models[name] = entry
    data = template["data"]
    if datasets:
        unknown = [d for d in datasets if d not in data]
        if unknown:
            raise ValueError(f"datasets not in the template: {unknown}; known: {list(data)}")
        data = {d: data[d] for d in datasets}
    return {"model": out_models, "data": copy.deepcopy(dict(data))}


def data_config(template: Mapping[str, Any], datasets: Sequence[str] | None = None) -> dict[str, Any]:
    """The template's ``data`` entries (narrowed to ``datasets``), for VLMEvalKit's ``--data-config``."""
    data = template["data"]
    chosen = list(datasets or data)
    unknown = [d for d in chosen if d not in data]
    if unknown:
        raise ValueError(f"datasets not in the template: {unknown}; known: {list(data)}")
    return {d: copy.deepcopy(data[d]) for d in chosen}


def vlmevalkit_command(python: str = "python") -> str:
    """How to start VLMEvalKit: ``python RUN_PY`` for the clone in ``$VLMEVALKIT_DIR`` or the clone an editable
    install of ``vlmeval`` points to. VLMEvalKit has no ``__main__`` module, so ``python -m vlmeval`` fails."""
    where = os.environ.get("VLMEVALKIT_DIR")
    if where:
        run_py = Path(where) / "run.py"
        if not run_py.is_file():
            raise ValueError(f"VLMEVALKIT_DIR={where} has no run.py; point it at a VLMEvalKit clone")
        return f"{python} {run_py.resolve()}"
    spec = importlib.util.find_spec("vlmeval")
    if spec is not None and spec.origin:
        run_py = Path(spec.origin).resolve().parent.parent / "run.py"
        if run_py.is_file():
            return f"{python} {run_py}"
    raise ValueError(
        "cannot find VLMEvalKit's run.py: clone https://github.com/open-compass/VLMEvalKit, pip install -e it, and "
        "set VLMEVALKIT_DIR to the clone (or VLMEVAL to the whole command, e.g. 'torchrun --nproc-per-node=8 run.py')"
    )


# ------------------------------------------------------------------------------------------------ files


def _newest(paths: Iterable[Path]) -> Path | None:
    unique = {p.resolve(): p for p in paths if p.exists()}
    return max(unique.values(), key=lambda p: p.stat().st_mtime) if unique else None


def find_predictions(work_dir: str | Path, model: str, datasets: Sequence[str] = DATASETS) -> dict[str, Path]:
    """The newest ``<model>_<dataset>.{xlsx,tsv}`` prediction file of each dataset under ``work_dir/<model>``."""
    root = Path(work_dir) / model
    found = {}
    for dataset in datasets:
        candidates = [p for suffix in PREDICTION_SUFFIXES for p in root.rglob(f"{model}_{dataset}{suffix}")]
        newest = _newest(candidates)
        if newest is not None:
            found[dataset] = newest
    return found


def find_extraction_report(work_dir: str | Path, model: str, dataset: str) -> Path | None:
    """The newest extraction report (``<prediction file>_extraction.json``) of ``model`` on ``dataset``."""
    return _newest((Path(work_dir) / model).rglob(f"{model}_{dataset}_extraction.json"))


def find_score_file(work_dir: str | Path, model: str, dataset: str) -> Path | None:
    """The newest score file of ``model`` on ``dataset`` (``_acc.csv``, else ``_rating.json``)."""
    root = Path(work_dir) / model
    for pattern in (f"{model}_{dataset}_acc.csv", f"{model}_{dataset}_rating.json"):
        newest = _newest(root.rglob(pattern))
        if newest is not None:
            return newest
    return None


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def parse_score_file(path: str | Path, dataset: str | None = None) -> tuple[float, dict[str, float]]:
    """``(headline, details)`` of one VLMEvalKit score file, as fractions (see the module docstring)."""
    path = Path(path)
    if path.suffix == ".json":
        rating = json.loads(path.read_text())
        if not isinstance(rating, dict) or not _is_number(rating.get("Overall")):
            raise ValueError(f"{path}: no numeric 'Overall' in this rating file")
        details = {k: float(v["Avg"]) for k, v in rating.items() if isinstance(v, dict) and _is_number(v.get("Avg"))}
        return float(rating["Overall"]), details
    df = pd.read_csv(path)
    if dataset == "MMVP" and {"Overall", "Average"} <= set(df.columns):
        row = df.iloc[0]
        return float(row["Overall"]), {"question accuracy": float(row["Average"])}
    if {"cycle", "type", "accuracy"} <= set(df.columns):  # HR-Bench
        avg = df[df["cycle"].astype(str) == "Average"]
        overall = avg[avg["type"].astype(str) == "all"]
        if overall.empty:
            raise ValueError(f"{path}: no 'Average'/'all' row")
        details = {str(t): float(a) for t, a in zip(avg["type"], avg["accuracy"]) if str(t) != "all"}
        return float(overall["accuracy"].iloc[0]), details
    if "case_accuray" in df.columns or "question_accuray" in df.columns:  # MMVP (VLMEvalKit's spelling)
        row = df.iloc[0]
        details = {k: float(row[k]) for k in ("case_accuray", "question_accuray") if k in df.columns}
        return details.get("case_accuray", details.get("question_accuray")), details  # older VLMEvalKit
    if "Overall" in df.columns:
        row = df.iloc[0]
        if "split" in df.columns and len(df) > 1:
            dev = df[df["split"].astype(str).isin(["dev", "none", "ALL"])]
            row = dev.iloc[0] if not dev.empty else row
        details = {str(k): float(v) for k, v in row.items() if k not in ("Overall", "split") and _is_number(v)}
        return float(row["Overall"]), details
    raise ValueError(f"{path}: unknown score file layout (columns {list(df.columns)})")


def _extraction_counts(work_dir: str | Path, model: str, dataset: str) -> dict[str, Any]:
    """``n`` (rows) and ``no_answer`` (share without a readable answer) from the extraction report, if any."""
    path = find_extraction_report(work_dir, model, dataset)
    if path is None:
        return {"n": None, "no_answer": None}
    report = json.loads(path.read_text())
    rows = int(report["rows"])
    return {"n": rows, "no_answer": report["unanswered"] / rows if rows else None}


def _as_percent(values: Sequence[float]) -> float:
    """VLMEvalKit reports fractions; a file with values above 1 already holds percent."""
    return 1.0 if any(v > 1.0 for v in values) else 100.0


def collect_results(work_dir: str | Path, models: Sequence[str], datasets: Sequence[str] = DATASETS) -> dict[str, Any]:
    """One table: ``results[dataset][model] = {"score": percent, "details": {...}, "file": ...}`` or a reason."""
    results: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for dataset in datasets:
        for model in models:
            path = find_score_file(work_dir, model, dataset)
            if path is None:
                missing.append(f"{model}/{dataset}")
                results.setdefault(dataset, {})[model] = None
                continue
            try:
                headline, details = parse_score_file(path, dataset)
            except (ValueError, KeyError, OSError, pd.errors.ParserError) as err:
                results.setdefault(dataset, {})[model] = {"error": str(err), "file": str(path)}
                continue
            scale = _as_percent([headline, *details.values()])
            results.setdefault(dataset, {})[model] = {
                "score": headline * scale,
                "details": {k: v * scale for k, v in details.items()},
                "file": str(path.relative_to(work_dir)) if path.is_relative_to(work_dir) else str(path),
                **_extraction_counts(work_dir, model, dataset),
            }
    averages = {}
    for model in models:
        entries = [results[d].get(model) for d in datasets]
        scores = [e["score"] for e in entries if e and "score" in e]
        averages[model] = {"mean": sum(scores) / len(scores) if scores else None, "datasets": len(scores)}
    return {
        "models": list(models),
        "datasets": list(datasets),
        "results": results,
        "average": averages,
        "missing": missing,
    }


def results_markdown(table: Mapping[str, Any]) -> str:
    models = table["models"]
    head = ["benchmark", *models]
    if len(models) > 1:
        head += [f"Δ ({m})" for m in models[1:]]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for dataset in table["datasets"]:
        entries = [table["results"][dataset].get(m) for m in models]
        scores = [e.get("score") if e else None for e in entries]
        cells = [dataset]
        for e, s in zip(entries, scores):
            cells.append(f"{s:.2f}" if s is not None else ("error" if e and "error" in e else "–"))
        if len(models) > 1:
            cells += [f"{s - scores[0]:+.2f}" if s is not None and scores[0] is not None else "–" for s in scores[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    means = [table["average"][m]["mean"] for m in models]
    avg = ["**mean**", *[f"{v:.2f}" if v is not None else "–" for v in means]]
    if len(models) > 1:
        avg += [f"{v - means[0]:+.2f}" if v is not None and means[0] is not None else "–" for v in means[1:]]
    lines.append("| " + " | ".join(avg) + " |")
    notes = [
        "",
        "Scores in percent (VLMEvalKit, exact matching after answer extraction). "
        "MMBench uses circular evaluation; MMVP shows pair accuracy; the mean is over the benchmarks a model has.",
    ]
    if table["missing"]:
        notes.append(f"No score file for: {', '.join(table['missing'])}.")
    errors = [
        f"{m}/{d}: {e['error']}" for d, row in table["results"].items() for m, e in row.items() if e and "error" in e
    ]
    if errors:
        notes.append("Unreadable score files: " + "; ".join(errors))
    return "\n".join(lines + notes) + "\n"


# ------------------------------------------------------------------------------------------------ CLI


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read JSON ({err})") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_ext.evaluation.downstream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cfg = sub.add_parser("config", help="VLMEvalKit config for NAME=PATH checkpoints")
    cfg.add_argument("--template", type=Path, required=True)
    cfg.add_argument("--model", action="append", required=True, help="NAME=PATH (repeatable)")
    cfg.add_argument("--data", nargs="+", default=None)
    cfg.add_argument("--out", type=Path, required=True)
    pred = sub.add_parser("predictions", help="print the newest prediction file of each model and dataset")
    pred.add_argument("--work-dir", type=Path, required=True)
    pred.add_argument("--model", action="append", required=True, help="model name (repeatable)")
    pred.add_argument("--data", nargs="+", default=list(DATASETS))
    col = sub.add_parser("collect", help="results table from VLMEvalKit score files")
    col.add_argument("--work-dir", type=Path, required=True)
    col.add_argument("--model", action="append", required=True, help="model name (repeatable; first = baseline)")
    col.add_argument("--data", nargs="+", default=list(DATASETS))
    col.add_argument("--out", type=Path, required=True, help="folder for results.json and results.md")
    dcfg = sub.add_parser("data-config", help="the template's data entries as one JSON line (--data-config)")
    dcfg.add_argument("--template", type=Path, required=True)
    dcfg.add_argument("--data", nargs="+", default=None)
    sub.add_parser("vlmevalkit-command", help="print how to start VLMEvalKit's run.py")
    args = parser.parse_args(argv)
    try:
        if args.command == "config":
            config = vlmevalkit_config(_load_json(args.template), parse_models(args.model), args.data)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(config, indent=2) + "\n")
            print(args.out)
        elif args.command == "predictions":
            for model in args.model:
                found = find_predictions(args.work_dir, model, args.data)
                for dataset in args.data:
                    if dataset in found:
                        print(found[dataset])
                    else:
                        print(f"warning: no prediction file for {model}/{dataset}", file=sys.stderr)
        elif args.command == "collect":
            table = collect_results(args.work_dir, args.model, args.data)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "results.json").write_text(json.dumps(table, indent=2) + "\n")
            md = results_markdown(table)
            (args.out / "results.md").write_text(md)
            print(md)
        elif args.command == "data-config":
            print(json.dumps(data_config(_load_json(args.template), args.data)))
        else:
            print(vlmevalkit_command())
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
