"""The project's lmms-eval task variants: eight benchmarks read the way a puzzle-trained model answers.

lmms-eval 0.7.3's own tasks do not give a ``<think>…</think> <answer>X</answer>`` model a fair reading: the
non-reasoning tasks (BLINK, MMVP, HRBench8K, MME-RealWorld-Lite) look for the first letter anywhere, so the
``Option A`` a model weighed inside its thinking beats the ``B`` in its answer tag; MME-RealWorld-Lite allows
16 new tokens; HR-Bench asks a paid GPT judge when its matcher fails; the reasoning variants read the first
``<answer>`` tag and send their own system prompts. These variants, loaded with
``--include_path verl_ext/evaluation/lmms_tasks``, instead:

* deliver the training instruction as the system message of every question (``doc_to_messages``, which the chat
  model classes such as ``qwen2_5_vl`` use), with the question and its lettered options as the user turn;
* read the answer with :mod:`verl_ext.evaluation.extract`, the same rules as the VLMEvalKit path (the last closed
  ``<answer>`` tag; a letter must be one of the question's options; exact option text maps to its letter);
* allow ``max_new_tokens: 2048`` (a reasoning budget) and greedy decoding, and never call a judge model;
* report ``acc`` and ``answered`` (the share of responses with a readable answer) for every benchmark, plus
  ``grouped_acc`` where a benchmark scores rows together: MMBench's circular accuracy (every circular copy of a
  question right) and MMVP's pair accuracy (both pictures of a pair right).

Each benchmark is a :class:`Benchmark`: how to read a :class:`Question` and the pictures from its lmms-eval
document; everything else is shared. The YAML files and ``ssl_tasks.py`` (the module lmms-eval loads by path,
``!function ssl_tasks.…``) are in ``verl_ext/evaluation/lmms_tasks/``.
"""

from __future__ import annotations

import base64
import io
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from verl_ext.evaluation.extract import LETTERS, answer_tags, extract_choice
from verl_ext.evaluation.instruction import SYSTEM_PROMPT


@dataclass(frozen=True)
class Question:
    """One benchmark question as the model reads it and as it is scored (its pictures are read separately).

    ``options`` maps letters to option texts (empty for an open question, whose ``answer`` is the expected text);
    ``group`` joins the rows that are scored together (MMBench's circular copies, MMVP's image pairs).
    """

    text: str
    answer: str
    options: Mapping[str, str] = field(default_factory=dict)
    group: str | None = None


@dataclass(frozen=True)
class Benchmark:
    """How to read one benchmark's lmms-eval documents. ``question`` must not touch picture columns: lmms-eval
    builds prompt texts from documents whose picture columns it has removed."""

    question: Callable[[Mapping[str, Any]], Question]
    pictures: Callable[[Mapping[str, Any]], list[Image.Image]]


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() not in ("", "nan", "None")


def _options_block(options: Mapping[str, str]) -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in options.items())


def _with_options(question: Any, options: Mapping[str, str]) -> str:
    question = str(question).strip()
    return f"{question}\nOptions:\n{_options_block(options)}" if options else question


def _rgb(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, bytes | bytearray):
        return Image.open(io.BytesIO(image)).convert("RGB")
    if isinstance(image, str):  # base64, as HR-Bench and MME-RealWorld ship their pictures
        return Image.open(io.BytesIO(base64.b64decode(image))).convert("RGB")
    if isinstance(image, Mapping) and image.get("bytes") is not None:  # a datasets Image column read without decoding
        return Image.open(io.BytesIO(image["bytes"])).convert("RGB")
    raise ValueError(f"cannot read a picture from a {type(image).__name__}")


def _pictures_in(*columns: str) -> Callable[[Mapping[str, Any]], list[Image.Image]]:
    """The pictures in ``columns`` (a column may hold one picture or a list; missing or empty ones are skipped)."""

    def pictures(doc: Mapping[str, Any]) -> list[Image.Image]:
        out = []
        for column in columns:
            value = doc.get(column)
            for image in value if isinstance(value, list) else [value]:
                if image is not None:
                    out.append(_rgb(image))
        return out

    return pictures


def _letter_columns(doc: Mapping[str, Any], letters: Sequence[str]) -> dict[str, str]:
    return {k: str(doc[k]).strip() for k in letters if k in doc and _present(doc[k])}


def _letter(answer: Any) -> str:
    """``"B"``, ``"(B)"``, ``"(b)"``, ``"B."`` → ``"B"``."""
    m = re.fullmatch(r"\s*\(?\s*([A-Za-z])\s*\)?\s*\.?\s*", str(answer))
    if not m:
        raise ValueError(f"expected an option letter as the answer, got {answer!r}")
    return m.group(1).upper()


# ------------------------------------------------------------------------------------------------ benchmarks


def mmbench_question(doc: Mapping[str, Any]) -> Question:
    """lmms-lab MMBench (``en``, split ``dev``): hint, question, options ``A``…``E``; circular copies share
    ``index % 1_000_000`` (VLMEvalKit's rule)."""
    options = _letter_columns(doc, LETTERS[:5])
    hint = f"{doc['hint']}\n" if _present(doc.get("hint")) else ""
    return Question(
        _with_options(hint + str(doc["question"]), options),
        _letter(doc["answer"]),
        options,
        group=str(int(doc["index"]) % 1_000_000),
    )


def seedbench_question(doc: Mapping[str, Any]) -> Question:
    """lmms-lab SEED-Bench (split ``test``, image questions only; see :func:`seedbench_image_docs`)."""
    options = {k.upper(): str(doc[f"choice_{k}"]) for k in "abcd"}
    return Question(_with_options(doc["question"], options), _letter(doc["answer"]), options)


def seedbench_image_docs(dataset):
    """SEEDBench_IMG is SEED-Bench's image part; the split also holds video questions."""
    return dataset.filter(lambda doc: doc["data_type"] == "image")


def mmstar_question(doc: Mapping[str, Any]) -> Question:
    """Lin-Chen/MMStar (split ``val``): four options written inside the question text (``Options: A: …, B: …``),
    so they are read as letters only."""
    return Question(str(doc["question"]).strip(), _letter(doc["answer"]), dict.fromkeys("ABCD", ""))


# RealWorldQA's own answer instructions ask for a bare letter or word, which contradicts the trained format.
_REALWORLDQA_INSTRUCTION = re.compile(r"\s*Please answer directly with[^\n]*$", re.IGNORECASE)
_LETTER_LINE = re.compile(r"^([A-F])\.\s*(.+)$", re.MULTILINE)


def realworldqa_question(doc: Mapping[str, Any]) -> Question:
    """lmms-lab RealWorldQA (split ``test``): multiple choice (options as ``A. …`` lines of the question) or an
    open answer (a word or number)."""
    text = _REALWORLDQA_INSTRUCTION.sub("", str(doc["question"]).strip())
    answer = str(doc["answer"]).strip()
    options = dict(_LETTER_LINE.findall(text))
    if options and re.fullmatch(r"[A-Fa-f]", answer):
        return Question(text, answer.upper(), options)
    return Question(text, answer)


def blink_question(doc: Mapping[str, Any]) -> Question:
    """BLINK-Benchmark/BLINK (split ``val``, one configuration per subtask): up to four pictures ``image_1``…,
    ``choices``, answer ``(A)``."""
    options = {LETTERS[i]: str(choice) for i, choice in enumerate(doc["choices"])}
    question = str(doc["question"]).replace("<image>", "").strip()
    return Question(_with_options(question, options), _letter(doc["answer"]), options)


def mmerealworld_question(doc: Mapping[str, Any]) -> Question:
    """MME-RealWorld-Lite as lmms-eval ships it: base64 picture in ``bytes``, ``multi-choice options`` as
    ``(A) text`` strings."""
    options = {}
    for line in doc["multi-choice options"]:
        m = re.match(r"\s*\(?([A-E])\)?[.:]?\s*(.*)", str(line), re.DOTALL)
        if m:
            options[m.group(1)] = m.group(2).strip()
    return Question(_with_options(doc["question"], options), _letter(doc["answer"]), options)


def hrbench_question(doc: Mapping[str, Any]) -> Question:
    """DreamMr/HR-Bench (``hrbench_version_split``, split ``hrbench_8k``): base64 picture, options ``A``…``D``."""
    options = _letter_columns(doc, LETTERS[:4])
    return Question(_with_options(doc["question"], options), _letter(doc["answer"]), options)


def mmvp_question(doc: Mapping[str, Any]) -> Question:
    """lmms-lab-eval/MMVP (split ``train``): ``Options`` as ``(a) … (b) …``, ``Correct Answer`` as ``(a)``;
    1-based ``Index`` 1 and 2, 3 and 4, … are the pairs."""
    raw = doc.get("Options", doc.get("options", ""))
    texts = [t.strip() for t in re.findall(r"\([a-z]\)\s*([^(]+?)(?=\s*\([a-z]\)|$)", str(raw), re.IGNORECASE)]
    options = {LETTERS[i]: t for i, t in enumerate(texts)}
    index = int(doc.get("Index", doc.get("index", 0)))
    return Question(
        _with_options(doc.get("Question", doc.get("question", "")), options),
        _letter(doc.get("Correct Answer", doc.get("answer"))),
        options,
        group=str((index - 1) // 2),
    )


BENCHMARKS: dict[str, Benchmark] = {
    "mmbench": Benchmark(mmbench_question, _pictures_in("image")),
    "seedbench": Benchmark(seedbench_question, _pictures_in("image")),
    "mmstar": Benchmark(mmstar_question, _pictures_in("image")),
    "realworldqa": Benchmark(realworldqa_question, _pictures_in("image")),
    "blink": Benchmark(blink_question, _pictures_in("image_1", "image_2", "image_3", "image_4")),
    "mmerealworld": Benchmark(mmerealworld_question, _pictures_in("bytes")),
    "hrbench": Benchmark(hrbench_question, _pictures_in("image")),
    "mmvp": Benchmark(mmvp_question, _pictures_in("image")),
}


# ------------------------------------------------------------------------------------------------ prompts


def messages(question: Question, pictures: Sequence[Image.Image], system_prompt: str = SYSTEM_PROMPT) -> list[dict]:
    """The chat turn lmms-eval's chat models send: the training instruction as system message, then pictures and
    question."""
    content: list[dict] = [{"type": "image", "url": picture} for picture in pictures]
    content.append({"type": "text", "text": question.text})
    return [
        {"role": "system", "content": [{"type": "text", "text": system_prompt}]},
        {"role": "user", "content": content},
    ]


# ------------------------------------------------------------------------------------------------ scoring


def _normalise(text: str) -> str:
    return re.sub(r"[\s.,;:!?'\"*`]+", " ", text).strip().lower()


def read_answer(question: Question, response: str) -> str | None:
    """The answer in ``response``: an option letter (the extractor's rules) or, for an open question, the text of
    the last closed ``<answer>`` tag (a sole word after ``</think>`` when there is no tag)."""
    if question.options:
        letters = sorted(question.options)
        texts = {k: v for k, v in question.options.items() if v}
        return extract_choice(response, letters, texts or None).answer
    tags = answer_tags(response or "")
    if tags:
        return _normalise(tags[-1]) or None
    tail = re.split(r"<\s*/\s*think\s*>", response or "", flags=re.IGNORECASE)[-1]
    words = _normalise(tail).split()
    return words[0] if len(words) == 1 else None


def score(question: Question, response: str) -> dict[str, Any]:
    """lmms-eval ``process_results`` values of one response."""
    got = read_answer(question, response)
    expected = question.answer if question.options else _normalise(question.answer)
    hit = float(got is not None and got == expected)
    out: dict[str, Any] = {"acc": hit, "answered": float(got is not None)}
    if question.group is not None:
        out["grouped_acc"] = {"group": question.group, "hit": hit}
    return out


def group_accuracy(records: Sequence[Mapping[str, Any]]) -> float:
    """Share of groups whose rows are all right (MMBench circular, MMVP pairs)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for record in records:
        groups[str(record["group"])].append(float(record["hit"]))
    return sum(all(hits) for hits in groups.values()) / len(groups) if groups else 0.0


def task_functions(benchmark: str) -> tuple[Callable, ...]:
    """``doc_to_visual, doc_to_text, doc_to_messages, doc_to_target, process_results`` of one benchmark, for
    ``lmms_tasks/ssl_tasks.py``."""
    question, pictures = BENCHMARKS[benchmark].question, BENCHMARKS[benchmark].pictures

    def doc_to_visual(doc):
        return pictures(doc)

    def doc_to_text(doc, lmms_eval_specific_kwargs=None):
        return question(doc).text

    def doc_to_messages(doc, lmms_eval_specific_kwargs=None):
        return messages(question(doc), pictures(doc))

    def doc_to_target(doc):
        return question(doc).answer

    def process_results(doc, results):
        # results holds one response per repeat (1 with greedy decoding); a question's value is their mean.
        asked = question(doc)
        scores = [score(asked, str(r)) for r in results] or [score(asked, "")]
        out: dict[str, Any] = {k: sum(s[k] for s in scores) / len(scores) for k in ("acc", "answered")}
        if "grouped_acc" in scores[0]:
            out["grouped_acc"] = {
                "group": scores[0]["grouped_acc"]["group"],
                "hit": min(s["grouped_acc"]["hit"] for s in scores),
            }
        return out

    return doc_to_visual, doc_to_text, doc_to_messages, doc_to_target, process_results
