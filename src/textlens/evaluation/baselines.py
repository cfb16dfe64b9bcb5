"""Reference explanations to compare methods with: random scores, and marked words.

- :func:`random_explanations`: every word gets a random score (the floor: a method
  should beat it on every faithfulness metric);
- :func:`marked_explanations`: 1 on the words the data marks (planted decisive words, a
  human rationale), 0 elsewhere -- on data whose marked words decide the label, this is
  the ceiling.

Both take existing explanations as templates (text, tokens, target, prediction) and
return new :class:`~textlens.explanation.Explanation` objects, so they go through every
evaluation function like any method's results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..explanation import Explanation
from ._units import Annotation, annotation_groups

__all__ = ["marked_explanations", "random_explanations"]


def random_explanations(
    templates: Sequence[Explanation], *, seed: int = 0, method: str = "random"
) -> list[Explanation]:
    """Explanations with a uniform random score per word (spread evenly over its tokens)."""
    rng = np.random.default_rng(seed)
    out = []
    for e in templates:
        scores = np.zeros(len(e.tokens))
        for word in e.words:
            scores[list(word.tokens)] = rng.random() / len(word.tokens)
        out.append(_replace(e, scores, method, {"seed": seed}))
    return out


def marked_explanations(
    templates: Sequence[Explanation], marks: Sequence[Annotation], *, method: str = "marked"
) -> list[Explanation]:
    """Explanations scoring 1 on each marked word (0 elsewhere).

    ``marks`` holds one entry per template: None, a word, a list of words or a list of
    character spans ``[start, end]`` (as the ``planted`` and ``rationale`` fields).
    """
    out = []
    for e, mark in zip(templates, marks, strict=True):
        words = e.words
        scores = np.zeros(len(e.tokens))
        for group in annotation_groups(e, mark, words, "marks") or []:
            for w in group:
                scores[list(words[w].tokens)] = 1.0 / len(words[w].tokens)
        out.append(_replace(e, scores, method, {}))
    return out


def _replace(
    e: Explanation, scores: np.ndarray, method: str, params: dict[str, object]
) -> Explanation:
    return dataclasses.replace(
        e,
        scores=tuple(float(s) for s in scores),
        method=method,
        params=params,
        quality={},
        uncertainty=None,
    )
