"""Image sources: every benchmark format, dedupe rules, and every kind of bad input counted, never crashing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fixtures_benchmarks import (
    b64,
    exif_jpeg,
    jpeg_bytes,
    photo_variants,
    png_bomb,
    png_bytes,
    write_blink_parquet,
    write_blink_tsv,
    write_imagenet_parquet,
    write_messy_folder,
    write_mmbench_parquet,
    write_mmbench_tsv,
    write_mmstar_parquet,
    write_seedbench_tsv,
)
from PIL import Image

from verl_ext.images import content_id
from verl_ext.sources import SkipCounter, detect_source, get_source, iter_images, resolve_input
from verl_ext.sources.decode import DecodeLimits, ImageSkip, decode_bytes, payload_bytes
from verl_ext.sources.split import carve_split


def collect(source: str | None, path: Path | None, **kwargs):
    skips, notes = SkipCounter(), Counter()
    spec, _ = resolve_input(source, path)
    images = list(iter_images(spec.name, path, skips=skips, notes=notes, **kwargs))
    return images, skips, notes


def test_mmbench_parquet_dedupes_circular_copies_and_repeated_pictures(tmp_path: Path) -> None:
    facts = write_mmbench_parquet(tmp_path / "MMBench")
    assert detect_source(tmp_path / "MMBench") == "mmbench"
    images, skips, _ = collect("mmbench", tmp_path / "MMBench")
    by_split = Counter(i.split for i in images)
    assert by_split == {"dev": facts["dev"]["pictures"], "test": facts["test"]["pictures"]}
    # Dev (the validation split) is read first; circular copies never reach the decoder.
    assert images[0].split == "dev"
    assert skips["circular copy of an earlier row"] == 2 * (facts["dev"]["pictures"] + facts["test"]["pictures"])
    assert skips["duplicate image"] == 2  # index 500 repeats picture 0's bytes, in each split
    assert skips["corrupt or truncated image"] == 2
    assert all(i.image.mode == "RGB" for i in images)
    assert len({i.meta["content_id"] for i in images}) == len(images)
    assert all(int(i.source_id) < 1_000_000 for i in images)


def test_mmbench_tsv_resolves_index_references(tmp_path: Path) -> None:
    path = tmp_path / "MMBench_DEV_EN.tsv"
    facts = write_mmbench_tsv(path)
    assert detect_source(path) == "mmbench"
    images, skips, _ = collect(None, path)
    assert [i.source_id for i in images] == [str(i) for i in range(facts["pictures"])]
    assert {i.split for i in images} == {"dev"}
    assert skips["image repeats another row (reference)"] == facts["references"]
    assert skips["dangling image reference"] == facts["dangling"]
    assert skips["missing image"] == facts["missing"]


def test_mmbench_tsv_per_split_folder_reads_both_splits_validation_first(tmp_path: Path) -> None:
    folder = tmp_path / "LMUData"
    folder.mkdir()
    write_mmbench_tsv(folder / "MMBench_TEST_EN.tsv", seed=2, split="test")
    write_mmbench_tsv(folder / "MMBench_DEV_EN.tsv", seed=1, split="dev")
    assert detect_source(folder) == "mmbench"
    images, _, _ = collect(None, folder)
    splits = [i.split for i in images]
    assert Counter(splits) == {"dev": 5, "test": 5}
    assert splits == sorted(splits)  # dev (the validation split) first, so a shared picture stays out of training


def test_several_unrelated_tsvs_are_a_clear_error(tmp_path: Path) -> None:
    write_mmbench_tsv(tmp_path / "a.tsv")
    write_mmbench_tsv(tmp_path / "b.tsv", seed=2)
    with pytest.raises(ValueError, match="not one benchmark's splits"):
        collect("mmbench", tmp_path)


def test_blink_parquet_reads_every_used_image_slot(tmp_path: Path) -> None:
    facts = write_blink_parquet(tmp_path / "BLINK")
    assert detect_source(tmp_path / "BLINK") == "blink"
    images, skips, _ = collect("blink", tmp_path / "BLINK")
    assert Counter(i.split for i in images) == facts
    ids = [i.source_id for i in images]
    assert "Art_Style/val_Art_Style_1/image_3" in ids and "Art_Style/val_Art_Style_1/image_4" not in ids
    assert not skips  # unused slots are not bad input
    assert [i.split for i in images][: facts["val"]] == ["val"] * facts["val"]  # val files first


def test_blink_tsv_multi_image_lists(tmp_path: Path) -> None:
    path = tmp_path / "BLINK.tsv"
    facts = write_blink_tsv(path)
    images, skips, _ = collect(None, path)
    assert [i.source_id for i in images] == ["0/0", "0/1", "1/0", "1/1", "1/2"]
    assert {i.split for i in images} <= {"train", "val"}  # single split: carved
    assert skips["unparseable image list"] == facts["unparseable"]


def test_mmstar_parquet_image_structs(tmp_path: Path) -> None:
    path = tmp_path / "mmstar.parquet"
    facts = write_mmstar_parquet(path)
    assert detect_source(path) == "mmstar"
    images, skips, _ = collect(None, path)
    assert len(images) == facts["pictures"] and not skips


def test_imagenet_parquet_image_lists(tmp_path: Path) -> None:
    facts = write_imagenet_parquet(tmp_path)
    assert detect_source(tmp_path) == "imagenet"
    images, _, _ = collect(None, tmp_path)
    assert Counter(i.split for i in images) == facts
    assert images[0].split == "val" and images[0].source_id == "validation_0.JPEG"


def test_seedbench_tsv_is_carved_by_content(tmp_path: Path) -> None:
    path = tmp_path / "SEEDBench_IMG.tsv"
    write_seedbench_tsv(path)
    images, _, _ = collect(None, path, val_fraction=0.5)
    for image in images:
        assert image.split == carve_split(image.meta["content_id"], 0.5)


def test_messy_folder_normalises_or_counts_every_file(tmp_path: Path) -> None:
    facts = write_messy_folder(tmp_path / "imgs")
    assert detect_source(tmp_path / "imgs") == "folder"
    images, skips, notes = collect("folder", tmp_path / "imgs")
    assert len(images) == facts["good"]
    assert dict(skips) == facts["skips"]
    assert all(i.image.mode == "RGB" and min(i.image.size) >= 32 for i in images)
    assert notes["animated: first frame"] == 1
    assert notes["EXIF orientation applied"] == 1
    assert notes["extreme aspect centre-cropped"] == 1
    for mode in ("CMYK", "LA", "I;16", "RGBA", "F"):
        assert notes[f"mode {mode} converted"] == 1, mode
    assert notes["mode P converted"] == 2  # the transparent palette PNG and the GIF
    wide = next(i for i in images if i.source_id == "k_wide.png")
    assert wide.image.size == (500, 100)


def test_exif_orientation_shows_the_picture_upright() -> None:
    # Left half red, right half blue as a viewer should see it; stored rotated, with orientation 6 saying
    # "turn 90 degrees clockwise to display".
    upright = Image.new("RGB", (120, 80), "red")
    upright.paste((0, 0, 255), (60, 0, 120, 80))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: what a camera would store
    decoded = decode_bytes(exif_jpeg(stored, 6))
    assert decoded.size == (120, 80)
    left, right = np.asarray(decoded)[40, 10], np.asarray(decoded)[40, 110]
    assert left[0] > 200 and left[2] < 60 and right[2] > 200 and right[0] < 60


def test_transparency_is_flattened_on_white() -> None:
    clear = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    decoded = decode_bytes(png_bytes(clear))
    assert np.asarray(decoded).min() == 255


def test_sixteen_bit_gray_is_rescaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (64, 1))
    decoded = np.asarray(decode_bytes(png_bytes(Image.fromarray(ramp))))
    assert decoded[0, 0, 0] == 0 and decoded[0, -1, 0] == 255 and 120 < decoded[0, 32, 0] < 140


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("@@not base64@", "invalid base64"),
        ("", "empty image data"),
        (b"", "empty image data"),
        (None, "missing image"),
        ({"bytes": None, "path": None}, "missing image"),
        (12, "unsupported image cell"),
    ],
)
def test_bad_payloads_are_named(payload, reason: str) -> None:
    with pytest.raises(ImageSkip, match=reason):
        decode_bytes(payload_bytes(payload))


def test_base64_with_data_uri_and_bytes_agree() -> None:
    picture = photo_variants(1)[0]
    data = jpeg_bytes(picture)
    a = decode_bytes(payload_bytes("data:image/jpeg;base64," + b64(data)))
    b = decode_bytes(payload_bytes({"bytes": data, "path": None}))
    assert content_id(a) == content_id(b)


def test_truncated_pictures_are_skipped_even_when_pillow_is_told_to_load_them(monkeypatch) -> None:
    """Some libraries switch Pillow's LOAD_TRUNCATED_IMAGES on at import (lmms-eval does); decoding must not care."""
    from PIL import ImageFile

    truncated = jpeg_bytes(photo_variants(1)[0])[:1500]
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageSkip, match="corrupt or truncated"):
        decode_bytes(truncated)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the process's own setting is left as it was


def test_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(ImageSkip, match="decompression bomb"):
        decode_bytes(png_bomb())


def test_huge_jpeg_is_reduced_during_decode() -> None:
    picture = photo_variants(1)[0].resize((1600, 1200))
    decoded = decode_bytes(jpeg_bytes(picture), DecodeLimits(max_pixels=400 * 300))
    assert decoded.width * decoded.height <= 400 * 300 * 1.01 and decoded.size[0] / decoded.size[1] == pytest.approx(
        4 / 3, rel=0.02
    )


def test_demo_source_needs_no_input_and_records_origin() -> None:
    images, skips, _ = collect("demo", None)
    assert len(images) >= 45 and not skips
    assert {i.split for i in images} == {"train", "val"}
    assert all(i.meta["license"] and i.meta["origin"] for i in images)
    # A photograph and its crops share a split: no picture content crosses from train to val.
    by_photo: dict[str, set[str]] = {}
    for image in images:
        by_photo.setdefault(image.source_id.split("#")[0], set()).add(image.split)
    assert all(len(splits) == 1 for splits in by_photo.values())


def test_unknown_source_and_missing_input_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown image source 'nope'.*mmbench"):
        get_source("nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_input("mmbench", tmp_path / "missing")
    with pytest.raises(ValueError, match="--input is required"):
        resolve_input("mmbench", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="found no images"):
        detect_source(tmp_path / "empty")
