"""Stratified row order: every run of consecutive rows holds each answer in its share, and nothing else changes.
Balanced order: the same, after dropping rows until every answer is equally frequent, each drop counted."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from verl_ext.builder import BuildConfig, build
from verl_ext.builder.order import balanced_subset, batch_positions, largest_imbalance, stratified_order
from verl_ext.builder.pipeline import BALANCE_SKIP

ROTATION_2 = ('form="single"', "angles=[0,180]")


@pytest.mark.parametrize("counts", [{"0": 172, "180": 148}, {"a": 10, "b": 30, "c": 60}, {"only": 7}])
def test_every_window_holds_each_answer_in_its_share(counts: dict[str, int]) -> None:
    keys = [key for key, n in counts.items() for _ in range(n)]
    np.random.default_rng(1).shuffle(keys)
    order = stratified_order(keys, seed=0)
    assert sorted(order) == list(range(len(keys)))  # a permutation: no row lost or repeated
    ordered = [keys[i] for i in order]
    for window in {2, 5, 16, len(keys)} & set(range(1, len(keys) + 1)):
        assert largest_imbalance(ordered, window) < (1 if len(counts) <= 2 else 2)
    assert stratified_order(keys, seed=0) == order  # seeded
    assert stratified_order(keys, seed=1) != order or len(counts) == 1


def test_a_random_order_is_the_imbalance_the_option_removes() -> None:
    keys = ["0"] * 160 + ["180"] * 160
    np.random.default_rng(0).shuffle(keys)
    assert largest_imbalance(keys, 16) >= 3  # what verl's shuffled batches of 16 see
    with pytest.raises(ValueError, match="window"):
        largest_imbalance(keys, 0)


def test_probe_batches_follow_the_order_verl_would_read() -> None:
    keys = ["0"] * 30 + ["180"] * 18
    stratified = batch_positions(keys, 16, "stratified", seed=0)
    seen = [next(stratified) for _ in range(3)]  # 48 rows: one pass over the split
    assert sorted(sum(seen, [])) == list(range(48))
    assert all(abs(Counter(keys[i] for i in batch)["0"] - 10) < 1 for batch in seen)
    assert next(stratified) == seen[0]  # then the same order again, as verl's next epoch without shuffling
    drawn = next(batch_positions(keys, 16, "random", seed=0))
    assert len(set(drawn)) == 16
    with pytest.raises(ValueError, match="order"):
        next(batch_positions(keys, 16, "sorted", seed=0))


def _answers(path: Path) -> list[str]:
    return [cell["ground_truth"] for cell in pq.read_table(path, columns=["reward_model"]).column(0).to_pylist()]


def test_a_stratified_build_holds_the_same_puzzles_in_balanced_order(tmp_path: Path) -> None:
    common = {"task": "rotation", "source": "scenes", "input": Path("size=64,train=48,val=16"), "options": ROTATION_2}
    build(BuildConfig(output=tmp_path / "source", progress=False, **common))
    manifest = build(BuildConfig(output=tmp_path / "stratified", order="stratified", progress=False, **common))
    assert manifest["args"]["order"] == "stratified"
    for split in ("train", "val"):
        plain = pq.read_table(tmp_path / "source" / f"{split}.parquet").to_pylist()
        ordered = pq.read_table(tmp_path / "stratified" / f"{split}.parquet").to_pylist()
        assert [row["extra_info"]["index"] for row in ordered] == list(range(len(ordered)))  # numbered anew

        def content(row: dict) -> tuple:
            return row["reward_model"]["ground_truth"], row["images"][0]["bytes"], row["extra_info"]["params"]

        assert Counter(map(content, ordered)) == Counter(map(content, plain))
        answers = _answers(tmp_path / "stratified" / f"{split}.parquet")
        assert len(set(answers)) == 2 and largest_imbalance(answers, 4) < 1
    assert "--order stratified" in (tmp_path / "stratified" / "README.md").read_text()


def test_an_unknown_order_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--order must be one of"):
        build(BuildConfig(task="rotation", source="demo", output=tmp_path, order="sorted", progress=False))


def test_a_balanced_subset_keeps_the_rarest_answers_count_per_source() -> None:
    keys = ["a\x000"] * 30 + ["a\x00180"] * 20 + ["b\x000"] * 5 + ["b\x0090"] * 9 + ["b\x00180"] * 7
    kept = balanced_subset(keys, seed=0)
    assert kept == sorted(kept) and len(set(kept)) == len(kept)
    assert Counter(keys[i] for i in kept) == {"a\x000": 20, "a\x00180": 20, "b\x000": 5, "b\x0090": 5, "b\x00180": 5}
    assert balanced_subset(keys, seed=0) == kept  # seeded
    assert balanced_subset(keys, seed=1) != kept
    # Which rows of the frequent answer stay is drawn, not its first ones.
    assert max(i for i in kept if keys[i] == "a\x000") > 20


def test_a_balanced_build_holds_every_answer_equally_often_and_says_what_it_dropped(tmp_path: Path) -> None:
    common = {"task": "rotation", "source": "scenes", "input": Path("size=64,train=64,val=24"), "options": ROTATION_2}
    plain = build(BuildConfig(output=tmp_path / "source", progress=False, **common))
    manifest = build(BuildConfig(output=tmp_path / "balanced", order="balanced", progress=False, **common))
    assert manifest["args"]["order"] == "balanced"
    dropped = 0
    for split in ("train", "val"):
        path = tmp_path / "balanced" / f"{split}.parquet"
        answers = _answers(path)
        counts = Counter(answers)
        before = Counter(_answers(tmp_path / "source" / f"{split}.parquet"))
        assert set(counts) == {"0", "180"} and len(set(counts.values())) == 1
        assert counts["0"] == min(before.values())  # nothing dropped beyond what equal counts need
        assert largest_imbalance(answers, 4) < 1  # and in stratified order
        rows = pq.read_table(path).to_pylist()
        assert [row["extra_info"]["index"] for row in rows] == list(range(len(rows)))
        # The manifest describes the rows written, not the rows made.
        assert manifest["splits"][split] == len(rows) == manifest["rows_by_task"][split]["rotation"]
        tokens = [row["extra_info"]["prompt_tokens"] for row in rows]
        assert manifest["prompt_tokens"][split] == {"max": max(tokens), "mean": round(sum(tokens) / len(tokens), 1)}
        dropped += sum(before.values()) - len(rows)
    assert dropped > 0 and manifest["skips"][BALANCE_SKIP] == dropped
    assert sum(plain["splits"].values()) - sum(manifest["splits"].values()) == dropped


def test_a_balanced_order_is_refused_for_paired_puzzles(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pairs"):
        build(BuildConfig(task="contrastive", source="demo", output=tmp_path, order="balanced", progress=False))
