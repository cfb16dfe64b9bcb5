"""Agreement: how similarly two methods rank the words of the same texts.

For every pair of methods and every text, the word scores of the two explanations are
compared with Spearman's rank correlation, Kendall's tau-b and the top-k overlap (the
share of the ``k`` highest-ranked words the two have in common, the *feature agreement*
of Krishna et al. 2022, https://arxiv.org/abs/2202.01602); the data-set figure is the
mean over texts. Agreement says nothing about which method is right (two methods can
agree on the wrong words): read it next to the faithfulness figures.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..explanation import Explanation
from ._units import LEVELS, RANKINGS, check_aligned, check_option, top_set, unit_scores, units
from .metrics import MetricResult, get_metric, metric_result

__all__ = [
    "AGREEMENT_METRICS",
    "AgreementResult",
    "agreement",
    "kendall_tau",
    "rankdata",
    "spearman",
    "top_k_overlap",
]

AGREEMENT_METRICS: tuple[str, ...] = ("spearman", "kendall", "top_k_overlap")


def rankdata(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks from 1, ties get the mean of the ranks they span (like ``scipy.stats.rankdata``)."""
    x = np.asarray(values, dtype=np.float64)
    sorter = np.argsort(x, kind="stable")
    sorted_x = x[sorter]
    ranks = np.empty(len(x))
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[sorter[start:end]] = (start + end + 1) / 2.0
            start = end
    return ranks


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho (Pearson correlation of the tie-averaged ranks); NaN if either is constant."""
    ra, rb = rankdata(a), rankdata(b)
    if len(ra) != len(rb):
        raise ValueError(f"spearman needs equal lengths, got {len(ra)} and {len(rb)}")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denominator if denominator > 0 else math.nan


def kendall_tau(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b (ties in either ranking accounted for); NaN if either is constant."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"kendall_tau needs equal lengths, got {len(x)} and {len(y)}")
    i, j = np.triu_indices(len(x), k=1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    pairs = len(i)
    denominator = math.sqrt(float(pairs - np.sum(sx == 0)) * float(pairs - np.sum(sy == 0)))
    return float(np.sum(sx * sy)) / denominator if denominator > 0 else math.nan


def top_k_overlap(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, k: int
) -> float:
    """Share of the top ``min(k, n)`` units (highest scores, ties in text order) both rank there."""
    n = len(a)
    k = min(k, n)
    if k == 0:
        return math.nan
    return len(top_set(np.asarray(a), k) & top_set(np.asarray(b), k)) / k


@dataclass(frozen=True)
class AgreementResult:
    """Pairwise agreement between methods, per text and over the data set.

    Attributes
    ----------
    methods : tuple of str
    matrices : dict of str to np.ndarray
        For each of 'spearman', 'kendall', 'top_k_overlap', the ``[m, m]`` means over
        texts (the diagonal is 1).
    per_text : dict of str to np.ndarray
        ``[m, m, n_texts]`` values (NaN where undefined, e.g. constant scores).
    k : int
        The top-k of the overlap.
    settings : dict
    """

    methods: tuple[str, ...]
    matrices: dict[str, np.ndarray]
    per_text: dict[str, np.ndarray]
    k: int
    settings: dict[str, Any]

    def pair(self, a: str, b: str) -> dict[str, MetricResult]:
        """Every agreement metric between methods ``a`` and ``b``, with per-text values."""
        i, j = self.methods.index(a), self.methods.index(b)
        return {
            name: metric_result(get_metric(name), values[i, j], {"methods": [a, b], "k": self.k})
            for name, values in self.per_text.items()
        }

    def to_dict(self, per_text: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "methods": list(self.methods),
            "k": self.k,
            "settings": dict(self.settings),
            "metrics": {name: get_metric(name).to_dict() for name in self.matrices},
            "matrices": {
                name: [[_finite(v) for v in row] for row in matrix.tolist()]
                for name, matrix in self.matrices.items()
            },
        }
        if per_text:
            out["per_text"] = {
                name: [[[_finite(v) for v in cell] for cell in row] for row in values.tolist()]
                for name, values in self.per_text.items()
            }
        return out


def agreement(
    explanations: Mapping[str, Sequence[Explanation]],
    *,
    level: str = "word",
    k: int = 5,
    ranking: str = "signed",
) -> AgreementResult:
    """Spearman, Kendall and top-k overlap between every pair of methods.

    Parameters
    ----------
    explanations : dict of str to list of Explanation
        Each method's explanations of the same texts, in the same order.
    level : {'word', 'token'}
        Compare word scores (default) or token scores.
    k : int
        Size of the top set of the overlap (``min(k, n_units)`` per text).
    ranking : {'signed', 'absolute'}
        Compare scores as they are (default) or their absolute values.

    Returns
    -------
    AgreementResult
    """
    owner = "agreement"
    check_option("level", level, LEVELS, owner)
    check_option("ranking", ranking, RANKINGS, owner)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        from ..errors import InvalidParameterError

        raise InvalidParameterError(
            f"The 'k' parameter of agreement must be an int >= 1. Got {k!r}."
        )
    groups = {name: list(items) for name, items in explanations.items()}
    n_texts = check_aligned(groups) if groups else 0
    methods = tuple(groups)
    m = len(methods)
    per_text = {name: np.full((m, m, n_texts), math.nan) for name in AGREEMENT_METRICS}
    for t in range(n_texts):
        spans = units(groups[methods[0]][t], level)
        scores = [unit_scores(groups[name][t], spans, ranking) for name in methods]
        for i in range(m):
            for j in range(i, m):
                values = _pair(scores[i], scores[j], k) if i != j else _self(scores[i])
                for name, value in values.items():
                    per_text[name][i, j, t] = per_text[name][j, i, t] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pairs undefined on every text
        matrices = {
            name: np.nanmean(values, axis=2) if n_texts else np.full((m, m), math.nan)
            for name, values in per_text.items()
        }
    return AgreementResult(
        methods, matrices, per_text, k, {"level": level, "ranking": ranking, "n_texts": n_texts}
    )


def _pair(a: np.ndarray, b: np.ndarray, k: int) -> dict[str, float]:
    return {
        "spearman": spearman(a, b),
        "kendall": kendall_tau(a, b),
        "top_k_overlap": top_k_overlap(a, b, k),
    }


def _self(a: np.ndarray) -> dict[str, float]:
    defined = 1.0 if len(a) else math.nan
    return {"spearman": defined, "kendall": defined, "top_k_overlap": defined}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
