"""Puzzle-accuracy evaluation: preparing the eval set, the row-tagging reward, the per-task report, comparisons."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from verl_ext.evaluation import eval_reward, puzzle_eval, puzzle_report
from verl_ext.evaluation.puzzle_report import build_report, compare_reports, comparison_markdown, report_markdown
from verl_ext.images import content_id
from verl_ext.reward import compute_score as training_score
from verl_ext.tasks import get_task


def _photo(seed: int, size=(96, 80)) -> Image.Image:
    """A textured picture (gradients plus noise) that no task rejects as flat."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def puzzle_rows(task_name: str, n: int, seed: int = 0, difficulty: str = "easy") -> pd.DataFrame:
    """Rows in the project's verl row format, made with the real task."""
    task = get_task(task_name)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        photo = _photo(seed * 100 + i)
        puzzle = task.make(photo, rng, **task.knobs_for(difficulty))
        rows.append(
            {
                "data_source": f"ssl_{task_name}",
                "prompt": [{"role": "user", "content": puzzle.prompt}],
                "images": [{"bytes": _png(im), "path": None} for im in puzzle.images],
                "ability": "visual_puzzle",
                "reward_model": {"style": "rule", "ground_truth": puzzle.answer},
                "extra_info": {
                    "task": task_name,
                    "source": "synthetic",
                    "split": "val",
                    "index": i,
                    "source_id": str(i),
                    "content_id": content_id(photo),
                    "difficulty": difficulty,
                    "params": json.dumps(puzzle.params),
                    "prompt_tokens": 100,
                    "partner_content_id": "",
                },
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture()
def two_files(tmp_path):
    rot = tmp_path / "rotation" / "val.parquet"
    jig = tmp_path / "jigsaw" / "val.parquet"
    rot.parent.mkdir()
    jig.parent.mkdir()
    puzzle_rows("rotation", 4, seed=1).to_parquet(rot)
    puzzle_rows("jigsaw", 3, seed=2).to_parquet(jig)
    return rot, jig


def test_prepare_eval_set_numbers_rows_and_keeps_everything(tmp_path, two_files):
    rot, jig = two_files
    eval_set, rows_path, n = puzzle_eval.prepare_eval_set([rot, jig], tmp_path / "out")
    assert n == 7
    combined = pd.read_parquet(eval_set)
    assert [info["eval_row"] for info in combined["extra_info"]] == list(range(7))
    # Everything else survives: tasks, params, images (bytes identical), ground truths.
    originals = pd.concat([pd.read_parquet(rot), pd.read_parquet(jig)], ignore_index=True)
    for got, want in zip(combined.itertuples(), originals.itertuples()):
        assert got.extra_info["task"] == want.extra_info["task"]
        assert got.extra_info["params"] == want.extra_info["params"]
        assert got.reward_model["ground_truth"] == want.reward_model["ground_truth"]
        assert [im["bytes"] for im in got.images] == [im["bytes"] for im in want.images]
    rows = puzzle_eval.read_rows(rows_path)
    assert [r["task"] for r in rows] == ["rotation"] * 4 + ["jigsaw"] * 3
    # Same file name twice: the parent folder tells them apart.
    assert rows[0]["file"] == "rotation/val.parquet" and rows[4]["file"] == "jigsaw/val.parquet"
    assert rows[4]["file_index"] == 0 and rows[6]["eval_row"] == 6
    assert "<image>" not in rows[0]["prompt_text"] and "counter-clockwise" in rows[0]["prompt_text"]


def test_prepare_eval_set_max_rows_and_errors(tmp_path, two_files):
    rot, jig = two_files
    _, rows_path, n = puzzle_eval.prepare_eval_set([rot, jig], tmp_path / "o", max_rows_per_file=2)
    assert n == 4
    with pytest.raises(FileNotFoundError):
        puzzle_eval.prepare_eval_set([tmp_path / "nope.parquet"], tmp_path / "o2")
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(bad)
    with pytest.raises(ValueError, match="missing columns"):
        puzzle_eval.prepare_eval_set([bad], tmp_path / "o3")
    assert puzzle_eval.main(["prepare", str(tmp_path / "o4"), str(bad)]) == 2


def test_eval_reward_is_the_training_reward_plus_the_row(two_files):
    row = pd.read_parquet(two_files[1]).iloc[0]
    info = dict(row.extra_info) | {"eval_row": 5}
    truth = row.reward_model["ground_truth"]
    for response in (f"<think>tiles</think> <answer>{truth}</answer>", "<answer>1,1,1,1</answer>", "no idea"):
        got = eval_reward.compute_score("ssl_jigsaw", response, truth, info)
        want = training_score("ssl_jigsaw", response, truth, info)
        assert {k: v for k, v in got.items() if k != "eval_row"} == want
        assert got["eval_row"] == 5.0
    kwargs = {"format_weight": 0.0, "acc_weight": 1.0}
    assert (
        eval_reward.compute_score("ssl_jigsaw", "x", truth, info, **kwargs)["score"]
        == training_score("ssl_jigsaw", "x", truth, info, **kwargs)["score"]
    )
    # Rows that did not come through prepare_eval_set are marked -1.
    assert eval_reward.compute_score("ssl_jigsaw", "x", truth, dict(row.extra_info))["eval_row"] == -1.0


# --------------------------------------------------------------------------------------- report on fixtures

ROWS = [
    {"eval_row": 0, "task": "rotation", "difficulty": "easy", "prompt_text": "turned counter-clockwise by"},
    {"eval_row": 1, "task": "rotation", "difficulty": "hard", "prompt_text": "turned counter-clockwise by"},
    {"eval_row": 2, "task": "jigsaw", "difficulty": "easy", "prompt_text": "put the tiles back in order"},
    {"eval_row": 3, "task": "jigsaw", "difficulty": "easy", "prompt_text": "put the tiles back in order"},
    {"eval_row": 4, "task": "position", "difficulty": "easy", "prompt_text": "where was the crop taken"},
]


def gen(row: int | None, acc: float, partial: float, fmt: float, output: str, text: str = "") -> dict:
    """One line of verl's validation dump (keys as verl 0.9.1 writes them)."""
    line = {
        "input": f"system\nuser\n{text}\nassistant\n",
        "output": output,
        "gts": "x",
        "score": 0.5,
        "step": 0,
        "reward": 0.5,
        "acc": acc,
        "partial": partial,
        "format": fmt,
        "answered": 1.0,
        "uid": f"u{row}_0_0",
    }
    if row is not None:
        line["eval_row"] = float(row)
    return line


GENERATIONS = [
    gen(0, 1.0, 1.0, 1.0, "a" * 10),
    gen(1, 0.0, 0.0, 1.0, "a" * 30),
    gen(2, 0.0, 0.5, 0.0, "a" * 20),
    gen(3, 1.0, 1.0, 1.0, "a" * 40),
    # row 4 (position) got no response: it must show up as missing, not vanish.
]


def test_report_per_task():
    report = build_report(GENERATIONS, ROWS, label="base", step=0)
    by_task = {g["task"]: g for g in report["groups"]}
    assert by_task["rotation"]["n"] == 2 and by_task["rotation"]["acc"] == 0.5
    assert by_task["rotation"]["format"] == 1.0 and by_task["rotation"]["response_chars"] == 20
    assert by_task["jigsaw"]["acc"] == 0.5 and by_task["jigsaw"]["partial"] == 0.75
    assert by_task["jigsaw"]["format"] == 0.5 and by_task["jigsaw"]["response_chars"] == 30
    assert by_task["position"]["n"] == 0 and by_task["position"]["missing_rows"] == 1
    assert by_task["position"]["acc"] is None
    assert report["overall"]["n"] == 4 and report["overall"]["acc"] == 0.5
    assert report["macro"]["partial"] == pytest.approx((0.5 + 0.75) / 2)  # groups without responses skipped
    assert report["coverage"] == {
        "expected_rows": 5,
        "rows_with_response": 4,
        "responses": 4,
        "matched_by_row": 4,
        "matched_by_prompt_text": 0,
        "unmatched": 0,
        "ground_truth_mismatch": 0,
    }
    md = report_markdown(report)
    assert "| rotation | 2 | 50.0 | 50.0 | 100.0 |" in md
    assert "| position | 0 | – | – |" in md and "1 rows got no response" in md


def test_report_flags_a_dump_of_other_rows():
    rows = [dict(r, ground_truth="90") for r in ROWS]
    gens = [dict(g, gts="90") for g in GENERATIONS[:2]] + [dict(g, gts="180") for g in GENERATIONS[2:]]
    report = build_report(gens, rows)
    assert report["coverage"]["ground_truth_mismatch"] == 2
    assert "WARNING: 2 responses carry a ground truth" in report_markdown(report)


def test_report_group_by_task_and_difficulty():
    report = build_report(GENERATIONS, ROWS, group_by=("task", "difficulty"))
    keys = [(g["task"], g["difficulty"]) for g in report["groups"]]
    assert keys == [("jigsaw", "easy"), ("position", "easy"), ("rotation", "easy"), ("rotation", "hard")]
    assert "| rotation | hard | 1 | 0.0 |" in report_markdown(report)


def test_report_matches_by_prompt_text_without_row_ids():
    gens = [
        gen(None, 1.0, 1.0, 1.0, "x", text="Image 2 is turned   counter-clockwise by 90?"),
        gen(None, 0.0, 0.2, 1.0, "x", text="Please put the tiles back in order."),
        gen(None, 0.0, 0.0, 0.0, "x", text="something else entirely"),
    ]
    report = build_report(gens, ROWS)
    by_task = {g["task"]: g for g in report["groups"]}
    assert by_task["rotation"]["n"] == 1 and by_task["jigsaw"]["n"] == 1
    assert by_task[puzzle_report.UNKNOWN]["n"] == 1
    assert by_task["jigsaw"]["missing_rows"] == 1  # 2 rows, 1 response matched by text
    assert by_task["position"]["missing_rows"] == 1
    assert report["coverage"]["matched_by_prompt_text"] == 2 and report["coverage"]["unmatched"] == 1
    assert "could not be matched" in report_markdown(report)


def test_report_token_lengths_and_missing_keys():
    gens = [{"input": "", "output": "one two three", "score": 1.0, "eval_row": 0}]
    report = build_report(gens, ROWS, count_tokens=lambda s: len(s.split()))
    assert report["overall"]["response_tokens"] == 3 and report["length_unit"] == "tokens"
    assert report["missing_reward_keys"] == ["acc", "partial", "format", "answered"]
    assert "resp. tokens" in report_markdown(report)


def test_compare_two_models():
    base = build_report(GENERATIONS, ROWS, label="base")
    better = [dict(g, acc=1.0, partial=1.0) for g in GENERATIONS]
    trained = build_report(better, ROWS, label="trained")
    comparison = compare_reports([base, trained])
    assert comparison["labels"] == ["base", "trained"]
    rot = next(r for r in comparison["groups"] if r["task"] == "rotation")
    assert rot["models"]["base"]["acc"] == 0.5 and rot["models"]["trained"]["acc"] == 1.0
    md = comparison_markdown(comparison)
    assert "acc % (base) | acc % (trained) | Δacc (trained)" in md
    assert "| rotation | 2 | 50.0 | 100.0 | +50.0 |" in md
    with pytest.raises(ValueError, match="distinct label"):
        compare_reports([base, base])
    with pytest.raises(ValueError, match="grouped differently"):
        compare_reports([base, build_report(GENERATIONS, ROWS, group_by=("difficulty",), label="x")])


def _write_dump(folder, step, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{step}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_load_generations_picks_the_step(tmp_path):
    _write_dump(tmp_path / "dump", 0, GENERATIONS[:1])
    _write_dump(tmp_path / "dump", 10, GENERATIONS)
    lines, step = puzzle_report.load_generations(tmp_path / "dump")
    assert step == 10 and len(lines) == 4
    lines, step = puzzle_report.load_generations(tmp_path / "dump", step=0)
    assert step == 0 and len(lines) == 1
    with pytest.raises(FileNotFoundError, match="steps present"):
        puzzle_report.load_generations(tmp_path / "dump", step=5)
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        puzzle_report.load_generations(tmp_path / "bad.jsonl")


def test_cli_report_and_compare(tmp_path, two_files):
    _, rows_path, _ = puzzle_eval.prepare_eval_set(two_files, tmp_path / "set")
    rows = puzzle_eval.read_rows(rows_path)
    # Score real responses with the eval reward, as verl's validation would, then dump them.
    lines = []
    for row in rows:
        truth = row["ground_truth"]
        answer = truth if row["eval_row"] % 2 == 0 else "nonsense"
        info = {
            "task": row["task"],
            "eval_row": row["eval_row"],
            "params": pd.read_parquet(tmp_path / "set" / "eval_set.parquet").extra_info[row["eval_row"]]["params"],
        }
        output = f"<think>look</think> <answer>{answer}</answer>"
        result = eval_reward.compute_score(row["data_source"], output, truth, info)
        lines.append({"input": row["prompt_text"], "output": output, "gts": truth, "step": 0, **result})
    _write_dump(tmp_path / "gen", 0, lines)
    out = tmp_path / "base"
    assert (
        puzzle_report.main(
            [
                "report",
                "--generations",
                str(tmp_path / "gen"),
                "--rows",
                str(rows_path),
                "--out",
                str(out),
                "--label",
                "base",
            ]
        )
        == 0
    )
    report = json.loads((out / "puzzle_report.json").read_text())
    by_task = {g["task"]: g for g in report["groups"]}
    assert by_task["rotation"]["acc"] == 0.5 and by_task["jigsaw"]["acc"] == pytest.approx(2 / 3)
    assert by_task["rotation"]["format"] == 1.0
    # The same dump reported from the parquet files directly gives the same table.
    out2 = tmp_path / "again"
    assert (
        puzzle_report.main(
            [
                "report",
                "--generations",
                str(tmp_path / "gen"),
                "--data",
                *map(str, two_files),
                "--out",
                str(out2),
                "--label",
                "trained",
            ]
        )
        == 0
    )
    again = json.loads((out2 / "puzzle_report.json").read_text())
    assert again["groups"] == report["groups"]
    assert (
        puzzle_report.main(
            [
                "compare",
                str(out / "puzzle_report.json"),
                str(out2 / "puzzle_report.json"),
                "--out",
                str(tmp_path / "cmp"),
            ]
        )
        == 0
    )
    assert "base vs trained" in (tmp_path / "cmp" / "comparison.md").read_text()
    assert (
        puzzle_report.main(
            ["report", "--generations", str(tmp_path / "none"), "--rows", str(rows_path), "--out", str(out)]
        )
        == 2
    )


def test_eval_puzzles_script_rejects_bad_arguments(tmp_path, two_files):
    import os
    import subprocess
    from pathlib import Path

    script = str(Path(__file__).resolve().parents[1] / "scripts" / "eval_puzzles.sh")
    env = {**os.environ, "OUT_DIR": str(tmp_path / "out")}

    def run(*args):
        return subprocess.run(["bash", script, *args], env=env, capture_output=True, text=True, timeout=60)

    assert "Usage:" in run().stderr
    proc = run(str(tmp_path / "no_model"), str(two_files[0]))
    assert proc.returncode == 1 and "no model at MODEL_PATH" in proc.stderr
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "preprocessor_config.json").write_text("{}")
    proc = run(str(model), str(tmp_path / "missing.parquet"))
    assert proc.returncode == 1 and "no puzzle file" in proc.stderr
    proc = subprocess.run(
        ["bash", script, str(model), str(two_files[0])],
        env={**env, "DEVICE": "tpu"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "DEVICE=tpu is not supported" in proc.stderr


def test_eval_puzzles_script_refuses_an_out_dir_another_evaluation_is_using(tmp_path, two_files):
    import os
    import subprocess
    from pathlib import Path

    from verl_ext.folder_lock import FolderLock

    script = str(Path(__file__).resolve().parents[1] / "scripts" / "eval_puzzles.sh")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "preprocessor_config.json").write_text("{}")
    out = tmp_path / "out"
    with FolderLock(out, "a puzzle evaluation"):
        proc = subprocess.run(
            ["bash", script, str(model), str(two_files[0])],
            env={**os.environ, "OUT_DIR": str(out), "DEVICE": "cpu", "PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 1
    assert f"{out} is in use by a puzzle evaluation (pid {os.getpid()}" in proc.stderr
    assert "set OUT_DIR to another folder" in proc.stderr and not (out / "data").exists()
