"""What scripts/run_grpo.sh refuses before Ray starts: a SAVE_DIR another run is using, a DATA_DIR that is not
whole or is being built, and data rows training would stop on (checked in files from anywhere)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys

import pandas as pd
from PIL import Image
from test_run_scripts import REPO, dry_run, run, setup, write_dataset  # noqa: F401 - setup is a fixture

from verl_ext.folder_lock import FolderLock


def test_a_second_run_on_a_busy_save_dir_stops_before_anything_starts(setup):
    tmp_path, env = setup
    save_dir = tmp_path / "ckpt"
    save_dir.mkdir()
    # A first run, as run_grpo.sh holds it: a shell that keeps the locked descriptor open.
    first = subprocess.Popen(
        [
            "bash",
            "-c",
            'exec {fd}>> "$1/.verl_ext.lock" && "$2" -m verl_ext.folder_lock hold "$1" --fd "$fd" --pid $$ '
            '--purpose "training run first" && echo held && sleep 120',
            "first-run",
            str(save_dir),
            sys.executable,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        assert first.stdout.readline().strip() == "held"
        second = run(["rotation", "mmbench"], env, gpus=8, tmp_path=tmp_path)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode == 1
    assert f"{save_dir} is in use by training run first (pid {first.pid} on" in second.stderr
    assert "or set another SAVE_DIR" in second.stderr and "nothing was started" in second.stderr
    assert not list(save_dir.glob("train_*.log")) and not (save_dir / "hydra").exists()
    # Printing the settings writes nothing, so it needs no lock.
    with FolderLock(save_dir, "training run third"):
        dry_run(["rotation", "mmbench"], env, tmp_path)


def test_a_data_dir_missing_rows_is_refused_with_how_to_rebuild(setup):
    tmp_path, env = setup
    data = tmp_path / "data"
    write_dataset(data)
    pd.read_parquet(data / "dev.parquet").head(2).to_parquet(data / "dev.parquet")  # the manifest names 3
    result = run(["rotation", "mmbench"], env, gpus=8, tmp_path=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"DATA_DIR={data} is not whole: dev.parquet holds 2 rows, the manifest names 3" in result.stderr
    assert f"rm -r {data}" in result.stderr
    (data / "dev.parquet").unlink()
    result = run(["rotation", "mmbench"], env, gpus=8, tmp_path=tmp_path)
    assert "dev.parquet is missing (the manifest names 3 rows)" in result.stderr


def test_a_data_dir_being_built_is_refused(setup):
    tmp_path, env = setup
    with FolderLock(tmp_path / "data", "a build of rotation puzzles from mmbench"):
        result = run(["rotation", "mmbench"], env, gpus=8, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "is being written by a build of rotation puzzles from mmbench (pid" in result.stderr


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_training_files_from_elsewhere_with_bad_rows_are_named_before_ray_starts(setup):
    tmp_path, env = setup
    # A parquet file assembled by hand, passed straight to verl as data.train_files.
    frame = pd.read_parquet(tmp_path / "data" / "test.parquet")
    frame.at[3, "images"] = [{"bytes": _jpeg()[:200], "path": None}]  # truncated picture
    frame.at[7, "extra_info"] = {**frame.at[7, "extra_info"], "task": "spin"}
    frame.at[9, "reward_model"] = {"ground_truth": None}
    frame.at[11, "reward_model"] = {"ground_truth": "45"}  # not one of the puzzle's angles
    frame.at[12, "images"] = [{"bytes": None, "path": "/nowhere/picture.jpg"}]
    elsewhere = tmp_path / "elsewhere.parquet"
    frame.to_parquet(elsewhere)
    result = run(["rotation", "mmbench", f"data.train_files={elsewhere}"], env, gpus=8, tmp_path=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    err = result.stderr
    assert f"{elsewhere}: 5 of 512 rows cannot be trained on" in err
    assert "row 3: image 1 of 1 does not decode" in err
    assert "row 7: unknown puzzle task 'spin'" in err
    assert "row 9: reward_model.ground_truth is missing" in err
    assert "row 11: ground truth '45' is not an answer task 'rotation' scores as right" in err
    assert "row 12: image 1 of 1 has no bytes (its path '/nowhere/picture.jpg' is not read" in err
    # The same rows in order pass.
    dry_run(["rotation", "mmbench", f"data.train_files={tmp_path / 'data' / 'test.parquet'}"], env, tmp_path)


def test_the_manifest_is_checked_for_every_split_it_names(setup):
    tmp_path, env = setup
    data = tmp_path / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["splits"]["extra"] = 4  # a split the build wrote and that went missing since
    (data / "manifest.json").write_text(json.dumps(manifest))
    result = run(["rotation", "mmbench"], env, gpus=8, tmp_path=tmp_path)
    assert result.returncode == 1 and "extra.parquet is missing (the manifest names 4 rows)" in result.stderr


def test_row_numbers_count_from_the_file_start_whatever_the_worker_count(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from verl_ext.launch.rows_check import check_file

    write_dataset(tmp_path / "data", rows={"test": 40, "dev": 1})
    frame = pd.read_parquet(tmp_path / "data" / "test.parquet")
    frame.at[25, "reward_model"] = {"ground_truth": None}
    frame.at[38, "extra_info"] = {**frame.at[38, "extra_info"], "task": None}
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=10)
    for workers in (1, 2, 3):
        report = check_file(path, workers=workers)
        assert (report.rows, report.bad_rows) == (40, 2)
        assert [(p.row, p.problem.split(";")[0]) for p in report.problems] == [
            (25, "reward_model.ground_truth is missing"),
            (38, "extra_info.task is missing (the reward reads the puzzle's task from it)"),
        ]
