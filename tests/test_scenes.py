"""The procedural ``scenes`` source: deterministic pictures, disjoint splits, settings, the cue every task relies
on, and its use everywhere a source is used (builder, grey control, online picture index, leakage guard)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_ext.builder import BuildConfig, build
from verl_ext.builder.cli import main as build_main
from verl_ext.evaluation.leakage import check_leakage
from verl_ext.online.pictures import PICTURES_FILE, read_pictures, write_pictures
from verl_ext.sources import SkipCounter, iter_images, resolve_input
from verl_ext.sources.scenes import VAL_OFFSET, SceneRecipe, SceneSettings, render_scene

SMALL = "size=112,train=12,val=6"


def pictures_of(path: Path) -> list[Image.Image]:
    table = pq.read_table(path, columns=["images"]).column("images").to_pylist()
    return [Image.open(io.BytesIO(image["bytes"])).convert("RGB") for images in table for image in images]


def test_a_scene_is_the_same_from_seed_and_index_alone() -> None:
    first = np.asarray(render_scene(SceneRecipe(0, 7, 96, 96)))
    assert np.array_equal(first, np.asarray(render_scene(SceneRecipe(0, 7, 96, 96))))
    assert not np.array_equal(first, np.asarray(render_scene(SceneRecipe(0, 8, 96, 96))))
    assert not np.array_equal(first, np.asarray(render_scene(SceneRecipe(1, 7, 96, 96))))


def test_splits_are_disjoint_index_ranges_with_new_pictures() -> None:
    skips = SkipCounter()
    images = list(iter_images("scenes", SMALL, skips=skips))
    assert not skips
    by_split = {split: [i for i in images if i.split == split] for split in ("train", "val")}
    assert len(by_split["train"]) == 12 and len(by_split["val"]) == 6
    val_indices = [int(i.source_id.rsplit("/", 1)[1]) for i in by_split["val"]]
    train_indices = [int(i.source_id.rsplit("/", 1)[1]) for i in by_split["train"]]
    assert min(val_indices) >= VAL_OFFSET > max(train_indices)
    assert not {i.meta["content_id"] for i in by_split["val"]} & {i.meta["content_id"] for i in by_split["train"]}
    assert all(i.image.size == (112, 112) and i.image.mode == "RGB" for i in images)
    assert all(i.meta["origin"] and i.meta["license"] for i in images)


def test_sizes_and_aspect_ratios_follow_the_settings() -> None:
    assert (SceneSettings(size=224, aspect=1.5).width, SceneSettings(size=224, aspect=1.5).height) == (224, 149)
    assert (SceneSettings(size=200, aspect=0.5).width, SceneSettings(size=200, aspect=0.5).height) == (100, 200)
    wide = next(iter_images("scenes", "size=168,aspect=2,train=1,val=0"))
    assert wide.image.size == (168, 84)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("size=112,colour=3", "keys size, aspect, train, val, seed"),
        ("size=big", "size must be a number"),
        ("size=20", r"size must lie in \[56, 4096\]"),
        ("size=80,aspect=3", "side under 56 px"),
        ("train=0,val=0", "not both 0"),
        ("size", "key=value pairs"),
    ],
)
def test_bad_settings_are_refused_with_the_rule(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_input("scenes", text)


def test_the_sky_is_above_the_ground_in_every_scene() -> None:
    """The rotation and flip cue: the top of an upright scene is bluer and brighter than its bottom."""
    for index in range(40):
        array = np.asarray(render_scene(SceneRecipe(0, index, 112, 112)), dtype=float)
        top, bottom = array[:20], array[-20:]
        blueness = lambda part: (part[..., 2] - part[..., 0]).mean()  # noqa: E731
        assert blueness(top) > blueness(bottom) + 20, index
        assert top.mean() > bottom.mean(), index


def test_a_grey_control_build_changes_the_pictures_and_nothing_else(tmp_path: Path) -> None:
    common = ["--task", "rotation", "--source", "scenes", "--input", SMALL, "--workers", "1", "--no-progress"]
    common += ["--option", 'form="single"', "--option", "angles=[0,180]"]
    assert build_main([*common, "--output", str(tmp_path / "real")]) == 0
    assert build_main([*common, "--output", str(tmp_path / "grey"), "--control", "grey"]) == 0
    for split in ("train", "val"):
        real = pq.read_table(tmp_path / "real" / f"{split}.parquet").to_pylist()
        grey = pq.read_table(tmp_path / "grey" / f"{split}.parquet").to_pylist()
        for a, b in zip(real, grey, strict=True):
            assert a["prompt"] == b["prompt"] and a["reward_model"] == b["reward_model"]
            assert a["extra_info"] == b["extra_info"]
        real_pictures, grey_pictures = (
            pictures_of(tmp_path / "real" / f"{split}.parquet"),
            pictures_of(tmp_path / "grey" / f"{split}.parquet"),
        )
        assert [p.size for p in real_pictures] == [p.size for p in grey_pictures]
        assert all(np.ptp(np.asarray(p)) <= 2 for p in grey_pictures)  # flat (JPEG may wobble by a level)
        assert all(np.ptp(np.asarray(p)) > 50 for p in real_pictures)
    manifest = json.loads((tmp_path / "grey" / "manifest.json").read_text())
    assert manifest["control"] == "grey" and manifest["input"] == SMALL


def test_the_online_index_and_the_leakage_guard_take_scenes(tmp_path: Path) -> None:
    out = tmp_path / "data"
    build(BuildConfig(task="rotation", source="scenes", input=Path(SMALL), output=out, workers=1, progress=False))
    write_pictures(out, progress=False)
    index = read_pictures(out / PICTURES_FILE)
    assert len(index) == 12  # the training scenes, no validation scene
    assert not check_leakage([out / PICTURES_FILE], out / "val.parquet").leaked
    assert not check_leakage([out / "train.parquet"], SMALL, source="scenes", split="val").leaked
    assert check_leakage([out / "train.parquet"], SMALL, source="scenes", split="train").leaked
