"""The build pipeline: verl rows, determinism across workers, atomic output, token budget, mixes, pairs, CLI."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fixtures_benchmarks import write_mmbench_parquet, write_mmbench_tsv
from PIL import Image

from verl_ext.builder import EXTRA_INFO_KEYS, BuildConfig, build
from verl_ext.builder.budget import PromptCounter, VisionGrid, fit_to_budget, image_tokens
from verl_ext.builder.cli import benchmark_main, main
from verl_ext.builder.preview import main as preview_main
from verl_ext.folder_lock import LOCK_NAME
from verl_ext.sources import iter_images
from verl_ext.tasks import TASKS, Puzzle, PuzzleSkip, Task
from verl_ext.tasks.base import positive_negative_pair

REPO = Path(__file__).resolve().parent.parent


class ToyTurn(Task):
    """A minimal label task defined here so the pipeline is tested apart from the real tasks."""

    name = "toy_turn"
    presets = {"easy": {"quarter": 1}, "medium": {"quarter": 1}, "hard": {"quarter": 3}}

    def make(self, image, rng, partner=None, *, quarter: int = 1) -> Puzzle:
        k = int(rng.integers(0, 4))
        if image.width < 40:
            raise PuzzleSkip("toy: too small")
        turned = image.rotate(90 * k * quarter, expand=True)
        return Puzzle([image, turned], "A: <image> B: <image> How many quarter turns?", str(k), {"k": k})


class ToyPair(Task):
    """A minimal partner task: same picture (positive) or not, recording which pictures it was given."""

    name = "toy_pair"
    needs_partner = True
    presets = {"easy": {}, "medium": {}, "hard": {}}

    def pair_roles(self, coin: float):
        return positive_negative_pair(coin)

    def make(self, image, rng, partner=None, *, positive: bool | None = None) -> Puzzle:
        other = image if positive else partner
        assert other is not None
        return Puzzle(
            [image.resize((64, 64)), other.resize((64, 64))],
            "<image> <image> Same?",
            "yes" if positive else "no",
            {"positive": bool(positive)},
        )


class ToyBoth(Task):
    """A partner task with the default pair roles: each picture makes one puzzle showing itself and the other."""

    name = "toy_both"
    needs_partner = True
    presets = {"easy": {}, "medium": {}, "hard": {}}

    def make(self, image, rng, partner=None) -> Puzzle:
        assert partner is not None
        return Puzzle([image.resize((64, 64)), partner.resize((64, 64))], "<image> <image> Which?", "A", {})


@pytest.fixture(autouse=True)
def toy_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TASKS, "toy_turn", ToyTurn())
    monkeypatch.setitem(TASKS, "toy_pair", ToyPair())
    monkeypatch.setitem(TASKS, "toy_both", ToyBoth())


def test_a_paired_task_says_how_a_pair_becomes_puzzles_and_the_builder_follows(tmp_path: Path) -> None:
    manifest = build(config(tmp_path, task="toy_both"))
    for split, count in manifest["splits"].items():
        rows = read(tmp_path / "out" / f"{split}.parquet")
        assert len(rows) == count and count % 2 == 0
        assert all(row["extra_info"]["partner_content_id"] for row in rows)  # every puzzle got its partner
        assert manifest["pair_roles"][split] == {"first": count // 2, "second": count // 2}


def config(tmp_path: Path, **kwargs) -> BuildConfig:
    defaults = dict(task="toy_turn", source="demo", output=tmp_path / "out", workers=1, progress=False)
    return BuildConfig(**{**defaults, **kwargs})


def read(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_rows_follow_verl_schema(tmp_path: Path) -> None:
    manifest = build(config(tmp_path, task="rotation", limit=6))
    out = tmp_path / "out"
    assert manifest["splits"] == {"train": 6, "val": 6}
    assert (manifest["train_split"], manifest["val_split"]) == ("train", "val")
    for split in ("train", "val"):
        rows = read(out / f"{split}.parquet")
        assert [r["extra_info"]["index"] for r in rows] == list(range(len(rows)))
        for row in rows:
            assert row["data_source"] == "ssl_rotation" and row["ability"] == "visual_puzzle"
            assert row["prompt"][0]["role"] == "user"
            assert row["prompt"][0]["content"].count("<image>") == len(row["images"]) >= 1
            assert all(im["path"] is None and im["bytes"][:2] == b"\xff\xd8" for im in row["images"])
            assert row["reward_model"] == {"style": "rule", "ground_truth": row["reward_model"]["ground_truth"]}
            info = row["extra_info"]
            assert list(info) == EXTRA_INFO_KEYS
            assert info["task"] == "rotation" and info["source"] == "demo" and info["split"] == split
            assert json.loads(info["params"])["angle"] == int(row["reward_model"]["ground_truth"])
            assert info["partner_content_id"] == "" and info["prompt_tokens"] <= 1024
    saved = json.loads((out / "manifest.json").read_text())
    for key in ("task", "source", "train_split", "val_split", "splits", "skips", "seed", "args", "seconds"):
        assert key in saved


def test_same_rows_whatever_the_worker_count(tmp_path: Path) -> None:
    write_mmbench_parquet(tmp_path / "MMBench")
    for task in ("rotation", "toy_pair"):
        outs = []
        for workers in (1, 2):
            out = tmp_path / f"{task}-{workers}"
            build(
                config(tmp_path, task=task, source="mmbench", input=tmp_path / "MMBench", output=out, workers=workers)
            )
            outs.append(out)
        for split in ("dev", "test"):
            a, b = (pq.read_table(o / f"{split}.parquet") for o in outs)
            assert a.num_rows > 0 and a.equals(b), (task, split)


def test_mmbench_roles_and_one_puzzle_per_picture(tmp_path: Path) -> None:
    facts = write_mmbench_parquet(tmp_path / "MMBench")
    manifest = build(config(tmp_path, source=None, input=tmp_path / "MMBench"))
    assert manifest["source"] == "mmbench"
    assert (manifest["train_split"], manifest["val_split"]) == ("test", "dev")
    assert manifest["splits"] == {"dev": facts["dev"]["pictures"], "test": facts["test"]["pictures"]}
    rows = read(tmp_path / "out" / "test.parquet")
    assert len({r["extra_info"]["content_id"] for r in rows}) == len(rows)
    more = build(
        config(tmp_path, source="mmbench", input=tmp_path / "MMBench", output=tmp_path / "k3", puzzles_per_image=3)
    )
    assert more["splits"] == {s: 3 * n for s, n in manifest["splits"].items()}


def test_limit_counts_pictures_per_source_split(tmp_path: Path) -> None:
    path = tmp_path / "MMBench_DEV_EN.tsv"
    write_mmbench_tsv(path)
    manifest = build(config(tmp_path, source=None, input=path, limit=2))
    assert manifest["splits"] == {"dev": 2} and manifest["train_split"] is None
    carved = build(config(tmp_path, source=None, input=path, carve=True, output=tmp_path / "carved", val_fraction=0.5))
    assert set(carved["splits"]) <= {"train", "val"} and sum(carved["splits"].values()) == 5


def _outputs(folder: Path) -> list[str]:
    """The files of a build folder, without its lock file (verl_ext.folder_lock keeps it)."""
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)


def _manifest_agrees_with_files(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(p.stem for p in folder.glob("*.parquet")) == sorted(manifest["splits"])
    for split, rows in manifest["splits"].items():
        assert pq.read_metadata(folder / f"{split}.parquet").num_rows == rows


def test_a_second_build_into_a_busy_folder_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(config(tmp_path, limit=2))
    before = {p.name: p.read_bytes() for p in out.glob("*") if p.name != LOCK_NAME}
    # Another process holds the folder: a build in a child process that pauses while it holds it.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from verl_ext.folder_lock import FolderLock\n"
            "with FolderLock(sys.argv[1], 'a build of jigsaw puzzles from demo'):\n"
            "    print('held', flush=True); time.sleep(120)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = subprocess.run(
            [
                sys.executable,
                str(REPO / "build_benchmarks" / "build.py"),
                "--task",
                "rotation",
                "--source",
                "demo",
                "--output",
                str(out),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode == 2
    assert f"{out} is in use by a build of jigsaw puzzles from demo (pid {holder.pid} on" in refused.stderr
    assert "another --output" in refused.stderr
    assert {p.name: p.read_bytes() for p in out.glob("*") if p.name != LOCK_NAME} == before
    # The holder was killed (SIGKILL): the kernel dropped its lock, so the folder is free again at once.
    build(config(tmp_path, limit=3, task="jigsaw"))
    _manifest_agrees_with_files(out)


def test_two_builds_started_together_leave_one_whole_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(REPO / "build_benchmarks" / "build.py"),
        "--source",
        "demo",
        "--output",
        str(out),
        "--no-progress",
    ]
    builds = [
        subprocess.Popen([*command, "--task", task], stderr=subprocess.PIPE, text=True)
        for task in ("rotation", "jigsaw")
    ]
    results = [(b.wait(timeout=300), b.stderr.read()) for b in builds]
    assert any(code == 0 for code, _ in results), results
    for code, stderr in results:
        # The loser may arrive between the winner's flock and its note of who it is: folder_lock then says so.
        assert code == 0 or (code == 2 and "is in use by" in stderr), stderr
    _manifest_agrees_with_files(out)


def test_a_rebuild_killed_while_replacing_files_leaves_no_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(config(tmp_path, limit=2))
    script = textwrap.dedent(
        f"""
        import os, signal
        from verl_ext.builder import writer
        def die(self):
            os.kill(os.getpid(), signal.SIGKILL)
        writer.SplitWriter.commit = die  # killed just before the new files are renamed into place
        from verl_ext.builder import BuildConfig, build
        build(BuildConfig(task="jigsaw", source="demo", output={str(out)!r}, workers=1, progress=False, limit=3))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    # The old puzzles are still there, but without a manifest the folder reads as not built: the launcher
    # builds it again instead of training on files no manifest describes.
    assert not (out / "manifest.json").exists()


def test_killed_build_leaves_no_parquet_and_rerun_completes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # A build that kills itself (SIGKILL: no cleanup of any kind) right after its first rows reach the disk.
    script = textwrap.dedent(
        f"""
        import os, signal
        from verl_ext.builder import writer
        original = writer.SplitWriter._flush
        def flush_then_die(self, split):
            original(self, split)
            os.kill(os.getpid(), signal.SIGKILL)
        writer.SplitWriter._flush = flush_then_die
        writer._ROWS_PER_GROUP = 2
        from verl_ext.builder import BuildConfig, build
        build(BuildConfig(task="rotation", source="demo", output={str(out)!r}, workers=1, progress=False))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert not list(out.glob("*.parquet")) and not (out / "manifest.json").exists()
    assert list(out.glob(".*.tmp-*")), "the killed build had started writing"
    build(config(tmp_path, task="rotation", limit=3))
    assert _outputs(out) == ["README.md", "manifest.json", "train.parquet", "val.parquet"]


def test_failing_build_keeps_the_previous_complete_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(config(tmp_path, limit=2))
    before = (tmp_path / "out" / "train.parquet").read_bytes()
    from verl_ext.builder import writer

    def explode(self, row):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.SplitWriter, "add", explode)
    with pytest.raises(KeyboardInterrupt):
        build(config(tmp_path, limit=3, seed=5))
    assert (tmp_path / "out" / "train.parquet").read_bytes() == before
    assert not list((tmp_path / "out").glob(".*.tmp-*"))


def test_prompts_fit_the_token_budget_and_the_count_is_recorded(tmp_path: Path) -> None:
    manifest = build(config(tmp_path, task="jigsaw", difficulty="medium", limit=5, max_prompt_tokens=850))
    counter = PromptCounter()
    for split in manifest["splits"]:
        for row in read(tmp_path / "out" / f"{split}.parquet"):
            sizes = [Image.open(io.BytesIO(im["bytes"])).size for im in row["images"]]
            recorded = row["extra_info"]["prompt_tokens"]
            assert recorded == counter.prompt_tokens(row["prompt"][0]["content"], sizes) <= 850
            assert row["extra_info"]["image_scale"] <= 1.0
    with pytest.raises(RuntimeError, match="prompt text over token budget"):
        build(
            config(tmp_path, task="jigsaw", difficulty="hard", limit=2, max_prompt_tokens=100, output=tmp_path / "none")
        )


def test_fit_scales_every_image_by_one_factor() -> None:
    images = [Image.new("RGB", (1000, 800)), Image.new("RGB", (400, 1000))]
    counter = PromptCounter()
    fitted = fit_to_budget(images, "<image><image> question", 600, counter)
    assert fitted.prompt_tokens <= 600 and fitted.scale < 1
    for before, after in zip(images, fitted.images):
        assert after.width % 28 == 0 and after.height % 28 == 0
        assert after.width / before.width == pytest.approx(fitted.scale, abs=28 / before.width)
    untouched = fit_to_budget([Image.new("RGB", (56, 56))], "<image> q", 600, counter)
    assert untouched.scale == 1.0 and untouched.images[0].size == (56, 56)
    with pytest.raises(PuzzleSkip, match="under 28 px"):
        fit_to_budget([Image.new("RGB", (60, 60))] * 40, "<image>" * 40, 200, counter)


def test_smart_resize_matches_qwen_vl_utils() -> None:
    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()
    from qwen_vl_utils.vision_process import smart_resize

    rng = np.random.default_rng(0)
    grid = VisionGrid()
    for _ in range(300):
        w, h = (int(v) for v in rng.integers(10, 5000, size=2))
        if max(w, h) / min(w, h) > 200:
            continue
        assert grid.resize(w, h) == smart_resize(h, w, 28)[::-1]
    assert image_tokens(56, 56) == 4 and image_tokens(10, 10) == 4


def test_mix_keeps_each_rows_task_and_follows_the_weights(tmp_path: Path) -> None:
    manifest = build(config(tmp_path, task="mix", tasks="toy_turn:3,rotation:1", puzzles_per_image=8))
    rows = [r for s in manifest["splits"] for r in read(tmp_path / "out" / f"{s}.parquet")]
    shares = Counter(r["extra_info"]["task"] for r in rows)
    assert set(shares) == {"toy_turn", "rotation"}
    assert 0.65 < shares["toy_turn"] / len(rows) < 0.85
    assert all(r["data_source"] == f"ssl_{r['extra_info']['task']}" for r in rows)
    assert manifest["tasks"] == {"toy_turn": 0.75, "rotation": 0.25}
    with pytest.raises(ValueError, match="unknown puzzle task 'nope'"):
        build(config(tmp_path, task="mix", tasks="toy_turn:1,nope:1"))
    with pytest.raises(ValueError, match="--task mix needs --tasks"):
        build(config(tmp_path, task="mix"))


@pytest.mark.parametrize("task", ["toy_pair", "contrastive"])
def test_pairs_are_balanced_and_never_show_one_picture_twice(tmp_path: Path, task: str) -> None:
    manifest = build(config(tmp_path, task=task, puzzles_per_image=2))
    photo_of = {i.meta["content_id"]: i.source_id.split("#")[0] for i in iter_images("demo")}
    for split, rows_in_split in manifest["splits"].items():
        rows = read(tmp_path / "out" / f"{split}.parquet")
        positives = [r for r in rows if not r["extra_info"]["partner_content_id"]]
        assert len(positives) * 2 == len(rows) == rows_in_split
        assert manifest["pair_roles"][split] == {"positive": len(positives), "negative": len(positives)}
        for row in rows:
            info = row["extra_info"]
            assert json.loads(info["params"])["positive"] == (not info["partner_content_id"])
            assert row["reward_model"]["ground_truth"] == ("yes" if not info["partner_content_id"] else "no")
            if info["partner_content_id"]:
                assert info["partner_content_id"] != info["content_id"]
                assert photo_of[info["partner_content_id"]] != photo_of[info["content_id"]]


def test_task_errors_are_counted_or_raised_with_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self, image, rng, partner=None, **knobs):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(ToyTurn, "make", broken)
    with pytest.raises(RuntimeError, match="task error \\(ZeroDivisionError\\)"):
        build(config(tmp_path, limit=2))
    with pytest.raises(ZeroDivisionError):
        build(config(tmp_path, limit=2, strict=True))


def test_bad_options_are_rejected_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no option"):
        build(config(tmp_path, task="jigsaw", options=("colour=3",)))
    manifest = build(config(tmp_path, task="jigsaw", options=("rows=1", "cols=3"), limit=2))
    rows = read(tmp_path / "out" / "train.parquet")
    assert all(len(r["images"]) == 3 for r in rows) and manifest["knobs"]["jigsaw"]["cols"] == 3


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            [
                "--task",
                "rotation",
                "--source",
                "mmbench",
                "--input",
                str(tmp_path / "nope"),
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "input path does not exist" in capsys.readouterr().err
    assert main(["--task", "spin", "--source", "demo", "--output", str(tmp_path / "o")]) == 2
    assert "unknown puzzle task 'spin'" in capsys.readouterr().err
    (tmp_path / "file.csv").write_text("a,b\n")
    assert main(["--task", "rotation", "--input", str(tmp_path / "file.csv"), "--output", str(tmp_path / "o")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err


def test_cli_demo_then_preview(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert (
        main(
            [
                "--task",
                "position",
                "--source",
                "demo",
                "--output",
                str(out),
                "--limit",
                "3",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert preview_main([str(out / "val.parquet"), "--out", str(tmp_path / "preview"), "-n", "2"]) == 0
    page = (tmp_path / "preview" / "preview.html").read_text()
    assert page.count("<section>") == 2 and "data:image/jpeg;base64," in page
    assert Image.open(tmp_path / "preview" / "contact_sheet.png").height > 100


def test_make_mmbench_scripts_default_to_datasets_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mmbench_parquet(tmp_path / "datasets" / "MMBench")
    monkeypatch.chdir(tmp_path)
    assert benchmark_main("jigsaw", ["--workers", "1", "--limit", "2"]) == 0
    manifest = json.loads((tmp_path / "datasets/ssl/mmbench_jigsaw/manifest.json").read_text())
    assert manifest["splits"] == {"dev": 2, "test": 2} and manifest["train_split"] == "test"
    script = (REPO / "build_benchmarks" / "makerotation_mmbench.py").read_text()
    assert 'benchmark_main("rotation")' in script


def test_make_scripts_run_as_files(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "build_benchmarks" / "makeposition_mmbench.py"),
            "--input",
            str(tmp_path / "x"),
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2 and "input path does not exist" in done.stderr


def test_rerun_replaces_stale_splits(tmp_path: Path) -> None:
    build(config(tmp_path, limit=2))
    write_mmbench_tsv(tmp_path / "MMBench_DEV_EN.tsv")
    build(replace(config(tmp_path, limit=2), source=None, input=tmp_path / "MMBench_DEV_EN.tsv"))
    assert _outputs(tmp_path / "out") == ["README.md", "dev.parquet", "manifest.json"]
