"""Benchmark files in their real shapes, written in code from real photographs (the bundled demo images).

Used by tests/test_sources*.py and tests/test_build*.py. Each writer returns the path it wrote plus what a
correct reader must find there, so the tests compare against facts of the fixture, not against the reader.
"""

from __future__ import annotations

import base64
import functools
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from verl_ext.sources.demo import DEMO_DIR, bundled_photos


@functools.cache
def _photos() -> tuple[Image.Image, ...]:
    return tuple(Image.open(DEMO_DIR / p["file"]).convert("RGB") for p in bundled_photos())


def photos() -> list[Image.Image]:
    """The nine bundled real photographs, decoded (once per test session)."""
    return list(_photos())


def photo_variants(n: int, seed: int = 0) -> list[Image.Image]:
    """``n`` distinct real pictures: crops of the photographs at MMBench-like sizes (long side 180..900 px)."""
    rng = np.random.default_rng(seed)
    base = photos()
    out = []
    for i in range(n):
        photo = base[i % len(base)]
        w = int(rng.integers(photo.width // 3, photo.width))
        h = int(rng.integers(photo.height // 3, photo.height))
        left, top = int(rng.integers(0, photo.width - w + 1)), int(rng.integers(0, photo.height - h + 1))
        crop = photo.crop((left, top, left + w, top + h))
        target = int(rng.integers(180, 900))
        scale = target / max(crop.size)
        out.append(crop.resize((max(40, round(crop.width * scale)), max(40, round(crop.height * scale)))))
    return out


def jpeg_bytes(image: Image.Image, quality: int = 90, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **kwargs)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **kwargs)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_bomb(side: int = 40000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (a decompression bomb: never decode it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _mmbench_rows(images: list[Image.Image], split: str, corrupt: bool = True) -> tuple[list[dict], dict]:
    """MMBench rows: every question twice more as circular copies (index + k*1e6), one picture reused by a
    second question, one corrupt image, null C/D options."""
    rows = []
    for i, image in enumerate(images):
        encoded = b64(jpeg_bytes(image))
        for k in range(3):  # circular copies repeat the image under index + k * 1_000_000
            rows.append(
                {
                    "index": i + k * 1_000_000,
                    "question": f"Q{i}\nwith a newline",
                    "hint": None,
                    "A": "x",
                    "B": "y",
                    "C": None,
                    "D": None,
                    "answer": "A",
                    "category": "c",
                    "image": encoded,
                    "source": "s",
                    "l2-category": "l2",
                    "comment": None,
                    "split": split,
                }
            )
    rows.append({**rows[0], "index": 500, "question": "another question on picture 0"})
    if corrupt:
        broken = jpeg_bytes(images[0])[:1500]
        rows.append({**rows[0], "index": 501, "image": b64(broken)})
    expected = {"pictures": len(images), "corrupt": int(corrupt)}
    return rows, expected


def write_mmbench_parquet(root: Path, n_dev: int = 4, n_test: int = 6) -> dict:
    """HuggingFaceM4/MMBench layout: data/{validation,test}-00000-of-00001.parquet, image = base64 string."""
    pics = photo_variants(n_dev + n_test)
    (root / "data").mkdir(parents=True, exist_ok=True)
    facts = {}
    for name, split, images in (("validation", "dev", pics[:n_dev]), ("test", "test", pics[n_dev:])):
        rows, expected = _mmbench_rows(images, split)
        table = pa.Table.from_pylist(rows)
        # Two row groups, so readers must stream across them.
        pq.write_table(table, root / "data" / f"{name}-00000-of-00001.parquet", row_group_size=max(1, len(rows) // 2))
        facts[split] = expected
    return facts


def write_mmbench_tsv(path: Path, n: int = 5, seed: int = 1, split: str = "dev") -> dict:
    """OpenCompass MMBench_DEV_EN.tsv: circular copies and a repeated picture refer to other rows by index."""
    images = photo_variants(n, seed=seed)
    rows = []
    for i, image in enumerate(images):
        rows.append(
            {
                "index": i,
                "question": f"What is\tshown? ({i})\nTwo lines.",
                "hint": "",
                "A": "a",
                "B": "b",
                "C": "",
                "D": "",
                "answer": "A",
                "category": "c",
                "l2-category": "l2",
                "split": split,
                "image": b64(jpeg_bytes(image)),
            }
        )
        rows.append({**rows[-1], "index": i + 1_000_000, "image": str(i)})  # circular copy: a reference
    rows.append({**rows[0], "index": 77, "image": "3"})  # another question on picture 3: a reference
    rows.append({**rows[0], "index": 78, "image": "999"})  # a reference to a row that does not exist
    rows.append({**rows[0], "index": 79, "image": ""})  # no image at all
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return {"pictures": n, "references": n + 1, "dangling": 1, "missing": 1}


def write_blink_parquet(root: Path) -> dict:
    """BLINK-Benchmark/BLINK layout: <Config>/{val,test}-00000-of-00001.parquet, image_1..image_4 (None if unused)."""
    pics = photo_variants(9, seed=2)
    struct_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    images_per_row = {"Art_Style": [3, 1], "Counting": [1, 2]}
    expected: dict[str, int] = {"val": 0, "test": 0}
    cursor = 0
    for config, counts in images_per_row.items():
        for split, count in zip(("val", "test"), counts):
            cells = {f"image_{k}": [] for k in range(1, 5)}
            row = {f"image_{k}": None for k in range(1, 5)}
            for k in range(1, count + 1):
                row[f"image_{k}"] = {"bytes": jpeg_bytes(pics[cursor]), "path": None}
                cursor += 1
            for k in range(1, 5):
                cells[f"image_{k}"].append(row[f"image_{k}"])
            table = pa.table(
                {
                    "idx": [f"{split}_{config}_1"],
                    "question": ["q"],
                    "sub_task": [config],
                    **{name: pa.array(values, type=struct_type) for name, values in cells.items()},
                    "choices": [["(A) x", "(B) y"]],
                    "answer": ["(A)"],
                    "prompt": ["p"],
                    "explanation": [""],
                }
            )
            (root / config).mkdir(parents=True, exist_ok=True)
            pq.write_table(table, root / config / f"{split}-00000-of-00001.parquet")
            expected[split] += count
    return expected


def write_mmstar_parquet(path: Path, n: int = 4) -> dict:
    """Lin-Chen/MMStar mmstar.parquet: image is an HF Image struct; one split (carved)."""
    pics = photo_variants(n, seed=3)
    struct_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "index": list(range(n)),
            "question": ["q"] * n,
            "answer": ["A"] * n,
            "category": ["c"] * n,
            "l2_category": ["l"] * n,
            "image": pa.array(
                [{"bytes": png_bytes(p), "path": f"{i}.png"} for i, p in enumerate(pics)], type=struct_type
            ),
            "meta_info": [{"source": "s", "split": "val", "image_path": f"{i}.png"} for i in range(n)],
        }
    )
    pq.write_table(table, path)
    return {"pictures": n}


def write_imagenet_parquet(root: Path, n: int = 3) -> dict:
    """PKU-ML/ImageNet-Subset shape: images = list of Image structs, filename, label; train/validation files."""
    pics = photo_variants(2 * n, seed=4)
    struct_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for name, part in (("train", pics[:n]), ("validation", pics[n:])):
        table = pa.table(
            {
                "images": pa.array(
                    [[{"bytes": jpeg_bytes(p), "path": None}] for p in part], type=pa.list_(struct_type)
                ),
                "filename": [f"{name}_{i}.JPEG" for i in range(n)],
                "label": list(range(n)),
            }
        )
        pq.write_table(table, root / f"{name}.parquet")
    return {"train": n, "val": n}


def write_seedbench_tsv(path: Path, n: int = 4) -> dict:
    """SEEDBench_IMG.tsv: index, image (base64), question, options, answer, category; one split."""
    pics = photo_variants(n, seed=5)
    rows = [
        {
            "index": 100 + i,
            "image": b64(jpeg_bytes(p)),
            "question": "q",
            "A": "a",
            "B": "b",
            "C": "c",
            "D": "d",
            "answer": "A",
            "category": "Scene Understanding",
        }
        for i, p in enumerate(pics)
    ]
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return {"pictures": n}


def write_blink_tsv(path: Path) -> dict:
    """VLMEvalKit BLINK.tsv: multi-image rows hold a stringified list of base64 images."""
    pics = photo_variants(5, seed=6)
    rows = [
        {"index": 0, "image": str([b64(jpeg_bytes(pics[0])), b64(jpeg_bytes(pics[1]))]), "question": "q"},
        {
            "index": 1,
            "image": str([b64(jpeg_bytes(pics[2])), b64(jpeg_bytes(pics[3])), b64(jpeg_bytes(pics[4]))]),
            "question": "q",
        },
        {"index": 2, "image": "['not closed", "question": "q"},
    ]
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return {"pictures": 5, "unparseable": 1}


def exif_jpeg(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(image, exif=exif.tobytes())


def write_messy_folder(root: Path) -> dict:
    """A folder with every kind of awkward file. Returns the expected good pictures and skip reasons."""
    root.mkdir(parents=True, exist_ok=True)
    good = photo_variants(4, seed=7)
    (root / "sub").mkdir(exist_ok=True)
    (root / "a_good.jpg").write_bytes(jpeg_bytes(good[0]))
    (root / "sub" / "b_good.png").write_bytes(png_bytes(good[1]))
    (root / "c_cmyk.jpg").write_bytes(jpeg_bytes(good[2].convert("CMYK")))
    palette = good[3].convert("P", palette=Image.Palette.ADAPTIVE)
    (root / "d_palette_transparent.png").write_bytes(png_bytes(palette, transparency=0))
    la = good[0].convert("LA")
    (root / "e_la.png").write_bytes(png_bytes(la))
    gray16 = Image.fromarray(np.asarray(good[1].convert("L"), dtype=np.uint16) * 257)
    (root / "f_gray16.png").write_bytes(png_bytes(gray16))
    rgba = good[2].convert("RGBA")
    (root / "g_rgba.png").write_bytes(png_bytes(rgba))
    floats = Image.fromarray(np.asarray(good[3].convert("L"), dtype=np.float32) / 255.0)
    buffer = io.BytesIO()
    floats.save(buffer, "TIFF")
    (root / "h_float.tif").write_bytes(buffer.getvalue())
    (root / "i_exif_rotated.jpg").write_bytes(exif_jpeg(good[0], 6))
    frames = [good[1].resize((120, 90)), good[2].resize((120, 90))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (root / "j_animated.gif").write_bytes(buffer.getvalue())
    (root / "k_wide.png").write_bytes(png_bytes(good[0].resize((1200, 100))))
    # Bad ones.
    (root / "x_truncated.jpg").write_bytes(jpeg_bytes(good[1])[:1500])
    (root / "x_garbage.jpg").write_bytes(b"this is not an image at all" * 10)
    (root / "x_empty.png").write_bytes(b"")
    (root / "x_tiny.png").write_bytes(png_bytes(good[0].resize((20, 16))))
    (root / "x_bomb.png").write_bytes(png_bomb())
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(b"ignored: hidden")
    return {
        "good": 11,
        "skips": {
            "corrupt or truncated image": 1,
            "not a decodable image": 1,
            "empty image data": 1,
            "image under 32 px": 1,
            "decompression bomb": 1,
            "not an image file": 1,
        },
    }
