#!/usr/bin/env python3
"""Write a random Qwen2.5-VL (tokenizer, processor, chat template included) without any download.

    python scripts/make_tiny_model.py --out models/tiny-qwen2.5-vl              # ~2.6 MB, for CPU runs and tests
    python scripts/make_tiny_model.py --out models/random-qwen2.5-vl-3b --size 3b  # real 3B shape, random weights
    python scripts/make_tiny_model.py --out models/tiny-format --format-warmup-steps 200  # writes <answer> tags

See verl_ext/tiny_model.py for what is built.
"""

from verl_ext.tiny_model import main

if __name__ == "__main__":
    main()
