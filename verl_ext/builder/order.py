"""Row order of a built split: as the source gave the pictures, "stratified" by answer, or "balanced" (stratified,
with every answer equally often).

Why stratified: before a policy has found the picture cue, its answer does not depend on the picture, and GRPO
moves it towards whichever answer was right more often in the step's batch. A random batch of 16 rotation
puzzles ({0, 180}) holds 8 +- 2 of each answer, so every step pushes the policy towards one answer or the other
whatever the pictures show; on 2 cores that drift settled the tiny model on one answer before it found the cue.
In the answer-token loop, batches drawn with equal answer counts learned the cue with each of 3 seeds where
random batches lost 2 seeds of 3 (docs/cpu-training.md, "Does GRPO teach the tiny model to see?"). It removes one
drive towards a single answer, not every one: GRPO over whole responses still fell onto one answer with it. It
keeps the split's answer shares as built (a 172:148 split stays 172:148 in every batch's proportions).

verl 0.9.1 takes no custom sampler (``create_rl_sampler`` knows random and sequential only), so the order lives
in the file and the run reads it as written (``data.shuffle=false``). Each answer's rows are spread evenly over
the split: the j-th of the n rows with that answer (in a seeded random order) gets the key (j + u) / n, with u a
seeded offset, and rows are sorted by key. Any B consecutive rows then hold each answer's share of B to within
one row when there are two answers, and two rows with more. The key is the data source and the answer, so a mix
build is stratified per task; for answers that rarely repeat (jigsaw orders) it is a seeded shuffle.

Why balanced: stratified batches keep the split's shares, so a 172:148 split gives every batch a little more of one
answer, and while the policy's answer does not yet depend on the picture, every step then moves it the same way,
towards that answer. Over whole responses, in process, that steady push settled the tiny model on the majority
answer within 50 steps (81% of groups flat), where the same run on a split with equal counts kept nearly every
group informative for 100 steps (docs/cpu-training.md). ``balanced`` keeps, per data source, as many rows of
each answer as its rarest answer has (a seeded choice of which), and drops the rest; the builder counts them. Meant
for label tasks with few answers (rotation, position, flip); with many rare answers it drops most rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

ORDERS = ("source", "stratified", "balanced")
# The orders a split is written in to be read as written (data.shuffle=false): a shuffle would undo them.
WRITTEN_ORDERS = ("stratified", "balanced")


def stratified_order(keys: Sequence[str], seed: int) -> list[int]:
    """Row positions sorted so that every run of consecutive rows holds each key close to its overall share."""
    rng = np.random.default_rng(seed)
    by_key: dict[str, list[int]] = {}
    for position, key in enumerate(keys):
        by_key.setdefault(key, []).append(position)
    placed: list[tuple[float, float, int]] = []
    for key in sorted(by_key):
        rows = [by_key[key][i] for i in rng.permutation(len(by_key[key]))]
        offset = float(rng.random())
        # The second element breaks ties between keys at random rather than by key name.
        placed += [((j + offset) / len(rows), float(rng.random()), row) for j, row in enumerate(rows)]
    return [row for *_, row in sorted(placed)]


def balanced_subset(keys: Sequence[str], seed: int) -> list[int]:
    """Positions of the rows to keep so that, per data source, every answer is as frequent as the rarest.

    A key is ``source + "\\x00" + answer`` as in :func:`stratified_order`; which rows of a frequent answer stay is a
    seeded random choice, so no part of the split (its first or last pictures) is favoured. Sorted positions.
    """
    rng = np.random.default_rng(seed)
    by_source: dict[str, dict[str, list[int]]] = {}
    for position, key in enumerate(keys):
        source, _, answer = key.partition("\x00")
        by_source.setdefault(source, {}).setdefault(answer, []).append(position)
    kept: list[int] = []
    for source in sorted(by_source):
        answers = by_source[source]
        share = min(len(rows) for rows in answers.values())
        for answer in sorted(answers):
            rows = answers[answer]
            kept += [rows[i] for i in sorted(rng.choice(len(rows), share, replace=False))]
    return sorted(kept)


def largest_imbalance(keys: Sequence[str], window: int) -> float:
    """Over all runs of ``window`` consecutive rows, the largest gap between a key's count and its expected count.

    ``stratified_order`` keeps this under 1 for two keys (under 2 for more); a random order of 320 rows {0, 180}
    has about 4 to 5 for a window of 16.
    """
    if window < 1 or len(keys) < window:
        raise ValueError(f"window must lie in [1, {len(keys)}], got {window}")
    worst = 0.0
    for key in set(keys):
        hits = np.cumsum([0] + [k == key for k in keys])
        counts = hits[window:] - hits[:-window]
        worst = max(worst, float(np.max(np.abs(counts - window * hits[-1] / len(keys)))))
    return worst


def batch_positions(keys: Sequence[str], size: int, order: str, seed: int) -> Iterator[list[int]]:
    """Endless training batches of ``size`` row positions, as verl draws them from a split of these answers.

    ``random``: each batch drawn at random without replacement (verl's shuffled loader, in effect); ``stratified``:
    consecutive windows of :func:`stratified_order`, wrapping around (a stratified build read with
    ``data.shuffle=false``). For the in-process probes in ``scripts/``.
    """
    if not 1 <= size <= len(keys):
        raise ValueError(f"batch size must lie in [1, {len(keys)}], got {size}")
    rng = np.random.default_rng(seed)
    if order == "random":
        while True:
            yield [int(i) for i in rng.choice(len(keys), size, replace=False)]
    if order != "stratified":
        raise ValueError(f"order must be random or stratified, got {order!r}")
    sequence = stratified_order(keys, seed)
    start = 0
    while True:
        yield [sequence[(start + i) % len(sequence)] for i in range(size)]
        start = (start + size) % len(sequence)
