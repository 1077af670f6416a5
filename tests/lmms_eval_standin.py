"""Run lmms-eval's own command line (``python -m lmms_eval`` arguments) with a stand-in chat model.

``think_answer_standin`` is registered with lmms-eval's model registry in this process only. For each request it
builds the chat messages the way lmms-eval's chat models do (the task's ``doc_to_messages`` on the document),
answers from ``answers`` (a JSON file: question text → response; model argument) and appends what it was sent to
``seen`` (a JSON-lines file: system prompt, user text, picture count, generation arguments), so a test can check
what a real model would have received. No model weights, no GPU.

    python tests/lmms_eval_standin.py --model think_answer_standin --model_args answers=A.json,seen=S.jsonl ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lmms_eval.__main__ import cli_evaluate
from lmms_eval.api.model import lmms
from lmms_eval.models import MODEL_REGISTRY_V2
from lmms_eval.models.registry_v2 import ModelManifest


class ThinkAnswerStandIn(lmms):
    is_simple = False

    def __init__(self, answers: str, seen: str, **kwargs) -> None:  # kwargs: batch_size, device, … from lmms-eval
        super().__init__()
        self.answers = json.loads(Path(answers).read_text())
        self.seen = Path(seen)

    def generate_until(self, requests) -> list[str]:
        out = []
        for request in requests:
            _, doc_to_messages, gen_kwargs, doc_id, task, split = request.args
            messages = doc_to_messages(self.task_dict[task][split][doc_id])
            system = [part["text"] for m in messages if m["role"] == "system" for part in m["content"]]
            user = [m for m in messages if m["role"] == "user"][-1]["content"]
            text = "\n".join(part["text"] for part in user if part["type"] == "text")
            pictures = sum(part["type"] == "image" for part in user)
            with self.seen.open("a") as f:
                record = {"task": task, "system": system, "text": text, "pictures": pictures, "gen_kwargs": gen_kwargs}
                f.write(json.dumps(record) + "\n")
            out.append(next((r for q, r in self.answers.items() if q in text), "<think>unexpected</think>"))
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError("the stand-in only generates")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("the stand-in answers single turns")


if __name__ == "__main__":
    MODEL_REGISTRY_V2.register_manifest(
        ModelManifest(model_id="think_answer_standin", chat_class_path="__main__.ThinkAnswerStandIn")
    )
    sys.argv = ["lmms_eval", *sys.argv[1:]]
    cli_evaluate()
