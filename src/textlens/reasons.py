"""Key reasons: the few fields or words that made a prediction, in one sentence.

:func:`key_reasons` takes any :class:`~textlens.Explanation` and keeps the ``k`` units
(fields of a record, or words; at most five) with the largest absolute score, split
into those *for* the explained label (positive score) and those *against* it. Each
reason carries its signed score and its **share**: ``|score|`` divided by the sum of
``|score|`` over all units of the text, so shares say how much of the whole
explanation a reason accounts for.

The summary sentence is assembled only from what the explanation produced (label,
probability, field names, values or words, scores), for example::

    false_positive (0.93): mostly because process="backup.exe" (+0.41) and
    rule="scheduled scan" (+0.22); against: src_ip="203.0.113.7" (−0.08)

Values longer than 40 characters are cut and end with "…". For unsigned methods
(saliency, attention: scores are never negative) there is no for/against: the sentence
lists the units with the most weight.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .errors import InvalidParameterError
from .explanation import Explanation

__all__ = ["MAX_REASONS", "KeyReasons", "Reason", "key_reasons"]

#: The most reasons ever listed: an analyst reads them in seconds.
MAX_REASONS = 5
_VALUE_CHARS = 40
_MINUS = "\u2212"
_REASON_LEVELS = ("field", "word", "token")
# Methods whose scores have a direction even when, for one text, none is negative.
_SIGNED_METHODS = frozenset({"grad_x_input", "integrated_gradients", "occlusion", "lime", "shap"})


@dataclass(frozen=True)
class Reason:
    """One unit (field, word or token) and how much it weighed.

    Attributes
    ----------
    name : str
        Field name, or the word/token itself.
    value : str or None
        The field's value (None for words and tokens).
    score : float
        Signed score (positive supports the explained label).
    share : float
        ``|score|`` over the sum of ``|score|`` of every unit of the text.
    start, end : int
        Character span in the explained text.
    """

    name: str
    value: str | None
    score: float
    share: float
    start: int
    end: int

    def phrase(self) -> str:
        """How the reason is named in the summary: ``name="value"`` or ``"word"``."""
        if self.value is None:
            return json.dumps(_clip(self.name), ensure_ascii=False)
        return f"{self.name}={json.dumps(_clip(self.value), ensure_ascii=False)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "score": self.score,
            "share": self.share,
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True)
class KeyReasons:
    """The key reasons of one explanation.

    Attributes
    ----------
    label : str
        The explained label.
    probability : float
        Its probability.
    predicted_label : str
        The most probable label (equal to ``label`` unless a target was asked for).
    method : str
        The method whose scores were used.
    level : str
        'field', 'word' or 'token'.
    signed : bool
        False for methods whose scores are never negative (no for/against then).
    supporting, opposing : tuple of Reason
        Reasons for and against ``label``, largest ``|score|`` first; together at most
        ``k`` (<= 5).
    summary : str
        One sentence built from the above.
    """

    label: str
    probability: float
    predicted_label: str
    method: str
    level: str
    signed: bool
    supporting: tuple[Reason, ...]
    opposing: tuple[Reason, ...]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "label": self.label,
            "probability": self.probability,
            "predicted_label": self.predicted_label,
            "level": self.level,
            "signed": self.signed,
            "supporting": [r.to_dict() for r in self.supporting],
            "opposing": [r.to_dict() for r in self.opposing],
            "summary": self.summary,
        }


def key_reasons(
    explanation: Explanation, *, k: int = MAX_REASONS, level: str | None = None
) -> KeyReasons:
    """The top-``k`` fields or words for and against the explained label, and a summary.

    Parameters
    ----------
    explanation : Explanation
        Any explanation; with fields (a record) the default level is 'field'.
    k : int
        How many reasons at most (1 to 5), for and against together.
    level : {'field', 'word', 'token'}, optional
        Unit of the reasons; default 'field' for records, else 'word'.

    Returns
    -------
    KeyReasons
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_REASONS:
        raise InvalidParameterError(
            f"The 'k' parameter of key_reasons must be an int in [1, {MAX_REASONS}]. Got {k!r}."
        )
    if level is None:
        level = "field" if explanation.fields is not None else "word"
    if level not in _REASON_LEVELS:
        raise InvalidParameterError(
            f"The 'level' parameter of key_reasons must be one of {_REASON_LEVELS}. Got {level!r}."
        )
    units = _units(explanation, level)
    signed = explanation.method in _SIGNED_METHODS or any(s < 0 for s in explanation.scores)
    total = math.fsum(abs(u[2]) for u in units)
    ranked = sorted(
        (u for u in units if u[2] != 0 and math.isfinite(u[2])), key=lambda u: -abs(u[2])
    )[:k]
    reasons = [
        Reason(name, value, score, abs(score) / total if total > 0 else 0.0, start, end)
        for name, value, score, start, end in ranked
    ]
    supporting = tuple(r for r in reasons if r.score > 0)
    opposing = tuple(r for r in reasons if r.score < 0)
    probability = explanation.probabilities[explanation.target]
    summary = _summary(explanation.target_label, probability, supporting, opposing, signed, level)
    return KeyReasons(
        label=explanation.target_label,
        probability=probability,
        predicted_label=explanation.predicted_label,
        method=explanation.method,
        level=level,
        signed=signed,
        supporting=supporting,
        opposing=opposing,
        summary=summary,
    )


def _units(explanation: Explanation, level: str) -> list[tuple[str, str | None, float, int, int]]:
    """(name, value, score, start, end) of every unit at ``level``."""
    if level == "field":
        fields = explanation._require_fields()
        scores = explanation.aggregate_spans(fields)
        return [(f.name, f.value, s, f.start, f.end) for f, s in zip(fields, scores, strict=True)]
    if level == "word":
        words = explanation.words
        scores = explanation.aggregate_spans(words)
        return [(w.text, None, s, w.start, w.end) for w, s in zip(words, scores, strict=True)]
    return [
        (token, None, score, a, b)
        for token, score, (a, b), special in zip(
            explanation.tokens,
            explanation.scores,
            explanation.offsets,
            explanation.special,
            strict=True,
        )
        if not special
    ]


def _summary(
    label: str,
    probability: float,
    supporting: tuple[Reason, ...],
    opposing: tuple[Reason, ...],
    signed: bool,
    level: str,
) -> str:
    head = f"{label} ({probability:.2f})"
    units = {"field": "field", "word": "word", "token": "token"}[level]
    if not signed:
        if not supporting:
            return f"{head}: no {units} carries any weight"
        return f"{head}: most weight on " + _join(
            [f"{r.phrase()} ({format_score(r.score, signed=False)})" for r in supporting]
        )
    parts = []
    if supporting:
        parts.append(
            "mostly because "
            + _join([f"{r.phrase()} ({format_score(r.score)})" for r in supporting])
        )
    else:
        parts.append(f"no {units} speaks for it")
    if opposing:
        parts.append(
            "against: " + _join([f"{r.phrase()} ({format_score(r.score)})" for r in opposing])
        )
    return f"{head}: " + "; ".join(parts)


def format_score(score: float, *, signed: bool = True) -> str:
    """Two decimals (or two significant digits when tiny or huge), with a true minus sign."""
    magnitude = abs(score)
    text = f"{magnitude:.2f}" if 0.01 <= magnitude < 1000 else f"{magnitude:.2g}"
    if not signed:
        return text
    return ("+" if score >= 0 else _MINUS) + text


def _clip(text: str) -> str:
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]
