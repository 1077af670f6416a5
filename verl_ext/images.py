"""Image helpers shared by every task and source."""

from __future__ import annotations

import hashlib

from PIL import Image

# Side of the thumbnail the content id is computed from: small enough to be cheap on large images,
# large enough that different photographs never collide in practice.
_ID_THUMB = 32


def content_id(image: Image.Image) -> str:
    """A stable id of what an image shows, independent of file format, metadata and row ids.

    Two copies of one picture (the same pixels, re-saved losslessly or stored under different rows) get the
    same id, so negatives of the contrastive task and the leakage check compare content, not names.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    thumb = rgb.resize((_ID_THUMB, _ID_THUMB), Image.Resampling.BOX)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(thumb.tobytes())
    return digest.hexdigest()
