"""The functions the task files of this folder name (``!function ssl_tasks.…``).

lmms-eval loads this file by its path, outside the package; the logic is in :mod:`verl_ext.evaluation.lmms_questions`
(which says what these task variants do differently from lmms-eval's own).
"""

from verl_ext.evaluation.lmms_questions import group_accuracy, seedbench_image_docs, task_functions

__all__ = ["group_accuracy", "seedbench_image_docs"]

(
    mmbench_doc_to_visual,
    mmbench_doc_to_text,
    mmbench_doc_to_messages,
    mmbench_doc_to_target,
    mmbench_process_results,
) = task_functions("mmbench")
(
    seedbench_doc_to_visual,
    seedbench_doc_to_text,
    seedbench_doc_to_messages,
    seedbench_doc_to_target,
    seedbench_process_results,
) = task_functions("seedbench")
mmstar_doc_to_visual, mmstar_doc_to_text, mmstar_doc_to_messages, mmstar_doc_to_target, mmstar_process_results = (
    task_functions("mmstar")
)
(
    realworldqa_doc_to_visual,
    realworldqa_doc_to_text,
    realworldqa_doc_to_messages,
    realworldqa_doc_to_target,
    realworldqa_process_results,
) = task_functions("realworldqa")
blink_doc_to_visual, blink_doc_to_text, blink_doc_to_messages, blink_doc_to_target, blink_process_results = (
    task_functions("blink")
)
(
    mmerealworld_doc_to_visual,
    mmerealworld_doc_to_text,
    mmerealworld_doc_to_messages,
    mmerealworld_doc_to_target,
    mmerealworld_process_results,
) = task_functions("mmerealworld")
hrbench_doc_to_visual, hrbench_doc_to_text, hrbench_doc_to_messages, hrbench_doc_to_target, hrbench_process_results = (
    task_functions("hrbench")
)
mmvp_doc_to_visual, mmvp_doc_to_text, mmvp_doc_to_messages, mmvp_doc_to_target, mmvp_process_results = task_functions(
    "mmvp"
)
