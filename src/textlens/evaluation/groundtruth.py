"""Ground truth: when the data marks the words that decide the label, are they ranked first?

For data with *planted* decisive words (a test set built so that one known word decides
the label, or a field ``planted`` in the input file), the hit rate at 1 is the share of
texts whose highest-ranked word is planted, and the hit rate at ``k`` the share of
planted words found among the top ``k`` words (per text, out of ``min(k, number
planted)``, so one planted word counts as found or not), averaged over texts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import InvalidInputError, InvalidParameterError
from ..explanation import Explanation
from ._units import (
    LEVELS,
    RANKINGS,
    Annotation,
    annotation_groups,
    check_option,
    top_set,
    unit_scores,
    units,
)
from .metrics import MetricResult, metric_result

__all__ = ["hit_rates"]


def hit_rates(
    explanations: Sequence[Explanation],
    planted: Sequence[Annotation],
    *,
    k: int = 3,
    level: str = "word",
    ranking: str = "signed",
) -> dict[str, MetricResult]:
    """Hit rate at 1 and at ``k`` of the planted words.

    Parameters
    ----------
    explanations : list of Explanation
    planted : list
        One per explanation: None (nothing planted: the text is left out), a word, a list
        of words (every occurrence counts) or a list of character spans ``[start, end]``.
    k : int
    level : {'word', 'token'}
    ranking : {'signed', 'absolute'}

    Returns
    -------
    dict of str to MetricResult
        ``hit_at_1`` and ``hit_at_k`` (``details['k']`` holds ``k``).
    """
    check_option("level", level, LEVELS, "hit_rates")
    check_option("ranking", ranking, RANKINGS, "hit_rates")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidParameterError(
            f"The 'k' parameter of hit_rates must be an int >= 1. Got {k!r}."
        )
    if len(explanations) != len(planted):
        raise InvalidInputError(
            f"Give one planted entry (or None) per explanation: got {len(explanations)} "
            f"explanations and {len(planted)} entries."
        )
    at_1, at_k = [], []
    for e, marks in zip(explanations, planted, strict=True):
        spans = units(e, level)
        groups = annotation_groups(e, marks, spans, "planted")
        truth = set().union(*groups) if groups else set()
        if not truth:
            at_1.append(math.nan)
            at_k.append(math.nan)
            continue
        scores = unit_scores(e, spans, ranking)
        at_1.append(float(bool(top_set(scores, 1) & truth)))
        at_k.append(len(top_set(scores, k) & truth) / min(k, len(truth)))
    return {
        "hit_at_1": metric_result("hit_at_1", at_1, {"k": 1}),
        "hit_at_k": metric_result("hit_at_k", at_k, {"k": k}),
    }
