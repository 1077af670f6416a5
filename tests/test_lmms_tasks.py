"""The project's lmms-eval task variants, through lmms-eval 0.7.3 itself: its task manager indexes them, its
command line runs them (with a stand-in chat model, documents made in code), its result processing scores
them, and the runner fails when lmms-eval scores nothing."""

from __future__ import annotations

import ast
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from lmms_documents import write_task_folder
from lmms_eval.tasks import TaskManager

from verl_ext.evaluation import downstream_table, lmms_eval_run
from verl_ext.evaluation.instruction import SYSTEM_PROMPT
from verl_ext.evaluation.lmms_questions import read_answer, realworldqa_question

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "configs" / "eval" / "lmms_eval_ssl.json"
STANDIN = REPO / "tests" / "lmms_eval_standin.py"
BLINK_SUBTASKS = 14


@pytest.fixture(scope="module")
def manager() -> TaskManager:
    return TaskManager("ERROR", include_path=str(lmms_eval_run.TASKS_DIR), include_defaults=False)


def test_lmms_eval_indexes_every_task_of_the_template(manager):
    template = lmms_eval_run.load_template(TEMPLATE)
    for task in template["tasks"].values():
        assert task in manager.all_tasks, task
    assert "ssl_blink" in manager.all_groups
    blink = manager._get_config("ssl_blink")
    assert len(blink["task"]) == BLINK_SUBTASKS
    assert all(sub in manager.all_subtasks for sub in blink["task"])
    # Every task keeps a reasoning budget and no stop string (lmms-eval's default stops at the first blank line).
    for task in manager.all_subtasks:
        config = manager._get_config(task)
        assert config["generation_kwargs"]["max_new_tokens"] == 2048 and config["generation_kwargs"]["until"] == []
        assert "judge" not in json.dumps(config, default=str).lower()


@pytest.fixture(scope="module")
def standin_run(tmp_path_factory):
    """One lmms-eval run over every benchmark's test task, with the stand-in model."""
    root = tmp_path_factory.mktemp("lmms")
    cases = write_task_folder(root / "tasks")
    tasks = [f"test_{case.task}" for case in cases.values()]
    seen = root / "seen.jsonl"
    cmd = [
        sys.executable,
        str(STANDIN),
        "--model",
        "think_answer_standin",
        "--model_args",
        f"answers={root / 'tasks' / 'answers.json'},seen={seen}",
        "--tasks",
        ",".join(tasks),
        "--include_path",
        str(root / "tasks"),
        "--batch_size",
        "1",
        "--log_samples",
        "--output_path",
        str(root / "out"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = lmms_eval_run.latest_results(root / "out")
    sent = [json.loads(line) for line in seen.read_text().splitlines()]
    return cases, results, sent, proc, root


def test_every_benchmark_is_scored_as_the_project_reads_answers(standin_run):
    cases, results, _, proc, _ = standin_run
    for name, case in cases.items():
        got = results.get(f"test_{case.task}")
        assert got is not None, f"{name}: no results\n{proc.stderr[-3000:]}"
        assert got.metrics["acc"] == pytest.approx(case.acc), name
        assert got.metrics["answered"] == pytest.approx(case.answered), name
        if case.grouped_acc is not None:
            assert got.metrics["grouped_acc"] == pytest.approx(case.grouped_acc), name
    # SEEDBench_IMG leaves out SEED-Bench's video questions.
    assert results["test_ssl_seedbench_img"].n == 2
    assert results["test_ssl_mmvp"].n == 4


def test_the_model_receives_the_training_instruction_and_the_pictures(standin_run):
    _, _, sent, _, _ = standin_run
    assert sent and all(s["system"] == [SYSTEM_PROMPT] for s in sent)
    assert all(s["gen_kwargs"]["max_new_tokens"] == 2048 and s["gen_kwargs"]["until"] == [] for s in sent)
    by_marker = {s["text"].split("]")[0] + "]": s for s in sent}
    assert by_marker["[b0]"]["pictures"] == 2 and by_marker["[b1]"]["pictures"] == 1  # BLINK: image_1..image_4
    assert by_marker["[q0-1]"]["text"].endswith("Options:\nA. dog\nB. cat")
    assert "E. exit" in by_marker["[e0]"]["text"]
    # RealWorldQA's own "answer directly" instruction would contradict the trained format: it is removed.
    assert "answer directly" not in by_marker["[r0]"]["text"] and by_marker["[r0]"]["text"].endswith("B. right")


def test_table_reads_lmms_eval_results(standin_run):
    *_, root = standin_run
    template = {"tasks": {"MMVP": "test_ssl_mmvp", "MMStar": "test_ssl_mmstar"}, "headline": {"MMVP": "grouped_acc"}}
    # eval_lmms.sh writes OUT_DIR/NAME/...: here OUT_DIR is the run's folder and the model is called "out".
    rows = downstream_table.lmms_eval_rows(root, template, ["out"], ["MMVP", "MMStar"])
    mmvp = rows[0]
    assert (mmvp["tool"], mmvp["benchmark"], mmvp["metric"]) == ("lmms-eval", "MMVP", "pair accuracy")
    assert mmvp["models"]["out"] == {"score": pytest.approx(50.0), "n": 4, "no_answer": pytest.approx(0.25)}
    assert rows[1]["metric"] == "accuracy" and rows[1]["models"]["out"]["no_answer"] == pytest.approx(0.0)


def test_one_table_from_both_tools(standin_run, tmp_path):
    *_, root = standin_run
    template = {"model": "m", "model_args": {}, "tasks": {"MMVP": "test_ssl_mmvp"}, "headline": {"MMVP": "grouped_acc"}}
    (tmp_path / "template.json").write_text(json.dumps(template))
    vlmevalkit = tmp_path / "vlmevalkit"  # no VLMEvalKit results for this model: its rows show as missing
    vlmevalkit.mkdir()
    argv = ["--model", "out", "--vlmevalkit", str(vlmevalkit), "--lmms-eval", str(root)]
    argv += ["--lmms-template", str(tmp_path / "template.json"), "--data", "MMVP", "--out", str(tmp_path / "t")]
    assert downstream_table.main(argv) == 0
    table = (tmp_path / "t" / "table.md").read_text()
    assert "| tool | benchmark | metric | n | out | out no answer |" in table
    assert "| VLMEvalKit | MMVP | pair accuracy | – | – | – |" in table
    assert "| lmms-eval | MMVP | pair accuracy | 4 | 50.00 | 25.0% |" in table
    rows = json.loads((tmp_path / "t" / "table.json").read_text())["rows"]
    assert [(r["tool"], r["benchmark"]) for r in rows] == [("VLMEvalKit", "MMVP"), ("lmms-eval", "MMVP")]


def test_open_answers_are_read_from_the_last_tag():
    doc = {"question": "How many?\nPlease answer directly with a single word.", "answer": "2"}
    question = realworldqa_question(doc)
    assert question.options == {} and question.text == "How many?"
    assert read_answer(question, "<think>3?</think> <answer>3</answer> <answer> 2. </answer>") == "2"
    assert read_answer(question, "<think>count</think> 2") == "2"  # a sole word after the thinking
    assert read_answer(question, "<think>count</think> it is 2") is None


# ------------------------------------------------------------------------------------ the command line


def qwen2_5_vl_arguments() -> set[str]:
    """The keyword arguments of lmms-eval's Qwen2_5_VL model class, read from its source (importing it needs
    decord and qwen_vl_utils, which the CPU stack leaves out)."""
    package = Path(importlib.util.find_spec("lmms_eval").origin).parent
    tree = ast.parse((package / "models" / "simple" / "qwen2_5_vl.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Qwen2_5_VL")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return {a.arg for a in init.args.args + init.args.kwonlyargs} - {"self"}


def test_printed_command_parses_with_lmms_evals_own_parser(monkeypatch, manager):
    from lmms_eval.__main__ import parse_eval_args
    from lmms_eval.utils import simple_parse_args_string

    template = lmms_eval_run.load_template(TEMPLATE)
    cmd = lmms_eval_run.command(template, "/ckpt/merged", "logs/m", ["MMBench_DEV_EN", "BLINK"], num_processes=8)
    assert cmd[:4] == ["accelerate", "launch", "--num_processes", "8"]
    args_at = cmd.index("lmms_eval") + 1
    assert cmd[args_at - 2 : args_at] == ["-m", "lmms_eval"]
    monkeypatch.setattr(sys, "argv", ["lmms_eval", *cmd[args_at:]])
    _, args = parse_eval_args()
    assert args.model == "qwen2_5_vl" and args.tasks == "ssl_mmbench_en_dev,ssl_blink"
    assert Path(args.include_path) == lmms_eval_run.TASKS_DIR and args.output_path == "logs/m"
    model_args = simple_parse_args_string(args.model_args)
    assert model_args["pretrained"] == "/ckpt/merged"
    assert set(model_args) <= qwen2_5_vl_arguments()
    assert "system_prompt" not in model_args  # lmms-eval's chat model ignores it; the tasks send the instruction
    assert all(task in manager.all_tasks for task in args.tasks.split(","))
    single = lmms_eval_run.command(template, "/ckpt/merged", "logs/m", num_processes=1)
    assert single[:3] == ["python", "-m", "lmms_eval"]
    with pytest.raises(ValueError, match="must not contain"):
        lmms_eval_run.command(template, "/ckpt/a,b", "logs")
    with pytest.raises(ValueError, match="without an lmms-eval task"):
        lmms_eval_run.command(template, "/ckpt/m", "logs", ["MMMU"])


def test_command_subcommand_prints_a_shell_line(capsys):
    argv = ["command", "--template", str(TEMPLATE), "--model-path", "/c k/m", "--output-path", "o", "--data", "MMVP"]
    assert lmms_eval_run.main(argv) == 0
    printed = shlex.split(capsys.readouterr().out)  # a path with a space survives the shell
    expected = lmms_eval_run.command(lmms_eval_run.load_template(TEMPLATE), "/c k/m", "o", ["MMVP"])
    assert printed == expected


def test_run_fails_when_lmms_eval_scores_nothing(tmp_path, capsys):
    """lmms-eval 0.7.3 logs an unknown task, skips every task and exits 0: the runner must not."""
    template = {"model": "qwen2_5_vl", "model_args": {"pretrained": "MODEL_PATH"}, "tasks": {"MMVP": "ssl_no_such"}}
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    code = lmms_eval_run.run(template, {"base": str(ckpt)}, tmp_path / "out")
    assert code == 1
    assert "wrote no results for base's tasks ['ssl_no_such']" in capsys.readouterr().err


def test_run_succeeds_when_every_task_is_scored(tmp_path, monkeypatch, capsys):
    root = tmp_path / "tasks"
    cases = write_task_folder(root)
    template = {
        "model": "think_answer_standin",
        "model_args": {"answers": str(root / "answers.json"), "seen": str(tmp_path / "seen.jsonl")},
        "tasks": {"MMVP": "test_ssl_mmvp"},
    }
    real_command = lmms_eval_run.command

    def standin_command(*args, **kwargs):  # the stand-in driver instead of `python -m lmms_eval`
        cmd = real_command(*args, **kwargs)
        at = cmd.index("lmms_eval")
        args_only = cmd[at + 1 :]
        args_only[args_only.index("--include_path") + 1] = str(root)
        return [sys.executable, str(STANDIN), *args_only]

    monkeypatch.setattr(lmms_eval_run, "command", standin_command)
    # model_args get pretrained=PATH too; the stand-in accepts and ignores it.
    assert lmms_eval_run.run(template, {"trained": str(tmp_path)}, tmp_path / "out") == 0, capsys.readouterr().err
    written = lmms_eval_run.latest_results(tmp_path / "out" / "trained")
    assert written["test_ssl_mmvp"].metrics["acc"] == pytest.approx(cases["mmvp"].acc)


def test_eval_lmms_script_checks_its_arguments(tmp_path):
    script = str(REPO / "scripts" / "eval_lmms.sh")
    proc = subprocess.run(["bash", script], capture_output=True, text=True)
    assert proc.returncode == 2 and "NAME=CKPT_DIR" in proc.stderr
    proc = subprocess.run(["bash", script, f"m={tmp_path / 'missing'}"], capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    help_text = subprocess.run(["bash", script, "--help"], capture_output=True, text=True).stdout
    assert "OUT_DIR" in help_text and "set -euo" not in help_text
