"""Documents in the layouts of the Hugging Face datasets the lmms-eval task variants read, made in code.

Each benchmark gets a few questions with known answers and a stand-in response per question (right, wrong, no
readable answer), so a test knows the scores lmms-eval must report. :func:`write_task_folder` writes them as
local parquet files, plus one task file per benchmark that includes the project's task file and points it at
the local data: the task variants run unchanged, only their dataset comes from disk.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from fixtures_benchmarks import photo_variants, png_bytes

from verl_ext.evaluation.lmms_eval_run import TASKS_DIR

RIGHT_THEN_WRONG = "<think>Option {wrong} looks likely.</think> <answer>{right}</answer> <answer>{wrong}</answer>"


@dataclass
class Case:
    """One benchmark's documents and what lmms-eval must make of the stand-in's responses."""

    task: str  # the project's task it tests
    split: str
    docs: list[dict[str, Any]]
    responses: dict[str, str]  # question marker -> response
    acc: float
    answered: float
    grouped_acc: float | None = None
    features: datasets.Features | None = None


def _png(i: int) -> dict:
    return {"bytes": png_bytes(photo_variants(i + 1, seed=11)[i]), "path": None}


def _b64(i: int) -> str:
    return base64.b64encode(png_bytes(photo_variants(i + 1, seed=11)[i])).decode()


def cases() -> dict[str, Case]:
    out: dict[str, Case] = {}
    # MMBench: one question with a circular copy (options rotated); right in both copies -> circular right.
    # A second question right in its first copy only -> circular wrong.
    mmb = []
    questions = {"q0": [("cat", "dog", "A"), ("dog", "cat", "B")], "q1": [("red", "blue", "A"), ("blue", "red", "B")]}
    for q, copies in questions.items():
        for k, (a, b, answer) in enumerate(copies):
            mmb.append(
                {
                    "index": int(q[1]) + k * 1_000_000,
                    "question": f"[{q}-{k}] Which one is shown?",
                    "hint": "nan",
                    "A": a,
                    "B": b,
                    "C": None,
                    "D": None,
                    "E": None,
                    "answer": answer,
                    "category": "c",
                    "image": _png(k),
                }
            )
    out["mmbench"] = Case(
        "ssl_mmbench_en_dev",
        "dev",
        mmb,
        {
            "[q0-0]": "<think>whiskers</think> <answer>cat</answer>",  # option text -> A, right
            "[q0-1]": "<think>whiskers</think> <answer>(B)</answer>",  # right
            "[q1-0]": "<think>Option B?</think> <answer>A</answer>",  # right: the tag, not the thinking
            "[q1-1]": "<think>it is B</think>",  # no answer tag: no answer
        },
        acc=0.75,
        answered=0.75,
        grouped_acc=0.5,
    )
    seed = [
        {
            "question_id": str(i),
            "question": f"[s{i}] What is it?",
            "choice_a": "w",
            "choice_b": "x",
            "choice_c": "y",
            "choice_d": "z",
            "answer": "C",
            "data_type": "image" if i < 2 else "video",  # the video question is not part of SEEDBench_IMG
            "image": [_png(i)],
        }
        for i in range(3)
    ]
    out["seedbench"] = Case(
        "ssl_seedbench_img",
        "test",
        seed,
        {"[s0]": "<answer>C</answer>", "[s1]": "<answer>e</answer>", "[s2]": "<answer>C</answer>"},  # e: not an option
        acc=0.5,
        answered=0.5,
    )
    star = [
        {
            "index": i,
            "question": f"[m{i}] Which colour?\nOptions: A: red, B: green, C: blue, D: grey",
            "answer": "B",
            "category": "coarse perception",
            "l2_category": "l2",
            "image": _png(i),
        }
        for i in range(2)
    ]
    out["mmstar"] = Case(
        "ssl_mmstar",
        "val",
        star,
        {"[m0]": "<think>g</think><answer>B</answer>", "[m1]": RIGHT_THEN_WRONG.format(right="B", wrong="A")},
        acc=0.5,
        answered=1.0,
    )
    rwqa = [
        {
            "question": "[r0] Where is the car?\nA. left\nB. right\nPlease answer directly with only the letter of the "
            "correct option and nothing else.",
            "answer": "B",
            "image": _png(0),
        },
        {
            "question": "[r1] How many lanes are there?\nPlease answer directly with a single word or number.",
            "answer": "Two",
            "image": _png(1),
        },
    ]
    out["realworldqa"] = Case(
        "ssl_realworldqa",
        "test",
        rwqa,
        {"[r0]": "<answer>b</answer>", "[r1]": "<think>count</think> <answer>two.</answer>"},
        acc=1.0,
        answered=1.0,
    )
    blink = [
        {
            "idx": f"val_Counting_{i}",
            "question": f"[b{i}] How many cups are there?",
            "sub_task": "Counting",
            "choices": ["1", "2", "3"],
            "answer": "(C)",
            "prompt": "ignored",
            "image_1": _png(i),
            "image_2": _png(i + 1) if i == 0 else None,
            "image_3": None,
            "image_4": None,
        }
        for i in range(2)
    ]
    features = datasets.Features(
        {
            "idx": datasets.Value("string"),
            "question": datasets.Value("string"),
            "sub_task": datasets.Value("string"),
            "choices": datasets.Sequence(datasets.Value("string")),
            "answer": datasets.Value("string"),
            "prompt": datasets.Value("string"),
            **{f"image_{k}": datasets.Image() for k in range(1, 5)},
        }
    )
    out["blink"] = Case(
        "ssl_blink_counting",
        "val",
        blink,
        {"[b0]": "<answer>C</answer>", "[b1]": "<think>Option C</think> <answer>A</answer>"},
        acc=0.5,
        answered=1.0,
        features=features,
    )
    mme = [
        {
            "index": i,
            "question": f"[e{i}] What does the sign say?",
            "multi-choice options": ["(A) stop", "(B) go", "(C) wait", "(D) turn", "(E) exit"],
            "answer": "E",
            "category": "Perception/Monitoring",
            "l2-category": "l2",
            "bytes": _b64(i),
        }
        for i in range(2)
    ]
    out["mmerealworld"] = Case(
        "ssl_mmerealworld_lite",
        "train",
        mme,
        {"[e0]": "<answer>(E) exit</answer>", "[e1]": "<answer>exit</answer>"},
        acc=1.0,
        answered=1.0,
    )
    hr = [
        {
            "index": i,
            "question": f"[h{i}] What is written on the tiny label?",
            "A": "one",
            "B": "two",
            "C": "three",
            "D": "four",
            "answer": "D",
            "category": "single",
            "cycle_category": "cycle_1",
            "image": _b64(i),
        }
        for i in range(2)
    ]
    out["hrbench"] = Case(
        "ssl_hrbench8k",
        "hrbench_8k",
        hr,
        {"[h0]": "<answer>D</answer>", "[h1]": "<answer>The answer is D</answer"},  # an unclosed tag: no answer
        acc=0.5,
        answered=0.5,
    )
    mmvp = [
        {
            "Index": i + 1,
            "Question": f"[v{i}] Is the door open?",
            "Options": "(a) Open (b) Closed",
            "Correct Answer": "(a)" if i % 2 == 0 else "(b)",
            "image": _png(i),
        }
        for i in range(4)
    ]
    out["mmvp"] = Case(
        "ssl_mmvp",
        "train",
        mmvp,
        {
            "[v0]": "<think>Option B?</think> <answer>A</answer>",
            "[v1]": "<answer>Closed</answer>",
            "[v2]": RIGHT_THEN_WRONG.format(right="A", wrong="B"),
            "[v3]": "<think>cut off by the length limit",
        },
        acc=0.5,
        answered=0.75,
        grouped_acc=0.5,
    )
    return out


def write_task_folder(root: Path) -> dict[str, Case]:
    """Parquet files and ``test_<task>`` task files under ``root``; the stand-in's answers in ``answers.json``."""
    root.mkdir(parents=True, exist_ok=True)
    all_cases = cases()
    answers = {}
    for name, case in all_cases.items():
        data = root / f"{name}.parquet"
        dataset = datasets.Dataset.from_list(case.docs, features=case.features)
        if case.features is None and isinstance(case.docs[0].get("image"), dict):
            dataset = dataset.cast_column("image", datasets.Image())
        if name == "seedbench":
            dataset = dataset.cast_column("image", datasets.Sequence(datasets.Image()))
        dataset.to_parquet(str(data))
        (root / f"test_{case.task}.yaml").write_text(
            f"task: test_{case.task}\n"
            f"include: {TASKS_DIR / (case.task + '.yaml')}\n"
            "dataset_path: parquet\n"
            "dataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    {case.split}: {data}\n"
        )
        answers.update(case.responses)
    (root / "answers.json").write_text(json.dumps(answers))
    return all_cases
