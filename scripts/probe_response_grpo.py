#!/usr/bin/env python3
"""Does GRPO over whole sampled responses teach this model a label task? verl's GRPO step, in one process.

    python scripts/probe_response_grpo.py MODEL_DIR DATA_DIR [--lr 2e-4] [--steps 150] [--loss-tokens all]

Each step samples ``--group`` whole responses per prompt with transformers (temperature 1, no top-k or top-p),
scores them with the training reward (``verl_ext.reward.compute_score``), normalises the scores within each group
and takes one AdamW step (gradient clip 1) on verl's policy-gradient loss: advantage times token log-probability,
averaged over every response token of the batch (``--agg token-mean``, verl's default) or over each response
first (``seq-mean``). With one optimizer update per batch the PPO ratio is 1 and nothing is clipped, so this is
verl's GRPO step without the KL term. Greedy held-out accuracy (the reward's ``acc``) is printed every ``--every``
steps.

``--loss-tokens`` narrows the loss to the tokens from the answer tag on (``answer``), to the answer's first token
(``first``) or to every token up to and including it (``through-first``), to find which tokens keep the policy from
learning. ``--prefill`` writes the start of every response instead of sampling it (e.g. the fixed thought and the
answer tag), ``--reward first-token`` then rewards the first sampled token as the answer-token loop does, and
``--optimizer sgd`` replaces AdamW. ``--top-entropy`` and ``--max-token-prob`` narrow the loss to uncertain
tokens, ``--train-params visual`` the update to the vision tower. ``scripts/probe_answer_grpo.py`` is the other
end: the first answer token after a thought fixed in the prompt, nothing sampled before it. A recipe is tried
here in a few minutes (about 1.6 s a step on 2 cores for 16 prompts x 8) rather than the hour of a verl run
(docs/cpu-training.md, "Does GRPO teach the tiny model to see?").
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

from answer_puzzle import chat_messages  # scripts/ is on sys.path when a script in it runs
from probe_common import add_common_arguments, answer_first_token, group_advantages, report, row_pictures, update

ANSWER_TAG = "<answer>"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, lr=2e-4, steps=150)
    parser.add_argument("--max-new-tokens", type=int, default=48, help="response length limit")
    parser.add_argument("--agg", choices=("token-mean", "seq-mean"), default="token-mean", help="loss aggregation")
    parser.add_argument(
        "--loss-tokens",
        choices=("all", "answer", "first", "through-first"),
        default="all",
        help="response tokens the loss trains",
    )
    parser.add_argument("--adam-eps", type=float, default=1e-8, help="AdamW's epsilon (verl's default is 1e-8)")
    parser.add_argument(
        "--optimizer",
        choices=("adamw", "sgd"),
        default="adamw",
        help="sgd: plain gradient steps (verl: actor.optim.optimizer=SGD), no per-parameter step sizes",
    )
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD's momentum")
    parser.add_argument(
        "--reward",
        choices=("score", "first-token"),
        default="score",
        help="first-token: 1 when the response's first token is the right answer's (with --prefill ending in the"
        " answer tag), as probe_answer_grpo.py rewards; score: the training reward of the whole response",
    )
    parser.add_argument(
        "--prefill",
        default="",
        help="text that starts every response, written rather than sampled and never trained (e.g. the fixed"
        " thought and the answer tag); the reward reads it with the sampled rest",
    )
    parser.add_argument(
        "--top-entropy",
        type=float,
        default=1.0,
        metavar="SHARE",
        help="of the tokens --loss-tokens names, train only this share with the highest entropy in the batch"
        " (0.2 in Wang et al. 2025, 'Beyond the 80/20 rule: high-entropy minority tokens drive effective RL')",
    )
    parser.add_argument(
        "--max-token-prob",
        type=float,
        default=1.0,
        metavar="P",
        help="leave out of the loss every token the policy sampled with a probability above P (sure tokens)",
    )
    parser.add_argument(
        "--train-params",
        choices=("all", "visual"),
        default="all",
        help="visual: update only the vision tower and its merger, the language model frozen",
    )
    parser.add_argument(
        "--kl-coef",
        type=float,
        default=0.0,
        help="KL loss to the starting model on the trained tokens, verl's low_var_kl (k3) estimate with this weight"
        " (verl: actor.use_kl_loss=true actor.kl_loss_coef=...)",
    )
    args = parser.parse_args(argv)
    manifest = json.loads((args.data / "manifest.json").read_text())

    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from verl_ext.builder.order import batch_positions
    from verl_ext.reward import compute_score

    torch.manual_seed(args.seed)
    processor = AutoProcessor.from_pretrained(args.model)
    tokenizer = processor.tokenizer
    model = AutoModelForImageTextToText.from_pretrained(args.model)
    stop_ids = set(model.generation_config.eos_token_id)
    # A sampled picture or video placeholder cannot be fed back: the model would look for pixels for it.
    vision_ids = {model.config.image_token_id, model.config.video_token_id}

    def load(role: str) -> list[tuple[str, list, dict]]:
        file = args.data / manifest["files"][manifest[role]]
        rows = []
        columns = ["data_source", "prompt", "images", "reward_model", "extra_info"]
        for row in pq.read_table(file, columns=columns).to_pylist():
            messages = chat_messages(list(row["prompt"]))
            text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + args.prefill
            rows.append((text, row_pictures(row["images"], args.grey), row))
        return rows

    # Whether the answer tag was written, not sampled: the answer then starts the response.
    answer_prefilled = args.prefill.endswith(ANSWER_TAG)
    if ANSWER_TAG in args.prefill and not answer_prefilled:
        parser.error("--prefill holds the answer tag but does not end with it: the answer would start nowhere")
    if args.reward == "first-token" and not answer_prefilled:
        parser.error("--reward first-token needs --prefill ending in the answer tag: the answer starts the response")
    truth_tokens = {}  # ground truth -> the token its answer starts with after the prefill

    def score(row: dict, response_ids: list[int]) -> dict[str, float]:
        text = args.prefill + tokenizer.decode(response_ids, skip_special_tokens=True)
        return compute_score(row["data_source"], text, row["reward_model"]["ground_truth"], row["extra_info"])

    def reward(row: dict, response_ids: list[int]) -> float:
        if args.reward == "score":
            return score(row, response_ids)["score"]
        truth = row["reward_model"]["ground_truth"]
        if truth not in truth_tokens:
            truth_tokens[truth] = answer_first_token(tokenizer, args.prefill, truth)
        return float(bool(response_ids) and response_ids[0] == truth_tokens[truth])

    def until_stop(ids: list[int]) -> list[int]:
        """A generated row cut after its first stop token (the rest is padding), as verl's response mask does,
        or before a sampled vision placeholder (that response is then scored and trained without it)."""
        for position, token in enumerate(ids):
            if token in stop_ids:
                return ids[: position + 1]
            if token in vision_ids:
                return ids[:position]
        return ids

    def generate(batch, samples: int, sample: bool):
        encoded = processor(
            text=[text for text, _, _ in batch],
            images=[picture for _, pictures, _ in batch for picture in pictures],
            return_tensors="pt",
            padding=True,
        )
        options = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
        model.eval()
        with torch.no_grad():
            out = model.generate(
                **encoded,
                max_new_tokens=args.max_new_tokens,
                num_return_sequences=samples,
                output_scores=sample,
                return_dict_in_generate=True,
                **options,
            )
        model.train()
        generated = out.sequences[:, encoded.input_ids.shape[1] :]
        responses = [until_stop(ids) for ids in generated.tolist()]
        if not sample:
            return encoded, responses, None
        # The sampler's log-probability of each generated token (temperature 1, nothing cut: the policy's own).
        sampler_log_probs = torch.log_softmax(torch.stack(out.scores, 1).float(), -1).gather(2, generated[..., None])
        return encoded, responses, sampler_log_probs.squeeze(-1)

    def trained_span(ids: list[int]) -> tuple[int, int]:
        """Where the loss applies in one response (``--loss-tokens``), as [start, end) token positions."""
        if args.loss_tokens == "all":
            return 0, len(ids)
        if answer_prefilled:
            answer = 0
        else:
            answer = next((i for i in range(len(ids) + 1) if ANSWER_TAG in tokenizer.decode(ids[:i])), len(ids))
        first = min(answer + 1, len(ids))  # just after the answer's first token
        return {"answer": (answer, len(ids)), "first": (answer, first), "through-first": (0, first)}[args.loss_tokens]

    train, val = load("train_split"), load("val_split")
    batches = batch_positions(
        [row["reward_model"]["ground_truth"] for _, _, row in train], args.prompts, args.order, args.seed
    )

    def evaluate() -> float:
        right = 0.0
        for i in range(0, len(val), 40):
            batch = val[i : i + 40]
            _, responses, _ = generate(batch, 1, sample=False)
            right += sum(score(row, ids)["acc"] for (_, _, row), ids in zip(batch, responses))
        return right / len(val)

    reference = None
    if args.kl_coef > 0:  # the starting model, frozen, as verl's reference worker holds it
        reference = copy.deepcopy(model).eval().requires_grad_(False)

    params = [p for name, p in model.named_parameters() if args.train_params == "all" or ".visual." in f".{name}"]
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum)
    else:
        optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, eps=args.adam_eps)
    model.train()
    print(f"step 0: held-out accuracy {evaluate():.3f} ({len(val)} puzzles)", flush=True)
    for step in range(1, args.steps + 1):
        batch = [train[i] for i in next(batches)]
        encoded, responses, sampler_log_probs = generate(batch, args.group, sample=True)
        rewards = [reward(batch[k // args.group][2], ids) for k, ids in enumerate(responses)]
        rewards = torch.tensor(rewards).view(args.prompts, args.group)
        advantages = group_advantages(rewards).view(-1)

        # Teacher-forced log-probs of the sampled responses: prompt (repeated per sample) + response, right-padded.
        width = max(1, *(len(ids) for ids in responses))
        response_ids = torch.full((len(responses), width), tokenizer.pad_token_id)
        valid = torch.zeros(len(responses), width, dtype=torch.long)  # attended: the response, not its padding
        mask = torch.zeros(len(responses), width)  # trained: the tokens --loss-tokens names
        for k, ids in enumerate(responses):
            response_ids[k, : len(ids)] = torch.tensor(ids)
            valid[k, : len(ids)] = 1
            start, end = trained_span(ids)
            mask[k, start:end] = 1
        prompt_ids = encoded.input_ids.repeat_interleave(args.group, 0)
        pixels = encoded.pixel_values.view(args.prompts, -1, encoded.pixel_values.shape[-1])
        inputs = {
            "input_ids": torch.cat([prompt_ids, response_ids], 1),
            "attention_mask": torch.cat([encoded.attention_mask.repeat_interleave(args.group, 0), valid], 1),
            # Which tokens are picture tokens: without it, Qwen2.5-VL gives the picture's tokens (and every token
            # after them) plain 1-D positions instead of its 3-D ones, and scores another model than the sampler.
            "mm_token_type_ids": torch.cat(
                [encoded.mm_token_type_ids.repeat_interleave(args.group, 0), torch.zeros_like(response_ids)], 1
            ),
            "pixel_values": pixels.repeat_interleave(args.group, 0).reshape(-1, pixels.shape[-1]),
            "image_grid_thw": encoded.image_grid_thw.repeat_interleave(args.group, 0),
        }
        logits = model(**inputs).logits[:, prompt_ids.shape[1] - 1 : -1]
        vocabulary_log_probs = torch.log_softmax(logits.float(), -1)
        log_probs = vocabulary_log_probs.gather(2, response_ids[..., None]).squeeze(-1)
        # The trained log-probs must be the sampler's (verl checks the same as training/rollout_probs_diff_max).
        sampled = sampler_log_probs[:, :width]
        gap = float(((log_probs.detach() - sampled).abs() * valid[:, : sampled.shape[1]]).max())
        if gap > 0.05:
            raise SystemExit(
                f"step {step}: the training forward scores the sampled tokens unlike the sampler (largest log-prob"
                f" gap {gap:.3f}): the loss would train another policy than the one that answered"
            )
        if args.max_token_prob < 1.0:
            mask = mask * (log_probs.detach().exp() <= args.max_token_prob)
        if args.top_entropy < 1.0 and mask.any():
            entropy = -(vocabulary_log_probs.exp() * vocabulary_log_probs).sum(-1).detach()
            mask = mask * (entropy >= torch.quantile(entropy[mask.bool()], 1 - args.top_entropy))
        weighted = advantages[:, None] * log_probs * mask
        if args.agg == "token-mean":
            loss = -weighted.sum() / mask.sum().clamp(min=1)
        else:
            loss = -(weighted.sum(1) / mask.sum(1).clamp(min=1)).mean()
        if reference is not None:
            with torch.no_grad():
                reference_logits = reference(**inputs).logits[:, prompt_ids.shape[1] - 1 : -1]
                reference_log_probs = torch.log_softmax(reference_logits.float(), -1)
                reference_log_probs = reference_log_probs.gather(2, response_ids[..., None]).squeeze(-1)
            # k3 = exp(ref - logp) - (ref - logp) - 1, clamped as verl's low_var_kl does.
            difference = (reference_log_probs - log_probs).clamp(-20, 20)
            kl = (difference.exp() - difference - 1).clamp(-10, 10)
            loss = loss + args.kl_coef * (kl * mask).sum() / mask.sum().clamp(min=1)
        update(model, optimizer, loss)
        if step % args.every == 0:
            report(step, evaluate(), rewards)
    return 0


if __name__ == "__main__":
    sys.exit(main())
