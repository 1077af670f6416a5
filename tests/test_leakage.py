"""Leakage guard: training puzzles vs benchmark images, by content id (benchmark files made here in their shapes)."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from verl_ext.evaluation import leakage
from verl_ext.sources import iter_images

REPO = Path(__file__).resolve().parents[1]


def _photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:72, 0:96]
    base = np.stack([x * 2.5, y * 3.0, (x + y) * 1.5], axis=-1) + rng.normal(0, 30, (72, 96, 3)) + seed * 7
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _b64_jpeg(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode()


def write_tsv(path: Path, seeds: list[int], start_index: int = 0) -> None:
    """A VLMEvalKit-style MCQ TSV: base64 JPEG images, options, answer."""
    rows = [
        {
            "index": start_index + i,
            "question": f"q{i}",
            "A": "a",
            "B": "b",
            "answer": "A",
            "category": "c",
            "image": _b64_jpeg(_photo(seed)),
        }
        for i, seed in enumerate(seeds)
    ]
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)


def write_training_rows(path: Path, benchmark: Path, partner_from: Path | None = None) -> list[str]:
    """Puzzle rows (verl format, image bytes omitted) whose content ids come from decoding ``benchmark`` the way
    the builders do; optionally a contrastive partner from another file. Returns the content ids used."""
    images = list(iter_images("mmbench", benchmark))
    partners = list(iter_images("mmbench", partner_from)) if partner_from else []
    rows, used = [], []
    for i, img in enumerate(images):
        partner = partners[i].meta["content_id"] if i < len(partners) else ""
        used += [img.meta["content_id"]] + ([partner] if partner else [])
        rows.append(
            {
                "data_source": "ssl_contrastive",
                "prompt": [{"role": "user", "content": "<image>"}],
                "images": [],
                "reward_model": {"style": "rule", "ground_truth": "yes"},
                "extra_info": {
                    "task": "contrastive",
                    "source": "mmbench",
                    "source_id": img.source_id,
                    "index": i,
                    "content_id": img.meta["content_id"],
                    "partner_content_id": partner,
                },
            }
        )
    pd.DataFrame(rows).to_parquet(path)
    return used


@pytest.fixture()
def files(tmp_path):
    """MMBench-like dev and test TSVs that share one picture (seed 3), and training rows from the test file."""
    dev, test = tmp_path / "MMBench_DEV_EN.tsv", tmp_path / "MMBench_TEST_EN.tsv"
    write_tsv(dev, [1, 2, 3])
    write_tsv(test, [3, 4, 5, 6], start_index=100)
    train = tmp_path / "train.parquet"
    write_training_rows(train, test)
    return dev, test, train


def test_overlap_with_a_raw_benchmark_file(files):
    dev, test, train = files
    report = leakage.check_leakage([train], dev)
    assert report.leaked and len(report.overlap) == 1
    d = report.to_dict()
    assert d["overlap_images"] == 1 and d["benchmark_images"] == 3 and d["train_rows"] == 4
    assert d["fraction_of_benchmark_images"] == pytest.approx(1 / 3)
    assert d["fraction_of_train_rows"] == pytest.approx(1 / 4)
    example = d["examples"][0]
    assert "id 2 (split dev)" in example["benchmark"] and "mmbench 100" in example["train"]
    assert "1 of 3 benchmark images" in report.summary()


def test_no_overlap_and_split_filter(files, tmp_path):
    dev, test, train = files
    other = tmp_path / "other.parquet"
    clean = tmp_path / "MMBench_DEV_clean.tsv"
    write_tsv(clean, [11, 12])
    write_training_rows(other, clean)
    assert not leakage.check_leakage([other], dev).leaked
    assert leakage.check_leakage([train], dev, split="dev").leaked
    with pytest.raises(ValueError, match="no images in split 'val'"):
        leakage.check_leakage([train], dev, split="val")


def test_partner_images_count(files, tmp_path):
    dev, test, _ = files
    # Training rows from clean pictures whose contrastive partners come from the dev file itself.
    clean = tmp_path / "clean.tsv"
    write_tsv(clean, [21, 22])
    train = tmp_path / "train_partners.parquet"
    write_training_rows(train, clean, partner_from=dev)
    report = leakage.check_leakage([train], dev)
    assert len(report.overlap) == 2


def test_puzzle_parquet_as_benchmark(files, tmp_path):
    dev, test, train = files
    val = tmp_path / "val.parquet"
    write_training_rows(val, dev)  # the puzzles a run would validate on, built from dev
    report = leakage.check_leakage([train], val)
    assert len(report.overlap) == 1 and report.benchmark.rows == 3
    with pytest.raises(ValueError, match="--split applies to raw benchmark files"):
        leakage.check_leakage([train], val, split="dev")


def test_bad_inputs(files, tmp_path):
    dev, test, train = files
    with pytest.raises(FileNotFoundError):
        leakage.check_leakage([tmp_path / "none.parquet"], dev)
    with pytest.raises(FileNotFoundError):
        leakage.check_leakage([train], tmp_path / "none.tsv")
    not_puzzles = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(not_puzzles)
    with pytest.raises(ValueError, match="not a puzzle parquet"):
        leakage.check_leakage([not_puzzles], dev)
    with pytest.raises(ValueError, match="no training files"):
        leakage.check_leakage([], dev)


def test_rows_without_content_id_are_counted(tmp_path, files):
    dev, _, _ = files
    train = tmp_path / "t.parquet"
    pd.DataFrame(
        [
            {
                "data_source": "ssl_rotation",
                "prompt": [{"role": "user", "content": "x"}],
                "reward_model": {"ground_truth": "0"},
                "extra_info": {"task": "rotation", "content_id": ""},
            }
        ]
    ).to_parquet(train)
    report = leakage.check_leakage([train], dev)
    assert report.train.skips == {"row without content_id": 1} and not report.leaked


def test_guard_refuses_unless_allowed(files):
    dev, _, train = files
    with pytest.raises(leakage.LeakageError, match="ALLOW_EVAL_IMAGES=1"):
        leakage.guard([train], dev, env={})
    assert leakage.guard([train], dev, env={"ALLOW_EVAL_IMAGES": "1"}).leaked
    assert not leakage.allowed({"ALLOW_EVAL_IMAGES": "0"})


def test_cli_exit_codes(files, tmp_path, capsys, monkeypatch):
    dev, _, train = files
    monkeypatch.delenv("ALLOW_EVAL_IMAGES", raising=False)
    out = tmp_path / "r.json"
    assert leakage.main([str(train), "--benchmark", str(dev), "--json", str(out)]) == 1
    assert "LEAKAGE: 1 of 3" in capsys.readouterr().err
    assert json.loads(out.read_text())["overlap_images"] == 1
    assert leakage.main([str(train), "--benchmark", str(tmp_path / "nope")]) == 2
    monkeypatch.setenv("ALLOW_EVAL_IMAGES", "1")
    assert leakage.main([str(train), "--benchmark", str(dev), "--guard"]) == 0
    assert "training on evaluation images anyway" in capsys.readouterr().err
    # Without --guard the report still fails: ALLOW only applies to run scripts.
    assert leakage.main([str(train), "--benchmark", str(dev)]) == 1


def test_shell_helper(files):
    dev, _, train = files
    script = f'source "{REPO}/scripts/lib/leakage_check.sh"; leakage_guard "{train},{train}" "{dev}"'
    env = {k: v for k, v in os.environ.items() if k != "ALLOW_EVAL_IMAGES"}
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "Refusing to train" in proc.stderr
    proc = subprocess.run(["bash", "-c", script], env={**env, "ALLOW_EVAL_IMAGES": "1"}, capture_output=True, text=True)
    assert proc.returncode == 0
    proc = subprocess.run(
        ["bash", "-c", f'source "{REPO}/scripts/lib/leakage_check.sh"; leakage_guard x'],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
