"""Feature groupings: which tokens a perturbation method switches on and off together.

Perturbation methods (occlusion, LIME, SHAP) do not perturb tokens one by one: they
perturb *features*, groups of tokens such as a word's sub-word pieces. A grouping turns
one encoded text into a list of :class:`~textlens.explanation.Span` objects (text,
character offsets and token indices). Special tokens ([CLS], [SEP], <s>...) are never
part of a feature; tokens that belong to no feature are left as they are.

Built-in groupings:

- :class:`Words` (default): the tokenizer's words (its ``word_ids``), so WordPiece,
  BPE and SentencePiece sub-words of one word move together. The words are the same as
  :attr:`textlens.Explanation.words`, so word-level aggregation of the token scores
  returns the feature values.
- :class:`Tokens`: every non-special token on its own.
- :class:`Spans`: runs of ``size`` consecutive words.
- :class:`Sentences`: sentences, split after ``.``, ``!``, ``?`` (and line breaks).
- :class:`CharSpans`: any user-given character ranges, fixed or computed from the
  text (fields of a record, phrases...). Subclass :class:`Grouping` for anything else.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from .errors import InvalidParameterError
from .explanation import Span
from .model import Encoding
from .pairs import PAIR_MARK

__all__ = [
    "GROUPINGS",
    "CharSpans",
    "Grouping",
    "Sentences",
    "Spans",
    "Tokens",
    "Words",
    "feature_spans",
    "make_grouping",
]

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*|" + PAIR_MARK)


class Grouping(ABC):
    """How the tokens of a text are grouped into features.

    Subclasses implement :meth:`groups` and :meth:`to_param`.
    """

    name: str = ""

    @abstractmethod
    def groups(
        self,
        text: str,
        offsets: Sequence[tuple[int, int]],
        special: Sequence[bool],
        word_ids: Sequence[int | None],
    ) -> list[list[int]]:
        """Token indices of each feature, in text order; specials must not appear."""

    @abstractmethod
    def to_param(self) -> str | dict[str, Any]:
        """A JSON-ready description recorded in each explanation's ``params``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_param()!r})"


class Words(Grouping):
    """The tokenizer's words; a token without a word id is a feature of its own."""

    name = "word"

    def groups(
        self,
        text: str,
        offsets: Sequence[tuple[int, int]],
        special: Sequence[bool],
        word_ids: Sequence[int | None],
    ) -> list[list[int]]:
        return _word_groups(special, word_ids)

    def to_param(self) -> str:
        return "word"


class Tokens(Grouping):
    """Every non-special token is a feature."""

    name = "token"

    def groups(
        self,
        text: str,
        offsets: Sequence[tuple[int, int]],
        special: Sequence[bool],
        word_ids: Sequence[int | None],
    ) -> list[list[int]]:
        return [[i] for i, s in enumerate(special) if not s]

    def to_param(self) -> str:
        return "token"


class Spans(Grouping):
    """Runs of ``size`` consecutive words (the last run may be shorter); the two texts of a
    pair are cut into runs separately."""

    name = "span"

    def __init__(self, size: int = 4) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidParameterError(
                f"The 'size' parameter of Spans must be an int >= 1. Got {size!r}."
            )
        self.size = size

    def groups(
        self,
        text: str,
        offsets: Sequence[tuple[int, int]],
        special: Sequence[bool],
        word_ids: Sequence[int | None],
    ) -> list[list[int]]:
        words = _word_groups(special, word_ids)
        mark = text.find(PAIR_MARK)  # the two texts of a pair are run separately
        parts = [words]
        if mark >= 0:
            parts = [
                [w for w in words if offsets[w[0]][0] < mark],
                [w for w in words if offsets[w[0]][0] > mark],
            ]
        runs = [part[i : i + self.size] for part in parts for i in range(0, len(part), self.size)]
        return [[t for word in run for t in word] for run in runs]

    def to_param(self) -> dict[str, Any]:
        return {"grouping": "span", "size": self.size}


class Sentences(Grouping):
    """Sentences: text split after ``.``/``!``/``?`` followed by a space, at line breaks, and
    between the two texts of a pair.

    A word belongs to the sentence in which it starts.
    """

    name = "sentence"

    def groups(
        self,
        text: str,
        offsets: Sequence[tuple[int, int]],
        special: Sequence[bool],
        word_ids: Sequence[int | None],
    ) -> list[list[int]]:
        bounds = [m.end() for m in _SENTENCE_END.finditer(text)]
        result: dict[int, list[int]] = {}
        for word in _word_groups(special, word_ids):
            start = offsets[word[0]][0]
            sentence = sum(1 for b in bounds if b <= start)
            result.setdefault(sentence, []).extend(word)
        return [result[k] for k in sorted(result)]

    def to_param(self) -> str:
        return "sentence"


class CharSpans(Grouping):
    """User-given character ranges ``[(start, end), ...]``, one feature per range.

    Parameters
    ----------
    spans : sequence of (int, int) or callable
        The same ranges for every text, or a function ``text -> [(start, end), ...]``.
        A token belongs to the first range it overlaps; tokens in no range are not
        features (they are never perturbed). Ranges that cover no token are dropped.
    name : str
        Recorded in the explanation's params (e.g. 'fields').
    """

    def __init__(
        self,
        spans: Sequence[tuple[int, int]] | Callable[[str], Sequence[tuple[int, int]]],
        name: str = "char_spans",
    ) -> None:
        self.spans = spans
        self.name = name
        if not callable(spans):
            _check_ranges(spans)

    def groups(
        self,
        text: str,
        offsets: Sequence[tuple[int, int]],
        special: Sequence[bool],
        word_ids: Sequence[int | None],
    ) -> list[list[int]]:
        ranges = list(self.spans(text)) if callable(self.spans) else list(self.spans)
        _check_ranges(ranges)
        result: list[list[int]] = [[] for _ in ranges]
        for index, (start, end) in enumerate(offsets):
            if special[index] or end <= start:
                continue
            for r, (a, b) in enumerate(ranges):
                if start < b and end > a:
                    result[r].append(index)
                    break
        return [g for g in result if g]

    def to_param(self) -> dict[str, Any]:
        spans = (
            getattr(self.spans, "__name__", "callable")
            if callable(self.spans)
            else [list(s) for s in self.spans]
        )
        return {"grouping": self.name, "spans": spans}


GROUPINGS: tuple[str, ...] = ("word", "token", "span", "sentence")


def make_grouping(features: str | Grouping, span_size: int = 4) -> Grouping:
    """The grouping named ``features`` ('word', 'token', 'span', 'sentence') or the one given."""
    if isinstance(features, Grouping):
        return features
    if features == "word":
        return Words()
    if features == "token":
        return Tokens()
    if features == "span":
        return Spans(span_size)
    if features == "sentence":
        return Sentences()
    raise InvalidParameterError(
        f"Unknown feature grouping {features!r}: use one of {', '.join(map(repr, GROUPINGS))} "
        "or a textlens.features.Grouping instance (e.g. CharSpans([(0, 10), (11, 40)]))."
    )


def feature_spans(encoding: Encoding, index: int, grouping: Grouping | str = "word") -> list[Span]:
    """The features of text ``index`` of ``encoding``, as spans in text order.

    Parameters
    ----------
    encoding : Encoding
        Texts encoded by :meth:`textlens.ModelAdapter.encode`.
    index : int
        Which text.
    grouping : Grouping or str
        See :func:`make_grouping`.

    Returns
    -------
    list of Span
        One per feature: covered text, character offsets, token indices. Special
        tokens never appear.
    """
    grouping = make_grouping(grouping)
    text = encoding.texts[index]
    offsets = encoding.offsets[index]
    special = encoding.special[index]
    groups = grouping.groups(text, offsets, special, encoding.word_ids[index])
    spans = []
    seen: set[int] = set()
    for group in groups:
        tokens = tuple(sorted(t for t in group if not special[t] and t not in seen))
        if not tokens:
            continue
        seen.update(tokens)
        starts = [offsets[t][0] for t in tokens if offsets[t][1] > offsets[t][0]]
        ends = [offsets[t][1] for t in tokens if offsets[t][1] > offsets[t][0]]
        start, end = (min(starts), max(ends)) if starts else (0, 0)
        spans.append(Span(text[start:end], start, end, tokens))
    return spans


def _word_groups(special: Sequence[bool], word_ids: Sequence[int | None]) -> list[list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (is_special, word) in enumerate(zip(special, word_ids, strict=True)):
        if is_special:
            continue
        key = (0, word) if word is not None else (1, index)
        groups.setdefault(key, []).append(index)
    return sorted(groups.values(), key=lambda g: g[0])


def _check_ranges(ranges: Sequence[Any]) -> None:
    for r in ranges:
        ok = (
            isinstance(r, Sequence)
            and len(r) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
            and 0 <= r[0] <= r[1]
        )
        if not ok:
            raise InvalidParameterError(
                f"Each character range of CharSpans must be a pair (start, end) of ints with "
                f"0 <= start <= end. Got {r!r}."
            )
