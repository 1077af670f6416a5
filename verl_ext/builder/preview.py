"""Look at a built dataset: an HTML gallery (images embedded) and a PNG contact sheet of N puzzles.

verl-ext-preview datasets/ssl/mmbench_rotation/val.parquet --out preview/ -n 24
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

_THUMB_HEIGHT = 160
_TEXT_WIDTH = 460


def read_rows(path: str | Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows of a built split file (read batch by batch, so large files stay cheap)."""
    rows: list[dict[str, Any]] = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=max(1, min(n, 64))):
        rows.extend(batch.to_pylist())
        if len(rows) >= n:
            break
    return rows[:n]


def _image(entry: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(entry["bytes"])).convert("RGB")


def _mime(data: bytes) -> str:
    return "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"


def write_html(rows: Sequence[dict[str, Any]], out: Path, title: str) -> Path:
    """A self-contained page: every puzzle with its images, prompt, answer and parameters."""
    cards = []
    for row in rows:
        info = row["extra_info"]
        images = "".join(
            f'<figure><img src="data:{_mime(im["bytes"])};base64,{base64.b64encode(im["bytes"]).decode()}">'
            f"<figcaption>image {k + 1}: {_image(im).width}×{_image(im).height}</figcaption></figure>"
            for k, im in enumerate(row["images"])
        )
        params = html.escape(json.dumps(json.loads(info["params"]), indent=1))
        cards.append(
            f"<section><h2>{html.escape(info['split'])} #{info['index']} · {html.escape(info['task'])} · "
            f"{html.escape(info['source_id'])}</h2><div class=imgs>{images}</div>"
            f"<pre class=prompt>{html.escape(row['prompt'][0]['content'])}</pre>"
            f"<p class=answer>answer: <b>{html.escape(row['reward_model']['ground_truth'])}</b> · "
            f"{info['prompt_tokens']} prompt tokens · difficulty {html.escape(info['difficulty'])}</p>"
            f"<details><summary>params</summary><pre>{params}</pre></details></section>"
        )
    style = (
        "body{font-family:sans-serif;margin:1em;background:#fafafa}section{background:#fff;border:1px solid #ddd;"
        "margin:1em 0;padding:.5em 1em}.imgs{display:flex;flex-wrap:wrap;gap:8px}img{max-height:260px}"
        "figure{margin:0}pre{white-space:pre-wrap}.answer{font-size:1.1em}"
    )
    page = (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{style}</style>"
        f"<h1>{html.escape(title)}: {len(rows)} puzzles</h1>{''.join(cards)}"
    )
    path = out / "preview.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_contact_sheet(rows: Sequence[dict[str, Any]], out: Path) -> Path:
    """One band per puzzle: its images side by side, then task, answer and the start of the prompt."""
    font = ImageFont.load_default()
    bands = []
    for row in rows:
        thumbs = []
        for entry in row["images"]:
            image = _image(entry)
            scale = _THUMB_HEIGHT / image.height
            thumbs.append(image.resize((max(1, round(image.width * scale)), _THUMB_HEIGHT)))
        width = sum(t.width for t in thumbs) + 6 * len(thumbs) + _TEXT_WIDTH
        band = Image.new("RGB", (width, _THUMB_HEIGHT + 8), "white")
        x = 4
        for thumb in thumbs:
            band.paste(thumb, (x, 4))
            x += thumb.width + 6
        info = row["extra_info"]
        prompt = row["prompt"][0]["content"].replace("<image>", "[img]").replace("\n", " ")
        lines = [f"{info['task']}  {info['split']} #{info['index']}", f"answer: {row['reward_model']['ground_truth']}"]
        lines += textwrap.wrap(prompt, 70)[:8]
        draw = ImageDraw.Draw(band)
        for i, line in enumerate(lines):
            draw.text((x + 4, 6 + 16 * i), line, fill="black" if i != 1 else "firebrick", font=font)
        bands.append(band)
    sheet = Image.new("RGB", (max(b.width for b in bands), sum(b.height + 2 for b in bands)), "#cccccc")
    y = 0
    for band in bands:
        sheet.paste(band, (0, y))
        y += band.height + 2
    path = out / "contact_sheet.png"
    sheet.save(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="verl-ext-preview", description="HTML gallery and PNG contact sheet of a built puzzle split."
    )
    p.add_argument("data", type=Path, help="a <split>.parquet written by the builder")
    p.add_argument("--out", type=Path, required=True, help="folder for preview.html and contact_sheet.png")
    p.add_argument("-n", type=int, default=16, help="number of puzzles (default 16)")
    args = p.parse_args(argv)
    if not args.data.is_file():
        p.error(f"no such file: {args.data}")
    rows = read_rows(args.data, args.n)
    if not rows:
        p.error(f"{args.data} holds no rows")
    args.out.mkdir(parents=True, exist_ok=True)
    page = write_html(rows, args.out, title=str(args.data))
    sheet = write_contact_sheet(rows, args.out)
    print(f"wrote {page} and {sheet} ({len(rows)} puzzles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
