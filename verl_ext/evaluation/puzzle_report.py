"""Per-task puzzle accuracy from verl's validation dump, as JSON and Markdown; two models side by side.

Input: the jsonl files verl writes to ``trainer.validation_data_dir`` (one line per response with ``input``,
``output``, ``gts``, ``score``, ``step`` and every key the reward returned: ``acc``, ``format``, ``partial``,
``answered`` from :mod:`verl_ext.reward`, plus ``eval_row`` from :mod:`verl_ext.evaluation.eval_reward`) and the
row descriptions of :mod:`verl_ext.evaluation.puzzle_eval` (``eval_rows.jsonl``, or built on the fly from the
parquet files). Each response is joined to its row by ``eval_row``; dumps without it (e.g. the validation
dumps of a training run) are matched by prompt text, which identifies the task whenever tasks' prompts differ.

Commands::

    python -m verl_ext.evaluation.puzzle_report report --generations DUMP_DIR \
        (--rows eval_rows.jsonl | --data F.parquet...) --out DIR \
        [--label NAME] [--tokenizer MODEL_DIR] [--group-by task,difficulty] [--step N]
    python -m verl_ext.evaluation.puzzle_report compare A/puzzle_report.json B/puzzle_report.json --out DIR

``report`` writes ``DIR/puzzle_report.{json,md}``; ``compare`` writes ``DIR/comparison.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_ext.evaluation.eval_reward import ROW_KEY
from verl_ext.evaluation.puzzle_eval import prepare_rows_from_files, read_rows, squeeze
from verl_ext.reward import finite_number

# Reward keys averaged per group, in table order; a key the dump lacks is reported as missing (None).
RATE_KEYS = ("acc", "partial", "format", "answered", "score")
REPORT_JSON = "puzzle_report.json"
REPORT_MD = "puzzle_report.md"
UNKNOWN = "(unknown)"


@dataclass
class Sample:
    """One scored response joined to its row."""

    row: int | None  # eval_row, None when unmatched
    group: tuple[str, ...]
    values: dict[str, float]
    response_chars: int
    response_tokens: int | None


@dataclass
class GroupStats:
    key: tuple[str, ...]
    expected_rows: int = 0
    rows_seen: set[int] = field(default_factory=set)
    text_matched: int = 0  # responses placed here by prompt text: their rows are unknown
    samples: list[Sample] = field(default_factory=list)

    def to_dict(self, group_by: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = dict(zip(group_by, self.key))
        out.update(summarise_samples(self.samples))
        out["rows"] = len(self.rows_seen)
        out["expected_rows"] = self.expected_rows
        # Responses matched by text stand for rows we cannot name; count them as present (one response per row).
        out["missing_rows"] = max(self.expected_rows - len(self.rows_seen) - self.text_matched, 0)
        return out


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def summarise_samples(samples: Sequence[Sample]) -> dict[str, Any]:
    """Means of the reward keys and response lengths of ``samples`` (``n`` = number of responses)."""
    out: dict[str, Any] = {"n": len(samples)}
    for key in RATE_KEYS:
        out[key] = _mean(s.values.get(key) for s in samples)
    out["response_chars"] = _mean(s.response_chars for s in samples)
    out["response_tokens"] = _mean(s.response_tokens for s in samples)
    return out


def load_generations(path: str | Path, step: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """The responses of one validation pass: ``path`` is a jsonl file or verl's dump folder (``<step>.jsonl``).

    In a folder the pass of ``step`` is used, by default the latest. Returns the lines and the step.
    """
    path = Path(path)
    if path.is_dir():
        files = {}
        for f in path.glob("*.jsonl"):
            try:
                files[int(f.stem)] = f
            except ValueError:
                continue
        if not files:
            raise FileNotFoundError(f"{path}: no <step>.jsonl validation dumps in this folder")
        chosen = max(files) if step is None else step
        if chosen not in files:
            raise FileNotFoundError(f"{path}: no dump of step {chosen}; steps present: {sorted(files)}")
        path, step = files[chosen], chosen
    elif not path.is_file():
        raise FileNotFoundError(f"{path}: no such validation dump")
    lines = []
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                lines.append(json.loads(line))
            except ValueError as err:
                raise ValueError(f"{path}:{n}: not a JSON line ({err})") from None
    if step is None and lines and isinstance(lines[0].get("step"), int):
        step = lines[0]["step"]
    return lines, step


class RowMatcher:
    """Finds the row of a dumped response: by ``eval_row`` when present, else by the prompt text."""

    def __init__(self, rows: Sequence[Mapping[str, Any]]):
        self.rows = rows
        by_text: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            if row.get("prompt_text"):
                by_text[row["prompt_text"]].add(row["task"])
        self._texts = sorted(by_text.items(), key=lambda kv: -len(kv[0]))  # longest (most specific) first

    def row_of(self, generation: Mapping[str, Any]) -> int | None:
        number = finite_number(generation.get(ROW_KEY))
        if number is not None and number >= 0:
            index = int(number)
            if index < len(self.rows):
                return index
        return None

    def task_by_text(self, generation: Mapping[str, Any]) -> str | None:
        text = squeeze(str(generation.get("input", "")))
        tasks = {task for prompt, found in self._texts if prompt in text for task in found}
        return next(iter(tasks)) if len(tasks) == 1 else None


def build_report(
    generations: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    *,
    group_by: Sequence[str] = ("task",),
    count_tokens: Callable[[str], int] | None = None,
    label: str = "",
    step: int | None = None,
) -> dict[str, Any]:
    """The report dict: per-group rows, overall (per response) and macro (mean over groups) figures, coverage."""
    if not group_by:
        raise ValueError("group_by needs at least one field (e.g. task)")
    matcher = RowMatcher(rows)
    groups: dict[tuple[str, ...], GroupStats] = {}

    def group_of(key: tuple[str, ...]) -> GroupStats:
        return groups.setdefault(key, GroupStats(key))

    for row in rows:
        group_of(tuple(str(row.get(g, "")) for g in group_by)).expected_rows += 1

    unmatched = 0
    matched_by_text = 0
    # A joined response whose dumped ground truth differs from its row's means the join is wrong: counted, shown.
    truth_mismatch = 0
    reward_keys: set[str] = set()
    samples: list[Sample] = []
    for gen in generations:
        index = matcher.row_of(gen)
        by_text = False
        if index is not None:
            key = tuple(str(rows[index].get(g, "")) for g in group_by)
            expected = rows[index].get("ground_truth")
            if "gts" in gen and expected is not None and str(gen["gts"]) != str(expected):
                truth_mismatch += 1
        else:
            task = matcher.task_by_text(gen)
            if task is None:
                unmatched += 1
                task = UNKNOWN
            else:
                matched_by_text += 1
                by_text = True
            # Without a row only the task is known; other grouping fields stay unknown.
            key = tuple(task if g == "task" else UNKNOWN for g in group_by)
        values = {k: v for k in RATE_KEYS if (v := finite_number(gen.get(k))) is not None}
        reward_keys.update(values)
        output = str(gen.get("output", ""))
        sample = Sample(
            row=index,
            group=key,
            values=values,
            response_chars=len(output),
            response_tokens=count_tokens(output) if count_tokens else None,
        )
        samples.append(sample)
        stats = group_of(key)
        stats.samples.append(sample)
        if index is not None:
            stats.rows_seen.add(index)
        elif by_text:
            stats.text_matched += 1

    ordered = sorted(groups.values(), key=lambda g: g.key)
    group_rows = [g.to_dict(group_by) for g in ordered]
    scored_groups = [g for g in group_rows if g["n"]]
    macro = {k: _mean(g[k] for g in scored_groups) for k in (*RATE_KEYS, "response_chars", "response_tokens")}
    rows_seen = {s.row for s in samples if s.row is not None}
    return {
        "label": label,
        "step": step,
        "group_by": list(group_by),
        "groups": group_rows,
        "overall": summarise_samples(samples),
        "macro": macro,
        "coverage": {
            "expected_rows": len(rows),
            "rows_with_response": len(rows_seen),
            "responses": len(generations),
            "matched_by_row": len(generations) - unmatched - matched_by_text,
            "matched_by_prompt_text": matched_by_text,
            "unmatched": unmatched,
            "ground_truth_mismatch": truth_mismatch,
        },
        "missing_reward_keys": [k for k in RATE_KEYS if k not in reward_keys],
        "length_unit": "tokens" if count_tokens else "chars",
    }


# ------------------------------------------------------------------------------------------------- Markdown


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _length(entry: Mapping[str, Any]) -> float | None:
    return entry.get("response_tokens") if entry.get("response_tokens") is not None else entry.get("response_chars")


def report_markdown(report: Mapping[str, Any]) -> str:
    """A Markdown table of one report (rates in percent)."""
    group_by = report["group_by"]
    unit = report.get("length_unit", "chars")
    head = [*group_by, "n", "acc %", "partial %", "format %", "answered %", "score %", f"resp. {unit}", "missing rows"]
    lines = [
        f"### Puzzle accuracy{' — ' + report['label'] if report.get('label') else ''}"
        + (f" (step {report['step']})" if report.get("step") is not None else ""),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * len(group_by) + ["---:"] * (len(head) - len(group_by))) + "|",
    ]

    def cells(entry: Mapping[str, Any], names: Sequence[str], missing: str) -> str:
        values = [*names, str(entry["n"]), *(_pct(entry[k]) for k in RATE_KEYS), _num(_length(entry)), missing]
        return "| " + " | ".join(values) + " |"

    for g in report["groups"]:
        lines.append(cells(g, [str(g[k]) for k in group_by], str(g["missing_rows"])))
    pad = [""] * (len(group_by) - 1)
    lines.append(cells(report["macro"] | {"n": ""}, ["**mean of groups**", *pad], ""))
    lines.append(cells(report["overall"], ["**all responses**", *pad], ""))
    cov = report["coverage"]
    notes = [
        f"{cov['responses']} responses; {cov['rows_with_response']} of {cov['expected_rows']} rows identified "
        "by row id.",
    ]
    if cov["matched_by_prompt_text"]:
        notes.append(f"{cov['matched_by_prompt_text']} responses matched to their task by prompt text only.")
    if cov.get("ground_truth_mismatch"):
        notes.append(
            f"WARNING: {cov['ground_truth_mismatch']} responses carry a ground truth that differs from their "
            "row's: the dump does not belong to these rows."
        )
    if cov["unmatched"]:
        notes.append(f"{cov['unmatched']} responses could not be matched to a row ({UNKNOWN}).")
    if report.get("missing_reward_keys"):
        notes.append(f"The dump has no {', '.join(report['missing_reward_keys'])} values (shown as –).")
    missing = sum(g["missing_rows"] for g in report["groups"])
    if missing:
        notes.append(f"{missing} rows got no response (e.g. dropped by data.filter_overlong_prompts).")
    return "\n".join(lines + [""] + notes) + "\n"


COMPARE_KEYS = ("acc", "partial", "format")


def compare_reports(reports: Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Reports of several models on the same puzzles merged row by row (groups are matched by their key)."""
    if len(reports) < 2:
        raise ValueError("compare needs at least two reports")
    labels = list(labels or [r.get("label") or f"model{i + 1}" for i, r in enumerate(reports)])
    if len(labels) != len(reports) or len(set(labels)) != len(labels):
        raise ValueError(f"need one distinct label per report, got {labels}")
    group_by = reports[0]["group_by"]
    for r in reports[1:]:
        if r["group_by"] != group_by:
            raise ValueError(f"reports are grouped differently: {group_by} vs {r['group_by']}")
    keys: list[tuple[str, ...]] = []
    per_model: list[dict[tuple[str, ...], Mapping[str, Any]]] = []
    for r in reports:
        table = {tuple(str(g[k]) for k in group_by): g for g in r["groups"]}
        per_model.append(table)
        keys.extend(k for k in table if k not in keys)
    rows = []
    for key in sorted(keys):
        rows.append({**dict(zip(group_by, key)), "models": {lab: t.get(key) for lab, t in zip(labels, per_model)}})
    return {
        "labels": labels,
        "group_by": group_by,
        "groups": rows,
        "macro": {lab: r["macro"] for lab, r in zip(labels, reports)},
        "overall": {lab: r["overall"] for lab, r in zip(labels, reports)},
        "length_unit": reports[0].get("length_unit", "chars"),
    }


def comparison_markdown(comparison: Mapping[str, Any]) -> str:
    """Side-by-side table: accuracy, partial credit, format rate and response length per model, Δ vs the first."""
    labels = comparison["labels"]
    group_by = comparison["group_by"]
    unit = comparison.get("length_unit", "chars")
    head = [*group_by, "n"]
    for key in COMPARE_KEYS:
        head += [f"{key} % ({lab})" for lab in labels]
        head += [f"Δ{key} ({lab})" for lab in labels[1:]]
    head += [f"resp. {unit} ({lab})" for lab in labels]
    lines = [
        f"### Puzzle accuracy: {' vs '.join(labels)}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * len(group_by) + ["---:"] * (len(head) - len(group_by))) + "|",
    ]

    def cells(names: Sequence[str], n: str, entries: Sequence[Mapping[str, Any] | None]) -> str:
        values = [*names, n]
        for key in COMPARE_KEYS:
            got = [e.get(key) if e else None for e in entries]
            values += [_pct(v) for v in got]
            values += [_delta(v, got[0]) for v in got[1:]]
        values += [_num(_length(e)) if e else "–" for e in entries]
        return "| " + " | ".join(values) + " |"

    for row in comparison["groups"]:
        entries = [row["models"][lab] for lab in labels]
        ns = {str(e["n"]) for e in entries if e}
        lines.append(cells([str(row[k]) for k in group_by], "/".join(sorted(ns)) or "0", entries))
    pad = [""] * (len(group_by) - 1)
    lines.append(cells(["**mean of groups**", *pad], "", [comparison["macro"][lab] for lab in labels]))
    lines.append(cells(["**all responses**", *pad], "", [comparison["overall"][lab] for lab in labels]))
    return "\n".join(lines) + "\n\nΔ columns are percentage points against the first model.\n"


def _delta(value: float | None, base: float | None) -> str:
    if value is None or base is None:
        return "–"
    return f"{100 * (value - base):+.1f}"


# ------------------------------------------------------------------------------------------------- CLI


def token_counter(model_dir: str | Path) -> Callable[[str], int]:
    """Counts tokens with the model's own tokenizer (local files only)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def write_report(report: Mapping[str, Any], out_dir: str | Path, stem: str, markdown: str) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_ext.evaluation.puzzle_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="per-task table of one validation dump")
    rep.add_argument("--generations", required=True, type=Path, help="validation_data_dir or one <step>.jsonl")
    src = rep.add_mutually_exclusive_group(required=True)
    src.add_argument("--rows", type=Path, help="eval_rows.jsonl written by puzzle_eval prepare")
    src.add_argument("--data", type=Path, nargs="+", help="the puzzle parquet files that were evaluated, in order")
    rep.add_argument("--out", required=True, type=Path)
    rep.add_argument("--label", default="")
    rep.add_argument("--tokenizer", type=Path, help="model folder: response lengths in its tokens (else chars)")
    rep.add_argument("--group-by", default="task", help="comma-separated row fields, e.g. task,difficulty")
    rep.add_argument("--step", type=int, default=None, help="which <step>.jsonl of a folder (default: latest)")
    cmp_ = sub.add_parser("compare", help="merge two or more puzzle_report.json files into one table")
    cmp_.add_argument("reports", nargs="+", type=Path)
    cmp_.add_argument("--labels", nargs="+", default=None)
    cmp_.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            generations, step = load_generations(args.generations, args.step)
            rows = read_rows(args.rows) if args.rows else prepare_rows_from_files(args.data)
            counter = token_counter(args.tokenizer) if args.tokenizer else None
            group_by = [g.strip() for g in args.group_by.split(",") if g.strip()]
            report = build_report(
                generations, rows, group_by=group_by, count_tokens=counter, label=args.label, step=step
            )
            md = report_markdown(report)
            paths = write_report(report, args.out, "puzzle_report", md)
        else:
            reports = [json.loads(p.read_text()) for p in args.reports]
            comparison = compare_reports(reports, args.labels)
            md = comparison_markdown(comparison)
            paths = write_report(comparison, args.out, "comparison", md)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
