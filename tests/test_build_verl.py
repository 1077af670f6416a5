"""Built datasets load through verl's own RLHFDataset with a locally made Qwen2.5-VL processor (no hub)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from verl_rows import rlhf_dataset

from verl_ext.builder import BuildConfig, build

TASKS = ["rotation", "jigsaw", "position", "contrastive"]


def verl_prompt_length(processor, messages: list[dict]) -> int:
    """The length verl's overlong filter computes for one row (processor chat template + image expansion)."""
    from qwen_vl_utils import process_vision_info

    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images, _ = process_vision_info(messages, image_patch_size=14, return_video_metadata=True)
    return len(processor(text=[text], images=images, return_tensors="pt")["input_ids"][0])


@pytest.mark.parametrize("task", TASKS)
def test_every_task_loads_in_rlhf_dataset_and_nothing_is_filtered(
    tmp_path: Path, processor, tiny_model_dir: Path, task: str
) -> None:
    out = tmp_path / task
    # Contrastive needs pictures of two photographs per split to pair (the demo lists a photo's crops together).
    limit = 10 if task == "contrastive" else 4
    manifest = build(
        BuildConfig(
            task=task, source="demo", output=out, limit=limit, workers=1, progress=False, tokenizer=tiny_model_dir
        )
    )
    assert manifest["prompt_tokens_exact"] is True
    for split, rows in manifest["splits"].items():
        dataset = rlhf_dataset(out / f"{split}.parquet", processor, tmp_path / "cache")
        assert len(dataset) == rows  # verl's overlong filter dropped nothing
        table = pq.read_table(out / f"{split}.parquet").to_pylist()
        for i in range(len(dataset)):
            item = dataset[i]
            messages = item["raw_prompt"]
            images = [c for c in messages[0]["content"] if c["type"] == "image"]
            assert len(images) == len(table[i]["images"])
            assert item["extra_info"]["task"] == task and item["data_source"] == f"ssl_{task}"
            # The count recorded at build time is exactly what verl measures.
            assert verl_prompt_length(processor, messages) == table[i]["extra_info"]["prompt_tokens"]


def test_a_tight_budget_still_loses_no_row_in_verl(tmp_path: Path, processor, tiny_model_dir: Path) -> None:
    out = tmp_path / "tight"
    manifest = build(
        BuildConfig(
            task="jigsaw",
            source="demo",
            output=out,
            limit=3,
            workers=1,
            progress=False,
            tokenizer=tiny_model_dir,
            max_prompt_tokens=600,
        )
    )
    for split, rows in manifest["splits"].items():
        assert len(rlhf_dataset(out / f"{split}.parquet", processor, tmp_path / "cache", 600)) == rows
