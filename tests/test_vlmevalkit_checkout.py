"""scripts/eval_downstream.sh through a real VLMEvalKit checkout: its own run.py infers with a stand-in model
(tests/vlmevalkit_standin.py), the project extracts the answers, VLMEvalKit scores them by exact matching, and
the project collects the table.

VLMEvalKit is not in the package registry, so this runs only where a checkout is given: VLMEVALKIT_DIR names a
clone (its run.py) whose requirements are installed (or on PYTHONPATH). Everything else is skipped with one reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fixtures_benchmarks import b64, jpeg_bytes, photo_variants

from verl_ext.evaluation import downstream, downstream_table
from verl_ext.evaluation.predictions import read_table, write_table

REPO = Path(__file__).resolve().parents[1]
CHECKOUT = os.environ.get("VLMEVALKIT_DIR", "")


def _importable() -> bool:
    if not CHECKOUT or not (Path(CHECKOUT) / "run.py").is_file():
        return False
    probe = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import vlmeval", CHECKOUT]
    return subprocess.run(probe, capture_output=True, timeout=300).returncode == 0


pytestmark = pytest.mark.skipif(
    not _importable(), reason="needs a VLMEvalKit checkout: set VLMEVALKIT_DIR to a clone whose requirements import"
)


def _benchmarks(root: Path) -> dict[str, str]:
    """The benchmark TSVs (MMBench_DEV_EN with circular copies, MMVP pairs, and three more layouts), and the
    stand-in's response to each question."""
    pics = photo_variants(4, seed=3)
    mmbench, answers = [], {}
    for q in range(2):
        for k, (a, b, answer) in enumerate([("cat", "dog", "A"), ("dog", "cat", "B")]):
            mmbench.append(
                {
                    "index": q + k * 1_000_000,
                    "question": f"[q{q}-{k}] Which animal is shown?",
                    "hint": None,
                    "A": a,
                    "B": b,
                    "C": None,
                    "D": None,
                    "answer": answer,
                    "category": "c",
                    "l2-category": "l2",
                    "split": "dev",
                    "image": b64(jpeg_bytes(pics[q])),
                }
            )
    answers["[q0-0]"] = "<think>Whiskers. Option B: dog? No.</think> <answer>cat</answer>"  # option text: A
    answers["[q0-1]"] = "<think>Whiskers.</think> <answer>B</answer>"
    answers["[q1-0]"] = "=1+1 <think>a formula-looking start</think> <answer>(A)</answer>"
    answers["[q1-1]"] = "<think>It is B, surely"  # cut off: no answer, so q1 fails circular evaluation
    pd.DataFrame(mmbench).to_csv(root / "MMBench_DEV_EN.tsv", sep="\t", index=False)
    mmvp = []
    for i in range(4):
        mmvp.append(
            {
                "index": i + 1,
                "question": f"[v{i // 2}] Is the door open?",
                "A": "yes",
                "B": "no",
                "answer": "A" if i % 2 == 0 else "B",
                "category": "state",
                "image": b64(jpeg_bytes(pics[i])),
            }
        )
    pd.DataFrame(mmvp).to_csv(root / "MMVP.tsv", sep="\t", index=False)
    answers.update(_other_benchmarks(root, pics))
    return answers


def _other_benchmarks(root: Path, pics) -> dict[str, str]:
    """SEEDBench_IMG, HRBench8K and MME-RealWorld-Lite: two questions each, the first answered right."""
    seed = [
        {"index": i, "question": f"[s{i}] What is it?", "A": "w", "B": "x", "C": "y", "D": "z", "answer": "C"}
        | {"category": "Scene Understanding", "image": b64(jpeg_bytes(pics[i]))}
        for i in range(2)
    ]
    pd.DataFrame(seed).to_csv(root / "SEEDBench_IMG.tsv", sep="\t", index=False)
    hr = [
        {"index": i, "question": f"[h{i}] What does the label say?", "A": "one", "B": "two", "C": "three"}
        | {"D": "four", "answer": "D", "category": "single", "cycle_category": "cycle_1"}
        | {"image": b64(jpeg_bytes(pics[i]))}
        for i in range(2)
    ]
    pd.DataFrame(hr).to_csv(root / "HRBench8K.tsv", sep="\t", index=False)
    options = ["(A) stop", "(B) go", "(C) wait", "(D) turn", "(E) exit"]
    mme = [
        {"index": i, "question": f"[e{i}] What does the sign say?", "multi-choice options": str(options)}
        | {"answer": "E", "category": "Perception/Monitoring", "l2-category": "vehicle/counting"}
        | {"image": b64(jpeg_bytes(pics[i]))}
        for i in range(2)
    ]
    pd.DataFrame(mme).to_csv(root / "MME-RealWorld-Lite.tsv", sep="\t", index=False)
    return {
        "[s0]": "<think>y</think> <answer>C</answer>",
        "[s1]": "<think>y</think> <answer>B</answer>",
        "[h0]": "<think>tiny</think> <answer>four</answer>",
        "[h1]": "<think>tiny</think>",
        "[e0]": "<think>sign</think> <answer>(E) exit</answer>",
        "[e1]": "<think>sign</think> <answer>A</answer>",
    }


def test_eval_downstream_with_the_real_vlmevalkit(tmp_path):
    data = tmp_path / "LMUData"
    data.mkdir()
    answers = _benchmarks(data)
    # The two rows of an MMVP pair share their question, so the stand-in gives both the same response: one right
    # per pair (pair accuracy 0, question accuracy 50%).
    answers["[v0]"] = "<think>open</think> <answer>yes</answer>"
    answers["[v1]"] = "<think>closed</think> <answer>B</answer>"
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    template = json.loads((REPO / "configs" / "eval" / "vlmevalkit_ssl.json").read_text())
    template["model"]["MODEL_NAME"]["class"] = "ThinkAnswerStandIn"
    (tmp_path / "template.json").write_text(json.dumps(template))
    for name in ("base", "trained"):
        (tmp_path / name).mkdir()
    work = tmp_path / "work"
    builds = tmp_path / "builds.jsonl"
    env = {
        **os.environ,
        "SPLIT_THINK": "0",  # must not turn VLMEvalKit's thinking split on
        "LMUData": str(data),
        "VLMEVAL": f"{sys.executable} {REPO / 'tests' / 'vlmevalkit_standin.py'}",
        "STANDIN_ANSWERS": str(tmp_path / "answers.json"),
        "STANDIN_BUILDS": str(builds),
        "TEMPLATE": str(tmp_path / "template.json"),
        "WORK_DIR": str(work),
    }
    script = ["bash", str(REPO / "scripts" / "eval_downstream.sh"), f"base={tmp_path / 'base'}"]
    script += [f"trained={tmp_path / 'trained'}", "--", "MMBench_DEV_EN", "MMVP"]
    script += ["SEEDBench_IMG", "HRBench8K", "MME-RealWorld-Lite"]
    proc = subprocess.run(script, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    # Only the infer stage built models (once per model); the eval stage loaded none.
    assert len(builds.read_text().splitlines()) == 2
    table = json.loads((work / "results.json").read_text())
    assert table["results"]["MMBench_DEV_EN"]["trained"]["score"] == pytest.approx(50.0)  # circular: q0 only
    mmvp = table["results"]["MMVP"]["base"]
    assert mmvp["score"] == pytest.approx(0.0) and mmvp["details"] == {"question accuracy": pytest.approx(50.0)}
    # The score files of the other layouts, as VLMEvalKit writes them, read by the collector: one of two right.
    for dataset in ("SEEDBench_IMG", "HRBench8K", "MME-RealWorld-Lite"):
        entry = table["results"][dataset]["trained"]
        assert "score" in entry, (dataset, entry)
        assert entry["score"] == pytest.approx(50.0), (dataset, entry)
    predictions = downstream.find_predictions(work, "trained", ["MMBench_DEV_EN"])["MMBench_DEV_EN"]
    rows = read_table(predictions).set_index("index")
    assert "thinking" not in rows.columns  # SPLIT_THINK stayed off
    assert rows.loc[1, "raw_prediction"].startswith("=1+1 <think>")  # text, not a formula
    assert rows.loc[1_000_001, "prediction"] == "Z"
    table_rows = downstream_table.vlmevalkit_rows(work, ["base", "trained"], ["MMBench_DEV_EN", "MMVP"])
    assert table_rows[0]["models"]["trained"]["n"] == 4
    assert table_rows[0]["models"]["trained"]["no_answer"] == pytest.approx(0.25)

    # A changed prediction is scored again (VLMEvalKit's default --reuse-aux all would keep the old judged hit).
    mmvp_file = downstream.find_predictions(work, "base", ["MMVP"])["MMVP"]
    df = read_table(mmvp_file)
    df.loc[df["answer"] == "B", "raw_prediction"] = "<think>closed</think> <answer>no</answer>"
    write_table(df, mmvp_file)
    again = subprocess.run(
        script, env={**env, "STAGES": "extract eval collect"}, capture_output=True, text=True, timeout=900, cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    rescored = json.loads((work / "results.json").read_text())["results"]["MMVP"]["base"]
    assert rescored["score"] == pytest.approx(50.0) and rescored["details"]["question accuracy"] == pytest.approx(75.0)
