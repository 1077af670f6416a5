"""Carving single-split sources into train and val, by content, the same way in every build."""

from __future__ import annotations

import hashlib

from verl_ext.sources.base import TRAIN, VAL


def unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) from ``parts`` (the same on every machine, process and Python run)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def carve_split(key: str, val_fraction: float) -> str:
    """``val`` for a ``val_fraction`` share of keys (content ids or picture groups), ``train`` for the rest.

    It depends on the key only (not on the seed, the task or the build options), so a picture is on the same
    side in every dataset built from a source and train and val never share a picture.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must lie in [0, 1), got {val_fraction}")
    return VAL if unit_hash("split", key) < val_fraction else TRAIN
