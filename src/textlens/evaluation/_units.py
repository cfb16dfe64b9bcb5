"""What every evaluation shares: the units of a text (words by default), their scores and
their ranking, and marking units from human annotations (character spans or words)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError, InvalidParameterError
from ..explanation import Explanation, Span

LEVELS: tuple[str, ...] = ("word", "token")
RANKINGS: tuple[str, ...] = ("signed", "absolute")

Annotation = Any  # str | list[str] | list[[start, end]] | None


def check_option(name: str, value: Any, options: Sequence[Any], owner: str) -> None:
    if value not in options or isinstance(value, bool):
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be one of "
            f"{', '.join(map(repr, options))}. Got {value!r}."
        )


def units(explanation: Explanation, level: str) -> tuple[Span, ...]:
    """The units scored and removed: the explanation's words, or its non-special tokens."""
    if level == "word":
        return explanation.words
    spans = []
    for i, (token, special) in enumerate(zip(explanation.tokens, explanation.special, strict=True)):
        if not special:
            start, end = explanation.offsets[i]
            spans.append(Span(explanation.text[start:end] or token, start, end, (i,)))
    return tuple(spans)


def unit_scores(
    explanation: Explanation, spans: Sequence[Span], ranking: str = "signed"
) -> np.ndarray:
    """Scores summed over each unit's tokens; absolute values with ``ranking='absolute'``."""
    scores = np.asarray(explanation.aggregate_spans(spans), dtype=np.float64)
    return np.abs(scores) if ranking == "absolute" else scores


def order(scores: np.ndarray) -> np.ndarray:
    """Unit indices, highest score first; ties keep text order (a stable sort)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def top_set(scores: np.ndarray, k: int) -> set[int]:
    return {int(i) for i in order(scores)[:k]}


def check_aligned(groups: Mapping[str, Sequence[Explanation]]) -> int:
    """All methods explain the same texts in the same order; returns the number of texts."""
    sizes = {name: len(items) for name, items in groups.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidInputError(
            f"Every method must explain the same texts; got different counts: {sizes}."
        )
    n = next(iter(sizes.values()), 0)
    names = list(groups)
    for i in range(n):
        first = groups[names[0]][i]
        for name in names[1:]:
            other = groups[name][i]
            if other.text != first.text or other.tokens != first.tokens:
                raise InvalidInputError(
                    f"Explanation {i} of {name!r} is of another text (or tokenization) than "
                    f"that of "
                    f"{names[0]!r}: give every method's explanations in the same text order."
                )
    return n


# ---------------------------------------------------------------------- annotations
def annotation_groups(
    explanation: Explanation, annotation: Annotation, spans: Sequence[Span], what: str
) -> list[set[int]] | None:
    """The units covered by each annotated span or word, or None when not annotated.

    ``annotation`` is a word (str), or a list of words and/or character spans
    ``[start, end]``. A character span covers every unit it overlaps; a word covers
    every unit whose text equals it (case-insensitive), and consecutive covered units
    form one group.
    """
    if annotation is None:
        return None
    if isinstance(annotation, str):
        annotation = [annotation]
    if not isinstance(annotation, (list, tuple)):
        raise InvalidInputError(
            f"The {what!r} field must be a list of character spans [[start, end], ...] or of "
            f"words; got {type(annotation).__name__}."
        )
    if not annotation:
        return []
    groups = []
    wanted = {a.strip().casefold() for a in annotation if isinstance(a, str)}
    for item in annotation:
        if isinstance(item, str):  # words and spans may be mixed (a pair's two sides)
            continue
        if (
            not isinstance(item, (list, tuple))
            or len(item) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in item)
            or not 0 <= item[0] <= item[1]
        ):
            raise InvalidInputError(
                f"The {what!r} field must hold either words or character spans [start, end] "
                f"with 0 <= start <= end; got {item!r} (text: {explanation.text[:60]!r})."
            )
        start, end = item
        covered = {i for i, s in enumerate(spans) if s.start < end and s.end > start}
        if covered:
            groups.append(covered)
    if wanted:  # runs of the matching words that no span covers already
        taken = set().union(*groups)
        marked = [i for i, s in enumerate(spans) if s.text.casefold() in wanted and i not in taken]
        groups.extend(_runs(marked))
    return groups


def _runs(indices: Sequence[int]) -> list[set[int]]:
    groups: list[set[int]] = []
    previous = None
    for i in sorted(indices):
        if previous is not None and i == previous + 1:
            groups[-1].add(i)
        else:
            groups.append({i})
        previous = i
    return groups


def runs_of(selected: set[int]) -> list[set[int]]:
    """Maximal runs of consecutive unit indices."""
    return _runs(sorted(selected))
