"""Metric metadata as data, and the result object every evaluation function returns.

A :class:`Metric` says what a number means: its name, a short name for table headers,
whether higher is better, its range and the paper that defines it. A
:class:`MetricResult` is one metric's value over a data set (mean over texts) with
the per-text values it came from, so tables, leaderboards and reports render
themselves without knowing any metric (the idea comes from ferret).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = ["METRICS", "Metric", "MetricResult", "get_metric", "metric_result"]

INF = math.inf


@dataclass(frozen=True)
class Metric:
    """What a metric measures and how to read it.

    Attributes
    ----------
    name : str
        Identifier (a key of :data:`METRICS`), e.g. ``"comprehensiveness_aopc"``.
    short_name : str
        Column header, e.g. ``"comp AOPC"``.
    higher_is_better : bool or None
        The direction; None for a figure with no better side.
    range : (float, float)
        Smallest and largest possible values (``-inf``/``inf`` when unbounded).
    family : str
        ``faithfulness``, ``plausibility``, ``ground_truth``, ``stability``, ``sanity``,
        ``agreement`` or ``cost``.
    description : str
        One line: what is measured.
    reference : str
        URL of the paper that defines it ('' for plain bookkeeping such as cost).
    """

    name: str
    short_name: str
    higher_is_better: bool | None
    range: tuple[float, float]
    family: str
    description: str
    reference: str = ""

    @property
    def arrow(self) -> str:
        """``↑`` when higher is better, ``↓`` when lower is, else ''."""
        if self.higher_is_better is None:
            return ""
        return "↑" if self.higher_is_better else "↓"

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is strictly better than ``b`` (NaN is never better)."""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        if self.higher_is_better is None:
            return False
        return a > b if self.higher_is_better else a < b

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; an unbounded end of the range is None."""
        low, high = self.range
        return {
            "name": self.name,
            "short_name": self.short_name,
            "higher_is_better": self.higher_is_better,
            "range": [None if math.isinf(low) else low, None if math.isinf(high) else high],
            "family": self.family,
            "description": self.description,
            "reference": self.reference,
        }


@dataclass(frozen=True)
class MetricResult:
    """One metric over a data set: the mean over texts, with the per-text values.

    Attributes
    ----------
    metric : Metric
        What the number means (name, direction, range).
    value : float
        Mean of the finite per-text values (NaN when there are none).
    per_text : tuple of float
        One value per text, NaN where the metric does not apply (e.g. a text without a
        human rationale, or whose scores are constant so no rank correlation exists).
    details : dict
        Metric-specific extras (e.g. the value at each removal fraction).
    """

    metric: Metric
    value: float
    per_text: tuple[float, ...] = ()
    details: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.metric.name

    @property
    def higher_is_better(self) -> bool | None:
        return self.metric.higher_is_better

    @property
    def range(self) -> tuple[float, float]:
        return self.metric.range

    @property
    def n(self) -> int:
        """Number of texts with a finite value."""
        return int(sum(1 for v in self.per_text if math.isfinite(v)))

    @property
    def stderr(self) -> float:
        """Standard error of the mean over texts (NaN with fewer than two values)."""
        values = np.array([v for v in self.per_text if math.isfinite(v)])
        if len(values) < 2:
            return math.nan
        return float(values.std(ddof=1) / math.sqrt(len(values)))

    def to_dict(self, per_text: bool = True) -> dict[str, Any]:
        """JSON-ready (NaN becomes None)."""
        out: dict[str, Any] = {
            "metric": self.metric.name,
            "value": _json_float(self.value),
            "stderr": _json_float(self.stderr),
            "n": self.n,
            "higher_is_better": self.metric.higher_is_better,
        }
        if per_text:
            out["per_text"] = [_json_float(v) for v in self.per_text]
        if self.details:
            out["details"] = _jsonable(dict(self.details))
        return out


def metric_result(
    metric: Metric | str, per_text: Iterable[float], details: Mapping[str, Any] | None = None
) -> MetricResult:
    """A :class:`MetricResult` whose value is the mean of the finite ``per_text`` values."""
    if isinstance(metric, str):
        metric = get_metric(metric)
    values = tuple(float(v) for v in per_text)
    finite = [v for v in values if math.isfinite(v)]
    value = math.fsum(finite) / len(finite) if finite else math.nan
    return MetricResult(metric, value, values, details)


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (float, np.floating)):
        return _json_float(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


_ERASER = "https://arxiv.org/abs/1911.03429"
_RISE = "https://arxiv.org/abs/1806.07421"
_ADEBAYO = "https://arxiv.org/abs/1810.03292"

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "comprehensiveness_aopc",
            "comp AOPC",
            True,
            (-1.0, 1.0),
            "faithfulness",
            "Drop of the target probability when the top k% words are removed, averaged over "
            "k in {1,5,10,20,50}% (ERASER comprehensiveness, AOPC).",
            _ERASER,
        ),
        Metric(
            "sufficiency_aopc",
            "suff AOPC",
            False,
            (-1.0, 1.0),
            "faithfulness",
            "Drop of the target probability when only the top k% words are kept, averaged over "
            "k in {1,5,10,20,50}% (ERASER sufficiency, AOPC).",
            _ERASER,
        ),
        Metric(
            "deletion_area",
            "deletion AUC",
            False,
            (0.0, 1.0),
            "faithfulness",
            "Area under the target probability as words are removed, most important first "
            "(x = fraction removed).",
            _RISE,
        ),
        Metric(
            "insertion_area",
            "insertion AUC",
            True,
            (0.0, 1.0),
            "faithfulness",
            "Area under the target probability as words are inserted into the fully masked "
            "text, most important first.",
            _RISE,
        ),
        Metric(
            "log_odds_drop",
            "log-odds drop",
            True,
            (-INF, INF),
            "faithfulness",
            "log p(target | text) - log p(target | text without its top 20% words).",
            "https://arxiv.org/abs/1704.02685",
        ),
        Metric(
            "hit_at_1",
            "hit@1",
            True,
            (0.0, 1.0),
            "ground_truth",
            "Share of texts whose top word is a planted decisive word.",
        ),
        Metric(
            "hit_at_k",
            "hit@k",
            True,
            (0.0, 1.0),
            "ground_truth",
            "Share of the planted words found among the top k words (per text, out of "
            "min(k, number planted)), averaged over texts.",
        ),
        Metric(
            "token_f1",
            "token F1",
            True,
            (0.0, 1.0),
            "plausibility",
            "Word-level F1 of the top-k words against the human rationale (ERASER, "
            "per-text F1 averaged).",
            _ERASER,
        ),
        Metric(
            "iou_f1",
            "IOU F1",
            True,
            (0.0, 1.0),
            "plausibility",
            "F1 of predicted spans matching a human rationale span with IOU >= 0.5 (ERASER, "
            "macro-averaged precision and recall).",
            _ERASER,
        ),
        Metric(
            "auprc",
            "AUPRC",
            True,
            (0.0, 1.0),
            "plausibility",
            "Area under the precision-recall curve of the word scores against the human "
            "rationale (ERASER, per text, averaged).",
            _ERASER,
        ),
        Metric(
            "seed_rank_correlation",
            "seed ρ",
            True,
            (-1.0, 1.0),
            "stability",
            "Spearman correlation between the word scores of runs with different seeds "
            "(mean over pairs of seeds and texts).",
        ),
        Metric(
            "seed_spread",
            "seed spread",
            False,
            (0.0, INF),
            "stability",
            "Standard deviation of word scores over seeds, relative to the text's largest "
            "mean |score|.",
        ),
        Metric(
            "randomization_similarity",
            "random-model ρ",
            False,
            (-1.0, 1.0),
            "sanity",
            "Spearman correlation of |word scores| with those on a model whose layers are all "
            "re-initialised (cascading randomisation); high means the method ignores the model.",
            _ADEBAYO,
        ),
        Metric(
            "seconds_per_text",
            "s/text",
            False,
            (0.0, INF),
            "cost",
            "Wall-clock seconds per text to explain (batched, after a warm-up call).",
        ),
        Metric(
            "evaluations_per_text",
            "evals/text",
            False,
            (0.0, INF),
            "cost",
            "Inputs sent through the model per text while explaining (a forward+backward "
            "pass counts once).",
        ),
        Metric(
            "spearman",
            "Spearman ρ",
            None,
            (-1.0, 1.0),
            "agreement",
            "Spearman rank correlation between two methods' word scores.",
        ),
        Metric(
            "kendall",
            "Kendall τ",
            None,
            (-1.0, 1.0),
            "agreement",
            "Kendall tau-b rank correlation between two methods' word scores.",
        ),
        Metric(
            "top_k_overlap",
            "top-k overlap",
            None,
            (0.0, 1.0),
            "agreement",
            "Share of the top k words two methods have in common.",
            "https://arxiv.org/abs/2202.01602",
        ),
    )
}


def get_metric(name: str, *, output: str = "probability") -> Metric:
    """The metric ``name``; with ``output='logit'`` the probability ranges become unbounded."""
    try:
        metric = METRICS[name]
    except KeyError:
        from ..errors import InvalidParameterError

        raise InvalidParameterError(
            f"Unknown metric {name!r}. Known metrics: {', '.join(sorted(METRICS))}."
        ) from None
    if output == "logit" and metric.family == "faithfulness":
        metric = replace(
            metric,
            range=(-INF, INF),
            description=metric.description.replace("probability", "logit"),
        )
    return metric
