"""Plausibility: do the words a method ranks highest match what humans marked?

Computed as ERASER defines them (DeYoung et al. 2020, https://arxiv.org/abs/1911.03429,
and its ``rationale_benchmark/metrics.py``), with the text's words as ERASER's tokens:

- a method gives soft scores, so its *hard* rationale is its top ``k`` words, where
  ``k`` is the average human rationale length over the data set (ERASER's ``k_d``;
  ``k='text'`` uses each text's own rationale length, an int fixes it);
- **token F1**: per text, precision and recall of the hard rationale's words against the
  human ones, and their F1; the figure is the mean of the per-text F1 (ERASER's
  ``instance_macro`` F1);
- **IOU F1**: the hard rationale is split into spans (runs of consecutive words); a
  predicted span is a match when its intersection-over-union with some human span is at
  least 0.5; per text, precision = matches / predicted spans and recall = matches /
  human spans; the figure is the F1 of the mean precision and the mean recall
  (ERASER's ``macro`` IOU F1);
- **AUPRC**: per text, the area (trapezoid rule) under the precision-recall curve of
  the soft word scores against the human words (as ``sklearn.metrics.auc`` of
  ``precision_recall_curve``), averaged over texts.

Human rationales are given per text as a list of character spans ``[[start, end],
...]`` (each span is one human span, covering every word it overlaps) or a list of
words (every occurrence is marked; consecutive marked words form one span). Texts
without a rationale (None, or nothing marked) are left out (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError, InvalidParameterError
from ..explanation import Explanation
from ._units import (
    LEVELS,
    RANKINGS,
    Annotation,
    annotation_groups,
    check_option,
    order,
    runs_of,
    unit_scores,
    units,
)
from .metrics import MetricResult, metric_result

__all__ = ["auprc", "iou_f1", "plausibility", "rationale_mask", "token_f1"]


def rationale_mask(
    explanation: Explanation, rationale: Annotation, level: str = "word"
) -> np.ndarray | None:
    """Bool per unit (word by default): marked by the human ``rationale``; None if not annotated."""
    spans = units(explanation, level)
    groups = annotation_groups(explanation, rationale, spans, "rationale")
    if groups is None:
        return None
    mask = np.zeros(len(spans), dtype=bool)
    for group in groups:
        mask[list(group)] = True
    return mask


def plausibility(
    explanations: Sequence[Explanation],
    rationales: Sequence[Annotation],
    *,
    level: str = "word",
    k: int | str = "dataset",
    iou_threshold: float = 0.5,
    ranking: str = "signed",
) -> dict[str, MetricResult]:
    """Token F1, IOU F1 and AUPRC of ``explanations`` against human ``rationales``.

    Parameters
    ----------
    explanations : list of Explanation
        One method's explanations.
    rationales : list
        One per explanation: None, a list of character spans ``[start, end]`` or a list
        of words (see the module docstring).
    level : {'word', 'token'}
    k : 'dataset', 'text' or int
        Size of the hard rationale: the mean human rationale length over the annotated
        texts (rounded, ERASER), each text's own length, or a fixed number of units.
    iou_threshold : float
        IOU at which a predicted span matches a human one (ERASER: 0.5).
    ranking : {'signed', 'absolute'}
        Rank by score (default) or by ``|score|``; AUPRC uses the same values.

    Returns
    -------
    dict of str to MetricResult
        ``token_f1``, ``iou_f1``, ``auprc``.
    """
    owner = "plausibility"
    check_option("level", level, LEVELS, owner)
    check_option("ranking", ranking, RANKINGS, owner)
    if not (
        k in ("dataset", "text") or (isinstance(k, int) and not isinstance(k, bool) and k >= 1)
    ):
        raise InvalidParameterError(
            f"The 'k' parameter of plausibility must be 'dataset', 'text' or an int >= 1. "
            f"Got {k!r}."
        )
    if not isinstance(iou_threshold, (int, float)) or not 0 < iou_threshold <= 1:
        raise InvalidParameterError(
            f"The 'iou_threshold' parameter of plausibility must be a number in (0, 1]. "
            f"Got {iou_threshold!r}."
        )
    if len(explanations) != len(rationales):
        raise InvalidInputError(
            f"Give one rationale (or None) per explanation: got {len(explanations)} explanations "
            f"and {len(rationales)} rationales."
        )
    texts: list[tuple[np.ndarray, list[set[int]]] | None] = []
    for e, rationale in zip(explanations, rationales, strict=True):
        spans = units(e, level)
        groups = annotation_groups(e, rationale, spans, "rationale")
        if not groups:
            texts.append(None)
            continue
        texts.append((unit_scores(e, spans, ranking), groups))
    lengths = [len(set().union(*item[1])) for item in texts if item is not None]
    dataset_k = max(1, round(float(np.mean(lengths)))) if lengths else 1
    f1s, auprcs, precisions, recalls = [], [], [], []
    for item in texts:
        if item is None:
            f1s.append(math.nan)
            auprcs.append(math.nan)
            precisions.append(math.nan)
            recalls.append(math.nan)
            continue
        scores, groups = item
        truth = set().union(*groups)
        size = dataset_k if k == "dataset" else len(truth) if k == "text" else int(k)
        predicted = {int(i) for i in order(scores)[: min(size, len(scores))]}
        f1s.append(token_f1(predicted, truth))
        p, r = _iou_precision_recall(runs_of(predicted), groups, float(iou_threshold))
        precisions.append(p)
        recalls.append(r)
        mask = np.zeros(len(scores), dtype=bool)
        mask[list(truth)] = True
        auprcs.append(auprc(scores, mask))
    details = {"k": k, "k_used": dataset_k if k == "dataset" else k, "level": level}
    mean_p = _nanmean(precisions)
    mean_r = _nanmean(recalls)
    return {
        "token_f1": metric_result("token_f1", f1s, details),
        "iou_f1": _iou_result(mean_p, mean_r, precisions, recalls, details),
        "auprc": metric_result("auprc", auprcs, details),
    }


def token_f1(predicted: set[int], truth: set[int]) -> float:
    """F1 of a predicted set of units against the true set (0 when either side is empty)."""
    hits = len(predicted & truth)
    if not predicted or not truth or hits == 0:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(truth)
    return 2 * precision * recall / (precision + recall)


def iou_f1(
    predicted: Sequence[set[int]], truth: Sequence[set[int]], threshold: float = 0.5
) -> float:
    """IOU F1 of one text: predicted spans matching a true span with IOU >= ``threshold``."""
    p, r = _iou_precision_recall(predicted, truth, threshold)
    return _f1(p, r)


def auprc(scores: Sequence[float] | np.ndarray, truth: Sequence[bool] | np.ndarray) -> float:
    """Area under the precision-recall curve (trapezoid rule over recall), as ERASER computes it.

    The curve has one point per distinct score (highest first: precision and recall of
    the units scoring at least that much) and starts at recall 0, precision 1, like
    ``sklearn.metrics.precision_recall_curve``; NaN when no unit is true.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(truth, dtype=bool)
    positives = int(y.sum())
    if positives == 0:
        return math.nan
    ranked = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[ranked], y[ranked]
    last_of_value = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    true_pos = np.cumsum(y_sorted)[last_of_value]
    selected = last_of_value + 1
    precision = np.r_[1.0, true_pos / selected]
    recall = np.r_[0.0, true_pos / positives]
    return float(np.sum((recall[1:] - recall[:-1]) * (precision[1:] + precision[:-1]) / 2.0))


# ---------------------------------------------------------------------- internals
def _iou_precision_recall(
    predicted: Sequence[set[int]], truth: Sequence[set[int]], threshold: float
) -> tuple[float, float]:
    matches = 0
    for span in predicted:
        best = max((len(span & t) / len(span | t) for t in truth), default=0.0)
        matches += int(best >= threshold)
    precision = matches / len(predicted) if predicted else 0.0
    recall = matches / len(truth) if truth else 0.0
    return precision, recall


def _f1(p: float, r: float) -> float:
    return 0.0 if p == 0 or r == 0 else 2 * p * r / (p + r)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def _iou_result(
    mean_p: float,
    mean_r: float,
    precisions: list[float],
    recalls: list[float],
    details: dict[str, Any],
) -> MetricResult:
    """IOU F1 is the F1 of mean precision and mean recall; per text, each text's own F1."""
    per_text = [
        _f1(p, r) if math.isfinite(p) else math.nan
        for p, r in zip(precisions, recalls, strict=True)
    ]
    result = metric_result("iou_f1", per_text, {**details, "precision": mean_p, "recall": mean_r})
    value = _f1(mean_p, mean_r) if math.isfinite(mean_p) else math.nan
    return MetricResult(result.metric, value, result.per_text, result.details)
