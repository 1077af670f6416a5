"""Start VLMEvalKit's own ``run.py`` (from the checkout in ``$VLMEVALKIT_DIR``) with a stand-in model.

The stand-in, ``ThinkAnswerStandIn``, answers each question with the response ``$STANDIN_ANSWERS`` (a JSON file:
question text → response) gives it, in the trained format ``<think>…</think> <answer>…</answer>``, so the
project's path can be run through the real VLMEvalKit without a model or a GPU. It is added to ``vlmeval.vlm`` in
this process only (a config's ``class`` is looked up there). Every time VLMEvalKit builds it, a line is appended
to ``$STANDIN_BUILDS``, so a test can tell whether a stage loaded a model.

The benchmark TSVs of a test are not the published ones: their md5 is registered as the expected one, or
VLMEvalKit would try to download the published files.

    VLMEVAL="python tests/vlmevalkit_standin.py" bash scripts/eval_downstream.sh ...
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import sys
from pathlib import Path

CHECKOUT = Path(os.environ["VLMEVALKIT_DIR"]).resolve()
sys.path.insert(0, str(CHECKOUT))

import vlmeval.dataset  # noqa: E402  (from the checkout just put on the path)
import vlmeval.vlm  # noqa: E402
from vlmeval.vlm.base import BaseModel  # noqa: E402


class ThinkAnswerStandIn(BaseModel):
    INTERLEAVE = False

    def __init__(self, **kwargs):  # the template's Qwen2VLChat arguments (model_path, …) are accepted and unused
        super().__init__()
        self.answers = json.loads(Path(os.environ["STANDIN_ANSWERS"]).read_text())
        with open(os.environ["STANDIN_BUILDS"], "a") as f:
            f.write(json.dumps(sorted(kwargs)) + "\n")

    def generate_inner(self, message, dataset=None):
        text = "\n".join(m["value"] for m in message if m["type"] == "text")
        for question, response in self.answers.items():
            if question in text:
                return response
        return "<think>This question was not expected.</think>"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def main() -> None:
    vlmeval.vlm.ThinkAnswerStandIn = ThinkAnswerStandIn
    data_root = Path(os.environ["LMUData"])
    checksums = [
        c.DATASET_MD5 for c in vars(vlmeval.dataset).values() if isinstance(getattr(c, "DATASET_MD5", None), dict)
    ]
    for tsv in data_root.glob("*.tsv"):
        for known in checksums:
            if tsv.stem in known:
                known[tsv.stem] = _md5(tsv)
    run_py = CHECKOUT / "run.py"
    sys.argv = [str(run_py), *sys.argv[1:]]
    runpy.run_path(str(run_py), run_name="__main__")


if __name__ == "__main__":
    main()
