"""Plots from real TensorBoard event files written with verl's metric names."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from verl_ext.evaluation import plots

TASKS = ("ssl_rotation", "ssl_jigsaw")


def write_run(logdir, steps=range(1, 31), with_tasks=True, with_val=True, start_value=0.0, curriculum=False):
    """A fake GRPO run logged the way verl's TensorBoard adapter logs (add_scalar(key, value, step))."""
    writer = SummaryWriter(str(logdir))
    for step in steps:
        t = step / 30
        metrics = {
            "critic/score/mean": start_value + 0.2 + 0.6 * t,
            "critic/score/min": 0.0,
            "critic/score/max": 1.0,
            "response_length/mean": 300 - 100 * t,
            "response_length/min": 50,
            "response_length/max": 800,
            "response_length/clip_ratio": 0.1 * (1 - t),
            "actor/kl_loss": 0.001 * step,
            "actor/pg_loss": -0.1,
            "actor/entropy": 0.4 - 0.2 * t,
            "actor/pg_clipfrac": 0.02,
        }
        if with_tasks:
            for i, ds in enumerate(TASKS):
                metrics[f"train/{ds}/score"] = 0.3 + 0.5 * t - 0.1 * i
                metrics[f"train/{ds}/acc"] = 0.2 + 0.6 * t - 0.1 * i
                metrics[f"train/{ds}/partial"] = 0.3 + 0.5 * t
                metrics[f"train/{ds}/format"] = min(1.0, 0.5 + t)
                metrics[f"train/{ds}/answered"] = min(1.0, 0.6 + t)
                metrics[f"train/{ds}/flat_groups"] = 0.5 * (1 - t)
                metrics[f"train/{ds}/responses_total"] = 40
        if with_val and (step % 10 == 0 or step == 1):
            for i, ds in enumerate(TASKS):
                metrics[f"val-core/{ds}/acc/mean@1"] = 0.25 + 0.5 * t - 0.05 * i
                metrics[f"val-aux/{ds}/format/mean@1"] = 0.9
                metrics[f"val-aux/{ds}/score/mean@1"] = 0.5
        if curriculum:  # what verl_ext.online.controller logs: a ladder of 3 levels, opened one by one
            frontier = min(2, step // 10)
            metrics["train/curriculum/rotation/frontier"] = frontier
            for level in range(3):
                metrics[f"train/curriculum/rotation/level_{level}/share"] = (
                    1 / (frontier + 1) if level <= frontier else 0
                )
                metrics[f"train/curriculum/rotation/level_{level}/solve_rate"] = max(0.0, t - 0.3 * level)
        for key, value in metrics.items():
            writer.add_scalar(key, value, step)
    writer.close()


def test_load_scalars_reads_verl_names(tmp_path):
    write_run(tmp_path / "run")
    scalars = plots.load_scalars(tmp_path / "run")
    steps, values = scalars["critic/score/mean"]
    assert list(steps) == list(range(1, 31))
    assert values[-1] == pytest.approx(0.8)
    assert len(scalars["val-core/ssl_rotation/acc/mean@1"][0]) == 4  # steps 1, 10, 20, 30


def test_resumed_run_merges_event_files(tmp_path):
    # Two event files (a restart): steps 1-20, then 15-30 with other values; the later file wins on overlaps.
    write_run(tmp_path / "run", steps=range(1, 21))
    write_run(tmp_path / "run", steps=range(15, 31), start_value=1.0)
    steps, values = plots.load_scalars(tmp_path / "run")["critic/score/mean"]
    assert list(steps) == list(range(1, 31))
    assert values[13] < 1.0 and values[14] > 1.0  # step 14 from the first file, step 15 from the second


def test_plot_run_writes_readable_pngs(tmp_path):
    write_run(tmp_path / "run")
    manifest = plots.plot_run(tmp_path / "run", tmp_path / "png")
    expected = {
        "reward.png",
        "acc_per_task.png",
        "partial_per_task.png",
        "format_per_task.png",
        "answered_per_task.png",
        "flat_groups_per_task.png",
        "response_length.png",
        "response_clip_ratio.png",
        "entropy.png",
        "pg_clipfrac.png",
        "kl.png",
        "validation_accuracy.png",
        "validation_format.png",
        "overview.png",
    }
    assert set(manifest["written"]) == expected
    assert list(manifest["skipped"]) == ["curriculum_frontier"]  # an offline run: no curriculum
    for name in expected:
        with Image.open(tmp_path / "png" / name) as im:
            assert im.format == "PNG" and im.width >= 600 and im.height >= 300
            # Not a blank canvas: lines were drawn.
            assert np.asarray(im.convert("L")).std() > 5
    assert json.loads((tmp_path / "png" / "plots.json").read_text())["written"] == manifest["written"]


def test_a_curriculum_run_gets_its_frontier_and_level_mix_plotted(tmp_path):
    write_run(tmp_path / "run", curriculum=True)
    manifest = plots.plot_run(tmp_path / "run", tmp_path / "png")
    new = {"curriculum_frontier.png", "curriculum_rotation_share.png", "curriculum_rotation_solve_rate.png"}
    assert new <= set(manifest["written"]) and manifest["skipped"] == {}
    panels = {p.name: p for p in plots.build_panels(plots.load_scalars(tmp_path / "run"))}
    assert list(panels["curriculum_rotation_share"].lines) == ["level 0", "level 1", "level 2"]
    assert panels["curriculum_frontier"].lines["rotation"][1][-1] == 2
    for name in new:
        with Image.open(tmp_path / "png" / name) as im:
            assert np.asarray(im.convert("L")).std() > 5


def test_missing_series_are_skipped_with_a_note(tmp_path, capsys):
    write_run(tmp_path / "run", with_tasks=False, with_val=False)
    assert plots.main([str(tmp_path / "run"), "--out", str(tmp_path / "png")]) == 0
    out = capsys.readouterr().out
    assert "skipped acc_per_task: not in the log: train/<task>/acc" in out
    assert "skipped validation_accuracy: not in the log: val-core/<task>/acc/mean@N" in out
    assert (tmp_path / "png" / "reward.png").exists() and (tmp_path / "png" / "kl.png").exists()
    assert not (tmp_path / "png" / "acc_per_task.png").exists()


def test_panels_pick_tasks_and_largest_n():
    steps = np.arange(3.0)
    series = (steps, np.array([0.1, 0.2, 0.3]))
    scalars = {
        "val-core/ssl_rotation/acc/mean@1": series,
        "val-core/ssl_rotation/acc/mean@4": (steps, np.array([0.5, 0.6, 0.7])),
        "val-core/ssl_jigsaw/acc/best@4/mean": series,  # not a mean@N figure
        "train/ssl_flip/acc": series,
    }
    panels = {p.name: p for p in plots.build_panels(scalars)}
    assert list(panels["validation_accuracy"].lines) == ["rotation"]
    assert panels["validation_accuracy"].lines["rotation"][1][0] == 0.5
    assert list(panels["acc_per_task"].lines) == ["flip"]
    assert panels["reward"].empty and panels["kl"].empty


def test_smooth_is_debiased_and_bounded():
    values = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    out = plots.smooth(values, 0.6)
    assert out[0] == pytest.approx(1.0) and out[2] == pytest.approx(1.0)
    assert 0 < out[-1] < out[3] < 1
    assert list(plots.smooth(values, 0.0)) == list(values)
    assert not any(math.isnan(v) for v in out)


def test_errors_are_clear(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert plots.main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no TensorBoard event files" in capsys.readouterr().err
    assert plots.main([str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
