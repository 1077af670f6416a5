"""Find the option a model chose in a ``<think>…</think> <answer>X</answer>`` response.

Benchmark toolkits look for a bare option letter, and VLMEvalKit's exact matching does not see the ``B`` in
``<answer>B</answer>`` (it splits only on ``.()[],:;!*#{}``, so the tag and the letter stay one token). This
module reads the answer the way the training reward asked for it, so a downstream score measures what the
model answered, not whether a heuristic found it.

Rules (each one is a row of ``tests/test_extract.py``):

* The answer is the content of the **last closed** ``<answer>…</answer>`` tag (tags are matched case-insensitively
  and may carry inner spaces, ``< answer >``). An unclosed tag (a response cut by the length limit) does not count.
* Inside the tag we accept one option letter written as ``B``, ``b``, ``(B)``, ``[B]``, ``B.``, ``B)``, ``B:``,
  ``B. text``, ``(B) text``, optionally after ``Option``/``Answer:``/``The answer is``, wrapped in ``**``, quotes or
  ``\\boxed{}``. A bare letter followed by text without a delimiter (``A cat``) is *not* read as a letter,
  because ``A``/``a`` is also an English article.
* The letter must be one of the row's options; a letter outside them is reported (``invalid_option``), not kept.
* If the content is not a letter but equals the text of exactly one option (``<answer>No</answer>`` for options
  ``A. Yes / B. No``), that option's letter is the answer.
* Yes/no questions (no options) accept ``yes``/``no`` in any case, optionally followed by punctuation or text.
* **No closed tag**: by default we fall back to the text after the last ``</think>`` (the whole response if there
  is none) **only when that text is a sole option letter** (``B``, ``(B)``, ``B.``) or a sole yes/no. Anything
  longer is not guessed at. Fallbacks are counted separately so a base model that ignores the format is visible;
  ``fallback=False`` turns them off.
* Nothing is invented: when no answer is found the result is ``None`` with a reason.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

# Where an answer came from; ``None`` when there is none.
Method = Literal["tag", "fallback"]
# Why there is no answer.
Reason = Literal["no_tag", "unparseable", "invalid_option", "empty"]

LETTERS: tuple[str, ...] = tuple(string.ascii_uppercase)

_TAG = re.compile(r"<\s*answer\s*>(.*?)<\s*/\s*answer\s*>", re.IGNORECASE | re.DOTALL)
_THINK_END = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
# Wrappers people (and models) put around a short answer.
_BOXED = re.compile(r"^\\boxed\s*\{(.*)\}$", re.DOTALL)
_TEXT_CMD = re.compile(r"^\\(?:text|mathrm|textbf)\s*\{(.*)\}$", re.DOTALL)
_PREFIX = re.compile(
    r"^(?:(?:the\s+)?(?:final\s+|correct\s+|best\s+)?(?:answer|option|choice)\b(?:\s+is)?\s*[:：]?\s*)",
    re.IGNORECASE,
)
# "(B)", "[B]", "{B}" with anything after it.
_BRACKETED = re.compile(r"^[(\[{]\s*([A-Za-z])\s*[)\]}](?:\s|$|[.:,;])")
# "B", "B.", "B)", "B:" with nothing or only punctuation after it.
_SOLE = re.compile(r"^([A-Za-z])\s*[.):：,;]?\s*$")
# "B. text", "B) text", "B: text": a letter, a delimiter, then text.
_DELIMITED = re.compile(r"^([A-Za-z])\s*[.):：]\s+\S")
_YES_NO = re.compile(r"^(yes|no)(?:$|[\s.,!;:])", re.IGNORECASE)
_STRIP_CHARS = " \t\r\n*`'\"“”‘’"


@dataclass(frozen=True)
class Extraction:
    """What was found in one response: ``answer`` (``"B"``, ``"Yes"``, ``"No"``) or ``None`` with a ``reason``."""

    answer: str | None
    method: Method | None = None
    reason: Reason | None = None

    @property
    def ok(self) -> bool:
        return self.answer is not None


def answer_tags(text: str) -> list[str]:
    """Contents of every closed ``<answer>…</answer>`` tag in ``text``, in order."""
    return _TAG.findall(text or "")


def _unwrap(content: str) -> str:
    """Strip whitespace, emphasis, quotes, ``\\boxed{}``/``\\text{}`` and a leading 'The answer is'."""
    s = content.strip(_STRIP_CHARS)
    for _ in range(3):  # nested wrappers such as \boxed{\text{B}}
        m = _BOXED.match(s) or _TEXT_CMD.match(s)
        if not m:
            break
        s = m.group(1).strip(_STRIP_CHARS)
    s = _PREFIX.sub("", s, count=1).strip(_STRIP_CHARS)
    return s


def _normalise_text(s: str) -> str:
    return re.sub(r"[\s.,;:!?]+", " ", s).strip().lower()


def parse_choice(
    content: str,
    letters: Sequence[str] = LETTERS[:4],
    option_texts: Mapping[str, str] | None = None,
    *,
    yes_no: bool = False,
    sole_only: bool = False,
) -> tuple[str | None, Reason | None]:
    """Read one answer from the text of an answer tag.

    ``letters`` are the valid option letters of the question (upper case); ``option_texts`` maps them to their
    text, when known, for the exact-text rule. ``yes_no`` reads yes/no questions instead of letters.
    ``sole_only`` accepts only a sole letter / sole yes-no (the no-tag fallback).
    Returns ``(answer, None)`` or ``(None, reason)``.
    """
    s = _unwrap(content)
    if not s:
        return None, "empty"
    if yes_no:
        m = re.fullmatch(r"(yes|no)[.!]?", s, re.IGNORECASE) if sole_only else _YES_NO.match(s)
        return (m.group(1).capitalize(), None) if m else (None, "unparseable")

    valid = {letter.upper() for letter in letters}
    m = _SOLE.match(s) or re.fullmatch(r"[(\[{]\s*([A-Za-z])\s*[)\]}]\s*[.]?", s)
    if m is None and not sole_only:
        m = _BRACKETED.match(s) or _DELIMITED.match(s)
    if m is not None:
        letter = m.group(1).upper()
        return (letter, None) if letter in valid else (None, "invalid_option")
    if option_texts and not sole_only:
        target = _normalise_text(s)
        hits = [k.upper() for k, v in option_texts.items() if v is not None and _normalise_text(str(v)) == target]
        if len(hits) == 1 and hits[0] in valid:
            return hits[0], None
    return None, "unparseable"


def extract_choice(
    response: str,
    letters: Sequence[str] = LETTERS[:4],
    option_texts: Mapping[str, str] | None = None,
    *,
    yes_no: bool = False,
    fallback: bool = True,
) -> Extraction:
    """The option chosen in a whole model response (see the module docstring for the rules)."""
    text = "" if response is None else str(response)
    tags = answer_tags(text)
    if tags:
        answer, reason = parse_choice(tags[-1], letters, option_texts, yes_no=yes_no)
        return Extraction(answer, "tag") if answer else Extraction(None, reason=reason)
    if not fallback:
        return Extraction(None, reason="no_tag")
    tail = _THINK_END.split(text)[-1]
    answer, reason = parse_choice(tail, letters, option_texts, yes_no=yes_no, sole_only=True)
    if answer:
        return Extraction(answer, "fallback")
    # A sole letter outside the options is still worth reporting as such.
    return Extraction(None, reason="invalid_option" if reason == "invalid_option" else "no_tag")
