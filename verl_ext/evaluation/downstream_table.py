"""One table of downstream results from both tools: VLMEvalKit (``scripts/eval_downstream.sh``) and lmms-eval
(``scripts/eval_lmms.sh``), for a base and a trained checkpoint (or more).

Each row is one (tool, benchmark): the headline metric, how many rows were scored (``n``) and, per model, the
score in percent and the share of rows whose response had no readable answer (VLMEvalKit: the extraction
report; lmms-eval: ``1 - answered``). A score without its no-answer share hides the most common failure of a
reasoning model on a benchmark: an answer cut off by the length limit, or not in the asked format.

    verl-ext-downstream-table --model base --model trained --vlmevalkit outputs/downstream \\
        --lmms-eval outputs/lmms --out outputs/downstream_table
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from verl_ext.evaluation.downstream import DATASETS, collect_results
from verl_ext.evaluation.lmms_eval_run import chosen_tasks, latest_results, load_template

# What VLMEvalKit's headline figure is, per benchmark (downstream.parse_score_file picks it).
VLMEVALKIT_METRICS = {
    "MMBench_DEV_EN": "circular accuracy",
    "MMVP": "pair accuracy",
    "HRBench8K": "accuracy (cycle average)",
    "MME-RealWorld-Lite": "overall accuracy",
}
# lmms-eval task variants: grouped_acc scores rows together (verl_ext.evaluation.lmms_questions).
LMMS_METRICS = {("MMBench_DEV_EN", "grouped_acc"): "circular accuracy", ("MMVP", "grouped_acc"): "pair accuracy"}


def _entry(score: float | None, n: int | None, no_answer: float | None) -> dict[str, Any]:
    return {"score": score, "n": n, "no_answer": no_answer}


def vlmevalkit_rows(work_dir: str | Path, models: Sequence[str], datasets: Sequence[str]) -> list[dict[str, Any]]:
    table = collect_results(work_dir, models, datasets)
    rows = []
    for dataset in datasets:
        per_model = {}
        for model in models:
            found = table["results"][dataset].get(model) or {}
            per_model[model] = _entry(found.get("score"), found.get("n"), found.get("no_answer"))
        rows.append(
            {
                "tool": "VLMEvalKit",
                "benchmark": dataset,
                "metric": VLMEVALKIT_METRICS.get(dataset, "accuracy"),
                "models": per_model,
            }
        )
    return rows


def lmms_eval_rows(
    output_root: str | Path, template: Mapping[str, Any], models: Sequence[str], datasets: Sequence[str]
) -> list[dict[str, Any]]:
    tasks = chosen_tasks(template, datasets)
    results = {model: latest_results(Path(output_root) / model) for model in models}
    rows = []
    for dataset, task in tasks.items():
        metric = template.get("headline", {}).get(dataset, "acc")
        per_model = {}
        for model in models:
            found = results[model].get(task)
            if found is None:
                per_model[model] = _entry(None, None, None)
                continue
            score = found.metrics.get(metric)
            answered = found.metrics.get("answered")
            per_model[model] = _entry(
                None if score is None else 100.0 * score, found.n, None if answered is None else 1.0 - answered
            )
        rows.append(
            {
                "tool": "lmms-eval",
                "benchmark": dataset,
                "metric": LMMS_METRICS.get((dataset, metric), "accuracy"),
                "models": per_model,
            }
        )
    return rows


def _n_cell(entries: Sequence[Mapping[str, Any]]) -> str:
    counts = [e["n"] for e in entries]
    if all(c is None for c in counts):
        return "–"
    if len(set(counts)) == 1:
        return str(counts[0])
    return "/".join("–" if c is None else str(c) for c in counts)  # the models did not score the same rows


def markdown(rows: Sequence[Mapping[str, Any]], models: Sequence[str]) -> str:
    head = ["tool", "benchmark", "metric", "n"]
    for model in models:
        head += [model, f"{model} no answer"]
    head += [f"Δ {m}" for m in models[1:]]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * (len(head) - 3)]
    for row in rows:
        entries = [row["models"][m] for m in models]
        cells = [row["tool"], row["benchmark"], row["metric"], _n_cell(entries)]
        for e in entries:
            cells.append("–" if e["score"] is None else f"{e['score']:.2f}")
            cells.append("–" if e["no_answer"] is None else f"{100 * e['no_answer']:.1f}%")
        base = entries[0]["score"]
        for e in entries[1:]:
            cells.append("–" if e["score"] is None or base is None else f"{e['score'] - base:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Scores in percent; 'no answer' is the share of rows whose response had no readable answer (scored wrong); "
        f"Δ is against {models[0]}. n is the number of rows scored (one value per model where they differ); "
        "'–' marks a result that is missing.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verl-ext-downstream-table", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", required=True, help="model name (repeatable; first = baseline)")
    parser.add_argument("--vlmevalkit", type=Path, help="WORK_DIR of scripts/eval_downstream.sh")
    parser.add_argument("--lmms-eval", type=Path, help="OUT_DIR of scripts/eval_lmms.sh (results in OUT_DIR/NAME)")
    parser.add_argument(
        "--lmms-template",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "configs" / "eval" / "lmms_eval_ssl.json",
        help="the template the lmms-eval runs used [configs/eval/lmms_eval_ssl.json]",
    )
    parser.add_argument("--data", nargs="+", default=list(DATASETS), help="benchmarks (VLMEvalKit names)")
    parser.add_argument("--out", type=Path, required=True, help="folder for table.json and table.md")
    args = parser.parse_args(argv)
    if args.vlmevalkit is None and args.lmms_eval is None:
        parser.error("give --vlmevalkit, --lmms-eval or both")
    try:
        rows = []
        if args.vlmevalkit is not None:
            rows += vlmevalkit_rows(args.vlmevalkit, args.model, args.data)
        if args.lmms_eval is not None:
            rows += lmms_eval_rows(args.lmms_eval, load_template(args.lmms_template), args.model, args.data)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.json").write_text(json.dumps({"models": args.model, "rows": rows}, indent=2) + "\n")
    text = markdown(rows, args.model)
    (args.out / "table.md").write_text(text)
    print(text)
    missing = sum(e["score"] is None for row in rows for e in row["models"].values())
    if missing:
        print(f"warning: {missing} result(s) missing (marked '–')", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
