"""The training reward plus the row id of each puzzle, for puzzle-accuracy evaluation runs.

verl's validation dump (``trainer.validation_data_dir``) holds, per response, the decoded prompt and output, the
ground truth and every key the reward function returns, but neither the row nor the data source it came from.
This wrapper returns exactly what :func:`verl_ext.reward.compute_score` returns (same score, same kwargs) plus
``eval_row``: the row number :func:`verl_ext.evaluation.puzzle_eval.prepare_eval_set` put in ``extra_info``.
The report joins on it to recover each response's task, source and difficulty. It is a float because verl
averages every returned key into ``val-aux/<data_source>/eval_row/mean@1`` (harmless; ignore that metric).

Enable with ``reward.custom_reward_function.path=pkg://verl_ext.evaluation.eval_reward``
(``scripts/eval_puzzles.sh`` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from verl_ext.reward import compute_score as training_score

ROW_KEY = "eval_row"


def compute_score(
    data_source: str | None,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    result = training_score(data_source, solution_str, ground_truth, extra_info, **kwargs)
    if not isinstance(result, Mapping):
        result = {"score": float(result)}
    row = extra_info.get(ROW_KEY) if isinstance(extra_info, Mapping) else None
    # -1 marks a row that did not come through prepare_eval_set; the report then matches by prompt text.
    return {**result, ROW_KEY: float(row) if row is not None else -1.0}
