"""Downstream benchmark plumbing: configs, score-file parsing, the results table, and the scripted path
(infer → extract → eval → collect) with a stand-in for VLMEvalKit that writes files in its shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from verl_ext.evaluation import downstream, downstream_table
from verl_ext.evaluation.instruction import SYSTEM_PROMPT
from verl_ext.evaluation.predictions import read_table, write_table
from verl_ext.tasks.base import FORMAT_INSTRUCTION

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "eval"


def test_configs_carry_the_training_instruction_and_all_benchmarks():
    vlm = json.loads((CONFIGS / "vlmevalkit_ssl.json").read_text())
    entry = vlm["model"]["MODEL_NAME"]
    assert entry["class"] == "Qwen2VLChat" and entry["use_custom_prompt"] is False
    assert entry["system_prompt"] == SYSTEM_PROMPT
    assert SYSTEM_PROMPT.startswith(FORMAT_INSTRUCTION)
    assert list(vlm["data"]) == list(downstream.DATASETS)
    lmms = json.loads((CONFIGS / "lmms_eval_ssl.json").read_text())
    assert list(lmms["tasks"]) == list(downstream.DATASETS)
    assert all(task.startswith("ssl_") for task in lmms["tasks"].values())  # the project's own task variants
    assert "system_prompt" not in lmms["model_args"]  # ignored by lmms-eval's chat models; the tasks send it


def test_vlmevalkit_config_for_two_models():
    template = json.loads((CONFIGS / "vlmevalkit_ssl.json").read_text())
    models = downstream.parse_models(["base=/m/base", "trained=/m/step300"])
    cfg = downstream.vlmevalkit_config(template, models, ["MMBench_DEV_EN", "MMVP"])
    assert list(cfg["model"]) == ["base", "trained"]
    assert cfg["model"]["trained"]["model_path"] == "/m/step300"
    assert cfg["model"]["base"]["system_prompt"] == SYSTEM_PROMPT
    assert list(cfg["data"]) == ["MMBench_DEV_EN", "MMVP"]
    assert template["model"]["MODEL_NAME"]["model_path"] == "MODEL_PATH"  # template untouched
    with pytest.raises(ValueError, match="not in the template"):
        downstream.vlmevalkit_config(template, models, ["MMMU"])


@pytest.mark.parametrize("specs", [["nopath"], ["a=/x", "a=/y"], ["bad name=/x"], []])
def test_parse_models_rejects(specs):
    with pytest.raises(ValueError):
        downstream.parse_models(specs)


def test_data_config_for_vlmevalkits_command_line():
    template = json.loads((CONFIGS / "vlmevalkit_ssl.json").read_text())
    assert downstream.data_config(template, ["MMVP"]) == {"MMVP": {"class": "ImageMCQDataset", "dataset": "MMVP"}}
    assert list(downstream.data_config(template)) == list(downstream.DATASETS)
    with pytest.raises(ValueError, match="not in the template"):
        downstream.data_config(template, ["MMMU"])


def test_vlmevalkit_command_finds_run_py(tmp_path, monkeypatch):
    clone = tmp_path / "VLMEvalKit"
    (clone / "vlmeval").mkdir(parents=True)
    (clone / "vlmeval" / "__init__.py").write_text("")
    monkeypatch.delenv("VLMEVALKIT_DIR", raising=False)
    monkeypatch.setattr(downstream.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="cannot find VLMEvalKit's run.py"):
        downstream.vlmevalkit_command()
    # An editable install of a clone: run.py sits next to the vlmeval package.
    (clone / "run.py").write_text("")
    spec = type("Spec", (), {"origin": str(clone / "vlmeval" / "__init__.py")})
    monkeypatch.setattr(downstream.importlib.util, "find_spec", lambda name: spec)
    assert downstream.vlmevalkit_command() == f"python {clone / 'run.py'}"
    monkeypatch.setenv("VLMEVALKIT_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="has no run.py"):
        downstream.vlmevalkit_command()
    monkeypatch.setenv("VLMEVALKIT_DIR", str(clone))
    assert downstream.vlmevalkit_command("py") == f"py {clone / 'run.py'}"


# ------------------------------------------------------------------------------------ score files


def write_scores(root: Path, model: str) -> None:
    """Score files as VLMEvalKit writes them (values are fractions)."""
    d = root / model / "T20260101_Gabc"
    d.mkdir(parents=True)
    pd.DataFrame({"split": ["dev"], "Overall": [0.7715], "CP": [0.8], "FP-S": [0.7]}).to_csv(
        d / f"{model}_MMBench_DEV_EN_acc.csv", index=False
    )
    pd.DataFrame({"split": ["none"], "Overall": [0.7], "Scene Understanding": [0.75]}).to_csv(
        d / f"{model}_SEEDBench_IMG_acc.csv", index=False
    )
    pd.DataFrame(
        {
            "cycle": ["cycle_1", "cycle_1", "Average", "Average", "Average"],
            "type": ["all", "single", "all", "single", "cross"],
            "accuracy": [0.6, 0.7, 0.64125, 0.7, 0.58],
        }
    ).to_csv(d / f"{model}_HRBench8K_acc.csv", index=False)
    # MMVP as VLMEvalKit writes it now: Average = per question, Overall = per pair.
    pd.DataFrame({"Average": [0.5467], "Overall": [0.3333]}).to_csv(d / f"{model}_MMVP_acc.csv", index=False)
    (d / f"{model}_MME-RealWorld-Lite_rating.json").write_text(
        json.dumps(
            {"Overall": 0.4268, "Perception": {"Monitoring": {"Avg": 0.3}, "Avg": 0.45}, "Reasoning": {"Avg": 0.38}}
        )
    )
    (d / f"{model}_MMStar_acc.csv").write_text("what,ever\n1,2\n")  # a layout we do not know


def test_parse_score_files(tmp_path):
    write_scores(tmp_path, "m")
    d = tmp_path / "m" / "T20260101_Gabc"
    assert downstream.parse_score_file(d / "m_MMBench_DEV_EN_acc.csv") == (0.7715, {"CP": 0.8, "FP-S": 0.7})
    assert downstream.parse_score_file(d / "m_HRBench8K_acc.csv") == (0.64125, {"single": 0.7, "cross": 0.58})
    assert downstream.parse_score_file(d / "m_MMVP_acc.csv", "MMVP") == (0.3333, {"question accuracy": 0.5467})
    older = tmp_path / "older_MMVP_acc.csv"  # older VLMEvalKit releases (their spelling)
    pd.DataFrame({"case_accuray": [0.3333], "question_accuray": [0.5467]}).to_csv(older, index=False)
    headline, details = downstream.parse_score_file(older, "MMVP")
    assert headline == 0.3333 and details["question_accuray"] == 0.5467
    headline, details = downstream.parse_score_file(d / "m_MME-RealWorld-Lite_rating.json")
    assert headline == 0.4268 and details == {"Perception": 0.45, "Reasoning": 0.38}
    with pytest.raises(ValueError, match="unknown score file layout"):
        downstream.parse_score_file(d / "m_MMStar_acc.csv")


def test_collect_two_models_newest_file_wins(tmp_path):
    write_scores(tmp_path, "base")
    write_scores(tmp_path, "trained")
    # A later evaluation of the trained model on MMBench: the newest file is used.
    later = tmp_path / "trained" / "T20260102_Gdef"
    later.mkdir()
    newer = later / "trained_MMBench_DEV_EN_acc.csv"
    pd.DataFrame({"split": ["dev"], "Overall": [0.7852]}).to_csv(newer, index=False)
    stamp = time.time() + 10
    os.utime(newer, (stamp, stamp))
    table = downstream.collect_results(tmp_path, ["base", "trained"])
    assert table["results"]["MMBench_DEV_EN"]["base"]["score"] == pytest.approx(77.15)
    assert table["results"]["MMBench_DEV_EN"]["trained"]["score"] == pytest.approx(78.52)
    assert table["results"]["HRBench8K"]["base"]["score"] == pytest.approx(64.125)
    assert "error" in table["results"]["MMStar"]["base"]
    assert set(table["missing"]) == {"base/RealWorldQA", "base/BLINK", "trained/RealWorldQA", "trained/BLINK"}
    assert table["average"]["base"]["datasets"] == 5
    md = downstream.results_markdown(table)
    assert "| MMBench_DEV_EN | 77.15 | 78.52 | +1.37 |" in md
    assert "| RealWorldQA | – | – | – |" in md and "| MMStar | error | error | – |" in md
    assert "No score file for" in md and "Unreadable score files" in md


# ------------------------------------------------------------------------------------ the scripted path

FAKE_VLMEVAL = textwrap.dedent(
    '''
    """Stand-in for VLMEvalKit's run.py: infer writes predictions, eval scores exact letters (hit = pred == answer)."""
    import argparse, json, os
    from pathlib import Path
    import pandas as pd

    p = argparse.ArgumentParser()
    p.add_argument("--config"); p.add_argument("--work-dir"); p.add_argument("--mode")
    p.add_argument("--model", nargs="+"); p.add_argument("--data", nargs="+"); p.add_argument("--data-config")
    p.add_argument("--judge"); p.add_argument("--reuse", action="store_true"); p.add_argument("--reuse-aux")
    a = p.parse_args()
    # VLMEvalKit splits thinking off whenever SPLIT_THINK is set at all, "0" included.
    assert "SPLIT_THINK" not in os.environ
    if a.mode == "infer":
        cfg = json.load(open(a.config))
        models, datasets = cfg["model"], cfg["data"]
        for entry in models.values():
            assert entry["use_custom_prompt"] is False and "<answer>" in entry["system_prompt"]
    else:
        # Evaluating must not build models: names, not a config; and no reuse of old judged results.
        assert a.config is None and a.reuse_aux == "infer"
        models, datasets = a.model, a.data
        assert list(json.loads(a.data_config)) == datasets
    for model in models:
        out = Path(a.work_dir) / model / "T20260101_G0000"
        out.mkdir(parents=True, exist_ok=True)
        for dataset in datasets:
            pred = out / f"{model}_{dataset}.xlsx"
            if a.mode == "infer":
                good = model == "trained"
                df = pd.DataFrame({
                    "index": [0, 1, 2, 3], "question": ["q"] * 4,
                    "A": ["x"] * 4, "B": ["y"] * 4, "C": ["z"] * 4, "answer": ["A", "B", "C", "A"],
                    "prediction": [
                        "<think>...</think> <answer>A</answer>",
                        "<think>...</think> <answer>(B)</answer>" if good else "<think>...</think> <answer>C</answer>",
                        "<think>...</think> <answer>C. z</answer>" if good else "I think it is C because z",
                        "<think>...</think>",
                    ],
                })
                df.to_excel(pred, index=False)
            else:
                assert a.judge == "exact_matching" and a.reuse
                df = pd.read_excel(pred)
                hit = (df["prediction"].astype(str) == df["answer"]).mean()
                pd.DataFrame({"split": ["none"], "Overall": [hit]}).to_csv(
                    out / f"{model}_{dataset}_acc.csv", index=False)
    '''
)


def test_eval_downstream_script_end_to_end(tmp_path):
    fake = tmp_path / "fake_vlmeval.py"
    fake.write_text(FAKE_VLMEVAL)
    base, trained = tmp_path / "ckpt_base", tmp_path / "ckpt_trained"
    base.mkdir()
    trained.mkdir()
    work = tmp_path / "work"
    env = {**os.environ, "VLMEVAL": f"{sys.executable} {fake}", "WORK_DIR": str(work), "SPLIT_THINK": "0"}
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "eval_downstream.sh"),
            f"base={base}",
            f"trained={trained}",
            "--",
            "MMBench_DEV_EN",
            "MMVP",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = json.loads((work / "results.json").read_text())
    # base: A right, C wrong, free text -> no answer (Z), no tag -> Z: 1/4. trained: 3/4.
    assert table["results"]["MMBench_DEV_EN"]["base"]["score"] == pytest.approx(25.0)
    assert table["results"]["MMVP"]["trained"]["score"] == pytest.approx(75.0)
    assert "| MMBench_DEV_EN | 25.00 | 75.00 | +50.00 |" in (work / "results.md").read_text()
    pred = pd.read_excel(work / "base" / "T20260101_G0000" / "base_MMBench_DEV_EN.xlsx")
    assert list(pred["prediction"]) == ["A", "C", "Z", "Z"]
    assert pred["raw_prediction"][2] == "I think it is C because z"
    assert "4 rows: 2 answered" in proc.stdout
    # The one table: VLMEvalKit's scores with n and the no-answer share from the extraction reports.
    rows = downstream_table.vlmevalkit_rows(work, ["base", "trained"], ["MMBench_DEV_EN", "MMVP"])
    assert rows[0]["metric"] == "circular accuracy" and rows[1]["metric"] == "pair accuracy"
    assert rows[0]["models"]["base"] == {"score": pytest.approx(25.0), "n": 4, "no_answer": pytest.approx(0.5)}
    assert rows[0]["models"]["trained"]["no_answer"] == pytest.approx(0.25)
    out = tmp_path / "table"
    argv = ["--model", "base", "--model", "trained", "--vlmevalkit", str(work), "--out", str(out)]
    assert downstream_table.main(argv) == 0
    md = (out / "table.md").read_text()
    assert "| VLMEvalKit | MMBench_DEV_EN | circular accuracy | 4 | 25.00 | 50.0% | 75.00 | 25.0% | +50.00 |" in md
    assert "| VLMEvalKit | SEEDBench_IMG | accuracy | – | – | – | – | – | – |" in md  # not run: marked missing


def test_eval_downstream_script_rejects_bad_arguments(tmp_path):
    script = str(REPO / "scripts" / "eval_downstream.sh")
    env = {**os.environ, "WORK_DIR": str(tmp_path / "w")}
    proc = subprocess.run(["bash", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "NAME=CKPT_DIR" in proc.stderr
    proc = subprocess.run(["bash", script, f"m={tmp_path / 'missing'}"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    # No VLMEVAL and no VLMEvalKit to be found: a clear error, not `python -m vlmeval` failing later.
    no_kit = {k: v for k, v in env.items() if k not in ("VLMEVAL", "VLMEVALKIT_DIR")}
    proc = subprocess.run(["bash", script, f"m={tmp_path}"], env=no_kit, capture_output=True, text=True)
    assert proc.returncode == 2 and "cannot find VLMEvalKit's run.py" in proc.stderr


def test_xlsx_predictions_keep_outputs_that_look_like_formulas(tmp_path):
    """openpyxl would store "=..." as a formula: NaN when read back, and run by a spreadsheet."""
    df = pd.DataFrame({"prediction": ["=SUM(A1:A9)", '=HYPERLINK("http://x")', "<answer>B</answer>"], "n": [1, 2, 3]})
    path = tmp_path / "p.xlsx"
    write_table(df, path)
    assert list(read_table(path)["prediction"]) == list(df["prediction"])
    assert all(cell.data_type != "f" for row in openpyxl.load_workbook(path).active.iter_rows() for cell in row)
