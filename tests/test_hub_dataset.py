"""Built puzzle folders open as datasets of pictures (Hub features and dataset card, verl_ext/builder/hub.py)."""

from __future__ import annotations

import io
import json
import shlex
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from verl_ext.builder import BuildConfig, build
from verl_ext.builder.cli import config_from_args, parser
from verl_ext.builder.hub import CARD, hub_features
from verl_ext.builder.rows import SCHEMA
from verl_ext.sources.demo import bundled_photos


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("hub") / "demo_rotation"
    manifest = build(BuildConfig(task="rotation", source="demo", output=output, progress=False))
    return output, manifest


def card_of(folder: Path) -> tuple[dict, str]:
    text = (folder / CARD).read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_a_built_file_loads_as_pictures_with_the_same_columns(demo_build, tmp_path):
    from datasets import Image as HFImage
    from datasets import List, load_dataset

    folder, manifest = demo_build
    path = folder / "train.parquet"
    assert pq.read_schema(path).remove_metadata().equals(SCHEMA)  # what verl reads is unchanged
    loaded = load_dataset("parquet", data_files=str(path), cache_dir=str(tmp_path))["train"]
    assert loaded.features["images"] == List(HFImage())
    assert len(loaded) == manifest["splits"]["train"]
    stored = pq.read_table(path, columns=["images"]).column("images").to_pylist()
    for row, pictures in zip(loaded, stored):
        assert len(row["images"]) == len(pictures)
        for picture, raw in zip(row["images"], pictures):
            assert isinstance(picture, Image.Image)
            assert picture.tobytes() == Image.open(io.BytesIO(raw["bytes"])).tobytes()


def test_the_folder_loads_with_the_splits_its_card_declares(demo_build, tmp_path):
    from datasets import Image as HFImage
    from datasets import List, load_dataset

    folder, manifest = demo_build
    (folder / "online").mkdir(exist_ok=True)  # other files in the folder (here a picture index) are not splits
    pq.write_table(pa.table({"x": [1]}), folder / "online" / "pictures.parquet")
    loaded = load_dataset(str(folder), cache_dir=str(tmp_path))
    assert {split: len(rows) for split, rows in loaded.items()} == manifest["splits"]
    assert all(rows.features["images"] == List(HFImage()) for rows in loaded.values())


def test_the_card_says_what_the_task_asks_where_the_pictures_come_from_and_how_to_rebuild(demo_build):
    folder, manifest = demo_build
    front, body = card_of(folder)
    assert front["license"] == "cc-by-4.0"
    assert "rotation" in front["tags"]
    splits = front["configs"][0]["data_files"]
    assert {item["split"]: item["path"] for item in splits} == manifest["files"]
    assert "By how many degrees (counter-clockwise) was a picture turned?" in body
    assert "Image 2 is image 1 turned counter-clockwise" in body  # the first training puzzle, verbatim
    for photo in bundled_photos():  # CC-BY-4.0 asks for the authors
        assert f"{photo['file']} (and its quadrants) | {photo['author']} | {photo['license']}" in body
    assert f"| train | training | {manifest['splits']['train']} |" in body
    command = body.split("```bash\n", 1)[1].split("\n```", 1)[0]
    words = shlex.split(command)
    assert words[:2] == ["python", "build_benchmarks/build.py"]
    rebuilt = asdict(config_from_args(parser().parse_args(words[2:])))
    for key in ("task", "source", "seed", "difficulty", "options", "max_prompt_tokens", "control", "image_format"):
        assert rebuilt[key] == manifest["args"][key], key
    assert str(folder.parent) not in body  # no local path in a card meant for the Hub


def test_a_control_and_a_mix_say_so(tmp_path):
    control = tmp_path / "grey"
    build(BuildConfig(task="rotation", source="demo", output=control, progress=False, control="grey", limit=4))
    assert "**Control build (grey):**" in card_of(control)[1]
    mix = tmp_path / "mix"
    tasks = "rotation:0.5,position:0.5"
    build(BuildConfig(task="mix", tasks=tasks, source="scenes", input="train=8,val=4", output=mix, progress=False))
    front, body = card_of(mix)
    assert front["license"] == "cc0-1.0" and {"rotation", "position"} <= set(front["tags"])
    assert "- **rotation** (share 0.5)" in body and "- **position** (share 0.5)" in body
    assert "--input train=8,val=4" in body and "--tasks rotation:0.5,position:0.5" in body


def test_features_cover_every_column_and_refuse_an_unknown_type():
    features = hub_features(SCHEMA)
    assert list(features) == SCHEMA.names
    assert features["images"] == [{"_type": "Image"}]
    text = {"dtype": "string", "_type": "Value"}
    assert features["prompt"] == [{"role": text, "content": text}]
    assert json.loads(json.dumps(features)) == features
    with pytest.raises(TypeError, match="no Hugging Face feature"):
        hub_features(pa.schema([("when", pa.timestamp("s"))]))
