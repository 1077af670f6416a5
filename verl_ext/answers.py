"""Reading puzzle answers out of model responses: structure, normalisation and scoring.

Everything here is pure, never raises on model output and does bounded work per call:

* :func:`parse_response` finds the ``<think>…</think> <answer>…</answer>`` structure with one linear scan for
  four fixed tag strings (no backtracking pattern), stops at the first surplus tag, and ignores responses
  longer than :data:`MAX_RESPONSE_CHARS` outright.
* :func:`normalize` makes "Top Left", "top-left" and "TOP_LEFT." one string, and "90°", "90 degrees" and
  "90 deg" another.
* :func:`score_label` and :func:`score_permutation` turn an extracted answer into an :class:`AnswerScore`.

Leniency is about spelling only, never about content: an answer that names more than one candidate
("0 or 90", "top-left/top-right", every label at once) does not equal any single label after
normalisation, so it earns nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from verl_ext.tasks.base import AnswerScore

# Responses longer than this (in characters) get no format credit and no answer. verl caps responses at
# ``data.max_response_length`` tokens (a few thousand, i.e. tens of thousands of characters at most), so
# only degenerate output reaches the cap; it bounds the work a pathological response can cause.
MAX_RESPONSE_CHARS = 200_000
# Answers longer than this are junk for every task we have (a 6x6 jigsaw answer is about 150 characters);
# the cap bounds normalisation work.
MAX_ANSWER_CHARS = 1_024

_THINK_OPEN, _THINK_CLOSE, _ANSWER_OPEN, _ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
# (bytes to search, length, name) of each tag.
_TAGS = tuple((tag.encode(), len(tag), tag) for tag in (_THINK_OPEN, _THINK_CLOSE, _ANSWER_OPEN, _ANSWER_CLOSE))

ZERO = AnswerScore(acc=0.0, partial=0.0)
FULL = AnswerScore(acc=1.0, partial=1.0)


class ParsedResponse(NamedTuple):
    """What :func:`parse_response` found.

    ``answer`` is the stripped text of the single ``<answer>…</answer>`` block that ends the response, or
    ``None`` when there is no such block (missing, repeated, unbalanced, nested, too long).
    ``has_think`` says a single well-placed ``<think>…</think>`` block precedes it; ``format_ok`` is the whole
    format verdict for the caller's ``require_think`` choice.
    """

    answer: str | None
    has_think: bool
    format_ok: bool


NO_ANSWER = ParsedResponse(answer=None, has_think=False, format_ok=False)


def as_text(value: Any) -> str:
    """Model output as ``str``: ``bytes`` are decoded leniently, ``None`` and anything else become ``""``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value[: MAX_RESPONSE_CHARS * 4]).decode("utf-8", errors="replace")
    return ""


def parse_response(response: Any, require_think: bool = True) -> ParsedResponse:
    """Find ``<think>…</think>`` followed by ``<answer>…</answer>`` at the end of ``response``.

    The accepted shape is: optional whitespace, ``<think>``, anything without tags, ``</think>``, optional
    whitespace, ``<answer>``, anything without tags, ``</answer>``, optional whitespace. Tags are matched
    case-insensitively. Without ``require_think`` the think block may be left out entirely (but if it is
    there it must be well placed; untagged reasoning may precede the answer). The answer is extracted whenever
    the response ends with exactly one answer block and holds no other tags out of place, even when the think
    part is missing, so accuracy and format are judged separately.
    """
    text = response if type(response) is str else as_text(response)
    if len(text) > MAX_RESPONSE_CHARS:
        return NO_ANSWER
    tags = _find_tags(text)
    if tags is None or len(tags) < 2:
        return NO_ANSWER
    (_, answer_start, open_name), (answer_end, close_end, close_name) = tags[-2], tags[-1]
    if open_name != _ANSWER_OPEN or close_name != _ANSWER_CLOSE:
        return NO_ANSWER  # the response does not end with an answer block
    if text[close_end:].strip():
        return NO_ANSWER  # text after </answer>: the answer is not final
    answer = text[answer_start:answer_end].strip()
    if len(answer) > MAX_ANSWER_CHARS:
        return NO_ANSWER

    head = tags[:-2]
    if not head:
        # No think block: acceptable only when it is not required (free reasoning text may precede the answer).
        return ParsedResponse(answer=answer, has_think=False, format_ok=not require_think)
    if any(name in (_ANSWER_OPEN, _ANSWER_CLOSE) for _, _, name in head):
        return NO_ANSWER  # more than one answer block (a hedge), or an unbalanced one
    if len(head) == 2 and head[0][2] == _THINK_OPEN and head[1][2] == _THINK_CLOSE:
        has_think = not text[: head[0][0]].strip() and not text[head[1][1] : tags[-2][0]].strip()
        return ParsedResponse(answer=answer, has_think=has_think, format_ok=has_think)
    # Stray think tags (only one of the pair, reversed, ...): the answer is still the final block.
    has_think = format_ok = False
    return ParsedResponse(answer=answer, has_think=has_think, format_ok=format_ok)


def _find_tags(text: str) -> list[tuple[int, int, str]] | None:
    """``(start, end, lowercase tag)`` of every think/answer tag in ``text`` in order; ``None`` if more than four.

    Tags are searched case-insensitively with C-speed byte searches in a one-byte-per-character image of
    ``text`` (so byte offsets are character offsets; ``bytes.lower`` only touches A-Z). Latin-1 text (all
    ASCII text included) encodes by plain copy; wider text goes through ``errors="replace"``, which turns
    each character outside ASCII into one ``?`` (slower on text alternating scripts, hence the length cap).
    No regular expression, so no input can make the search backtrack.
    """
    try:
        image = text.encode("latin-1").lower()
    except UnicodeEncodeError:
        image = text.encode("ascii", errors="replace").lower()
    found: list[tuple[int, int, str]] = []
    for tag, length, name in _TAGS:
        start = image.find(tag)
        while start >= 0:
            found.append((start, start + length, name))
            if len(found) > 4:
                return None  # more tags than the one accepted shape has: nested, repeated or a flood
            start = image.find(tag, start + 1)
    found.sort()
    return found


# ------------------------------------------------------------------------------------------------ labels

# A word of a label: a run of letters/digits; a number keeps a leading minus sign ("-90" is a clockwise
# spelling of 270, not 90), but a hyphen between words separates them ("top-left" is "top left").
_WORD = re.compile(r"(?:(?<![\w-])-(?=\d))?[^\W_]+")
# Units glued to a number ("90deg", "90degrees"); "°" is not a word character and falls away by itself.
_GLUED_UNIT = re.compile(r"(?<=\d)(?:degrees|degree|degs|deg)\b")
# Unit words that add nothing to an angle ("90 degrees" is "90").
_UNIT_WORDS = frozenset({"degree", "degrees", "deg", "degs"})
# Unicode minus signs and dashes, read as "-" so "−90" keeps its sign.
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d"})
# Leading phrases models put before an answer; dropped so "Answer: 90" is "90".
_PREFIXES = (("the", "answer", "is"), ("final", "answer"), ("answer", "is"), ("answer",))
_BOXED = re.compile(r"^\\boxed\{(.*)\}$", re.DOTALL)


@lru_cache(maxsize=8_192)
def normalize(text: str) -> str:
    """Canonical spelling of a short label: casefolded words joined by single spaces, units dropped.

    ``"Top Left"``, ``"top-left"``, ``" TOP_LEFT. "`` → ``"top left"``; ``"90°"``, ``"90 degrees"``,
    ``"90deg"``, ``"\\boxed{90}"`` → ``"90"``; ``"-90"`` stays ``"-90"``.
    """
    text = text.strip()
    boxed = _BOXED.match(text)
    if boxed:
        text = boxed.group(1)
    words = _WORD.findall(_GLUED_UNIT.sub(" ", text.translate(_DASHES).casefold()))
    words = [w for w in words if w not in _UNIT_WORDS]
    for prefix in _PREFIXES:
        if tuple(words[: len(prefix)]) == prefix:
            words = words[len(prefix) :]
            break
    return " ".join(words)


_AMBIGUOUS = object()

# Normalised spelling -> normalised canonical label (or _AMBIGUOUS for a spelling two labels share).
LabelIndex = Mapping[str, object]


def label_index(labels: Mapping[str, Sequence[str]]) -> LabelIndex:
    """The lookup table :func:`score_label_index` uses, built once per distinct ``labels`` (cached)."""
    key = tuple((canonical, tuple(aliases)) for canonical, aliases in labels.items())
    return _label_index_cached(key)


@lru_cache(maxsize=1_024)
def _label_index_cached(key: tuple[tuple[str, tuple[str, ...]], ...]) -> LabelIndex:
    index: dict[str, object] = {}
    for canonical, aliases in key:
        target = normalize(canonical)
        for spelling in (canonical, *aliases):
            form = normalize(spelling)
            if not form:
                continue
            previous = index.get(form)
            if previous is None:
                index[form] = target
            elif previous != target:
                index[form] = _AMBIGUOUS
    return index


def score_label(answer: Any, ground_truth: str, labels: Mapping[str, Sequence[str]]) -> AnswerScore:
    """Exact match of ``answer`` to the label ``ground_truth`` after normalisation.

    ``labels`` maps every canonical answer of the puzzle to extra spellings accepted for it (see
    :meth:`verl_ext.tasks.base.Task.labels`). An answer that is not exactly one label's spelling (empty,
    several labels, free text) scores zero; so does a spelling two labels share. ``partial`` equals ``acc``.
    """
    return score_label_index(answer, ground_truth, label_index(labels))


def score_label_index(answer: Any, ground_truth: str, index: LabelIndex) -> AnswerScore:
    """:func:`score_label` against a prebuilt :func:`label_index` (callers that cache it per puzzle)."""
    if not isinstance(answer, str) or not answer or len(answer) > MAX_ANSWER_CHARS:
        return ZERO
    form = normalize(answer)
    if not form:
        return ZERO
    said = index.get(form)
    if said is None or said is _AMBIGUOUS:
        return ZERO
    truth_form = normalize(str(ground_truth))
    truth = index.get(truth_form, truth_form)
    return FULL if said == truth else ZERO


# ------------------------------------------------------------------------------------------ permutations

# What may stand between the numbers of a permutation: whitespace, commas, semicolons, brackets, arrows.
# "/" and "|" are left out on purpose: they read as "or".
_PERMUTATION_CHARS = re.compile(r"[\d\s,;()\[\]{}<>\-.]*")
_NUMBER = re.compile(r"\d+")


def parse_permutation(text: Any, n: int) -> tuple[int, ...] | None:
    """``text`` as a permutation of ``1..n`` (``"3,2,1,4"``, ``"[3 2 1 4]"``, ``"3-2-1-4"``), else ``None``.

    Only digits and separators are allowed; for ``n <= 9`` a bare run of ``n`` digits (``"3214"``) is read
    one digit per tile. Repeated, missing or out-of-range numbers, or a count other than ``n``, give ``None``.
    """
    if not isinstance(text, str) or not isinstance(n, int) or n < 1 or len(text) > MAX_ANSWER_CHARS:
        return None
    body = text.strip()
    boxed = _BOXED.match(body)
    if boxed:
        body = boxed.group(1)
    if not _PERMUTATION_CHARS.fullmatch(body):
        return None
    numbers = _NUMBER.findall(body)
    if len(numbers) == 1 and n <= 9 and len(numbers[0]) == n:
        numbers = list(numbers[0])
    if len(numbers) != n or any(len(x) > 4 for x in numbers):
        return None
    values = tuple(int(x) for x in numbers)
    if sorted(values) != list(range(1, n + 1)):
        return None
    return values


@lru_cache(maxsize=65_536)
def _truth_permutation(ground_truth: str, n: int) -> tuple[int, ...] | None:
    return parse_permutation(ground_truth, n)


def score_permutation(answer: Any, ground_truth: str, n: int) -> AnswerScore:
    """Score a tile order: the exact permutation earns ``acc=1, partial=1``; a valid but wrong permutation of
    ``1..n`` earns ``partial`` = the fraction of positions it gets right; anything else earns nothing.

    Answers that are not permutations (``"1,1,1,1"``, three numbers for four tiles) get no partial credit,
    so repeating one number cannot farm reward.
    """
    try:
        n = int(n)
    except (TypeError, ValueError):
        return ZERO
    said = parse_permutation(answer, n)
    truth = _truth_permutation(str(ground_truth), n)
    if said is None or truth is None:
        return ZERO
    if said == truth:
        return FULL
    right = sum(a == b for a, b in zip(said, truth))
    return AnswerScore(acc=0.0, partial=right / n)


__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_RESPONSE_CHARS",
    "LabelIndex",
    "ParsedResponse",
    "as_text",
    "label_index",
    "normalize",
    "parse_permutation",
    "parse_response",
    "score_label",
    "score_label_index",
    "score_permutation",
]
