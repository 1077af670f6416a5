"""Built rows loaded the way verl loads them for training: its ``RLHFDataset`` with the tiny model's processor."""

from __future__ import annotations

from pathlib import Path


def rlhf_dataset(path: Path, processor, cache: Path, max_prompt_length: int = 1024):
    """verl's ``RLHFDataset`` over one built split, with the data settings our configs use."""
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = OmegaConf.create(
        {
            "max_prompt_length": max_prompt_length,
            "filter_overlong_prompts": True,
            # None: filter in this process (a forked pool can hang on OpenMP state torch left in the parent).
            "filter_overlong_prompts_workers": None,
            "cache_dir": str(cache),
            "prompt_key": "prompt",
            "image_key": "images",
        }
    )
    return RLHFDataset(data_files=[str(path)], tokenizer=processor.tokenizer, config=config, processor=processor)
