"""Stability of sampled methods: how much do the scores move when only the seed changes?

A method with a ``seed`` parameter (LIME and SHAP sample coalitions, the information
method samples noise) is run with several seeds on the same texts. Two figures:

- **seed rank correlation**: Spearman's rho between the word scores of every pair of
  seeds, averaged over pairs and texts (1: the ranking never changes);
- **seed spread**: per text, the standard deviation of each word's score over seeds,
  averaged over words and divided by the largest mean ``|score|`` of the text (0: the
  scores never change).

A deterministic method (no ``seed``) has nothing to measure here. Robustness to small
meaning-preserving edits of the text is a different question and is not measured: a
faithful explanation *should* change when an edit changes the model's behaviour, and
telling such edits from meaning-preserving ones needs labelled paraphrases.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidParameterError
from ..explanation import Explanation
from ..model import ModelAdapter, check_model
from ._units import LEVELS, check_option, unit_scores, units
from .agreement import spearman
from .cost import ExplainerSpec, build_explainer, explain_for_targets, explainer_class, method_name
from .metrics import MetricResult, metric_result

__all__ = ["StabilityResult", "has_seed", "seed_stability", "stability"]


def has_seed(method: ExplainerSpec) -> bool:
    """Whether a method takes a ``seed`` parameter (i.e. it samples)."""
    cls = explainer_class(method)
    return cls is not None and "seed" in cls._all_constraints()


@dataclass(frozen=True)
class StabilityResult:
    """Spread of one method's scores over seeds.

    Attributes
    ----------
    method : str
    seeds : tuple of int
    rank_correlation : MetricResult
        ``seed_rank_correlation``.
    spread : MetricResult
        ``seed_spread``.
    """

    method: str
    seeds: tuple[int, ...]
    rank_correlation: MetricResult
    spread: MetricResult

    def metrics(self) -> dict[str, MetricResult]:
        return {r.name: r for r in (self.rank_correlation, self.spread)}

    def to_dict(self, per_text: bool = False) -> dict[str, Any]:
        return {
            "method": self.method,
            "seeds": list(self.seeds),
            "metrics": {k: v.to_dict(per_text) for k, v in self.metrics().items()},
        }


def stability(
    model: ModelAdapter,
    method: ExplainerSpec,
    texts: Sequence[str],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    params: Mapping[str, Any] | None = None,
    runs: Mapping[int, Sequence[Explanation]] | None = None,
    level: str = "word",
) -> StabilityResult:
    """Run ``method`` with each seed on ``texts`` and measure how much its scores move.

    Parameters
    ----------
    model : ModelAdapter
    method : str or Explainer class
        A method with a ``seed`` parameter.
    texts : list of str (or one str)
    seeds : sequence of int
        At least two distinct seeds.
    params : dict, optional
        The method's other parameters (a ``seed`` here is replaced by each seed).
    runs : dict of int to list of Explanation, optional
        Explanations already made with some of the seeds (reused, not recomputed). All
        runs explain the same target per text: that of the first run.
    level : {'word', 'token'}

    Returns
    -------
    StabilityResult
    """
    check_model(model, "stability()")
    check_option("level", level, LEVELS, "stability")
    name = method_name(method)
    if not has_seed(method):
        raise InvalidParameterError(
            f"{name} has no 'seed' parameter: it is deterministic, so there is no spread over "
            "seeds to measure. Stability applies to sampled methods (e.g. lime, shap)."
        )
    seeds = tuple(dict.fromkeys(int(s) for s in seeds))
    if len(seeds) < 2:
        raise InvalidParameterError(
            f"The 'seeds' parameter of stability needs at least two distinct seeds. Got {seeds!r}."
        )
    texts = [texts] if isinstance(texts, str) else list(texts)  # one text: a list of one
    done = {int(k): list(v)[: len(texts)] for k, v in (runs or {}).items()}
    targets = None
    for seed in seeds:
        if seed in done:
            targets = targets or [e.target for e in done[seed]]
    results: dict[int, list[Explanation]] = {}
    for seed in seeds:
        if seed in done:
            results[seed] = done[seed]
            continue
        explainer = build_explainer(method, model, {**dict(params or {}), "seed": seed})
        if targets is None:
            results[seed] = explainer.explain(texts)
            targets = [e.target for e in results[seed]]
        else:
            results[seed] = explain_for_targets(explainer, texts, targets)
    return seed_stability({seed: results[seed] for seed in seeds}, level=level, method=name)


def seed_stability(
    runs: Mapping[int, Sequence[Explanation]], *, level: str = "word", method: str | None = None
) -> StabilityResult:
    """The stability figures of explanations already made with different seeds."""
    seeds = tuple(runs)
    groups = [list(runs[s]) for s in seeds]
    n_texts = min(len(g) for g in groups) if groups else 0
    correlations, spreads = [], []
    for t in range(n_texts):
        spans = units(groups[0][t], level)
        matrix = np.stack([unit_scores(g[t], spans) for g in groups])  # [seeds, units]
        pairs = [
            spearman(matrix[a], matrix[b]) for a, b in itertools.combinations(range(len(seeds)), 2)
        ]
        finite = [p for p in pairs if math.isfinite(p)]
        correlations.append(math.fsum(finite) / len(finite) if finite else math.nan)
        scale = float(np.abs(matrix.mean(axis=0)).max()) if matrix.size else 0.0
        spread = float(matrix.std(axis=0).mean()) if matrix.size else math.nan
        spreads.append(spread / scale if scale > 0 else (0.0 if spread == 0 else math.nan))
    name = method or (groups[0][0].method if groups and groups[0] else "")
    details = {"seeds": list(seeds)}
    return StabilityResult(
        method=name,
        seeds=seeds,
        rank_correlation=metric_result("seed_rank_correlation", correlations, details),
        spread=metric_result("seed_spread", spreads, details),
    )
