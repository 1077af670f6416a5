"""Self-supervised visual puzzles as verifiable rewards for GRPO training of VLMs with verl."""

__version__ = "0.1.0"
