"""Dataset builder: any image source x any puzzle task -> verl-ready parquet splits.

>>> from verl_ext.builder import BuildConfig, build
>>> build(BuildConfig(task="rotation", source="demo", output="datasets/ssl/demo_rotation"))  # doctest: +SKIP
"""

from verl_ext.builder.plan import BuildConfig
from verl_ext.builder.rows import EXTRA_INFO_KEYS, SCHEMA


def build(config: BuildConfig) -> dict:
    """Run a build (see :mod:`verl_ext.builder.pipeline`); returns the manifest."""
    from verl_ext.builder.pipeline import build as _build

    return _build(config)


__all__ = ["EXTRA_INFO_KEYS", "SCHEMA", "BuildConfig", "build"]
