"""Faithfulness: does removing what an explanation calls important change the prediction?

All metrics here remove (or keep) the units an explanation ranks highest -- words by
default, sub-word tokens with ``level='token'`` -- and re-run the model. Removal goes
through the perturbation methods' :class:`~textlens.explainers.perturbation.Engine`
(masking ``'mask'``: every sub-token replaced by the mask token; ``'delete'``: the
tokens removed; ``'pad'``), so the inputs of all texts are deduplicated, cached,
length-sorted and packed into batches under a token budget. One call evaluates every
metric from the same model outputs, and an engine shared between calls (as the
leaderboard does) also shares outputs between methods: the full and the empty text, and
every removal on which two methods agree.

With ``p(x)`` the explained output (the target class's probability by default) and
the units ranked by score, highest first (ties in text order):

- **comprehensiveness** at fraction ``f``: ``p(x) - p(x without its top k units)``,
  ``k = ceil(f * n)`` (at least 1); its **AOPC** is the mean over the fractions
  {1, 5, 10, 20, 50}% (DeYoung et al. 2020, ERASER, https://arxiv.org/abs/1911.03429).
  Higher is better.
- **sufficiency**: ``p(x) - p(only the top k units of x)``, AOPC alike. Lower is better.
- **deletion curve**: ``p`` as the top ``k = 0..n`` units are removed; its **area**
  over the removed fraction ``k / n`` in [0, 1] (trapezoid rule). Lower is better.
- **insertion curve**: ``p`` as the top ``k`` units are put back into the fully masked
  text; area alike. Higher is better (Petsiuk et al. 2018, https://arxiv.org/abs/1806.07421).
- **log-odds drop**: ``log p(x) - log p(x without its top 20% units)``
  (Shrikumar et al. 2017, https://arxiv.org/abs/1704.02685). Higher is better.

A text of more than ``curve_steps`` units gets its curves at ``curve_steps + 1`` evenly
spaced ``k`` (plus the fractions above), which bounds the cost of long texts; shorter
texts get every step, so their areas are exact.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInputError, InvalidParameterError, TruncationWarning
from ..explainers.perturbation.engine import MASKINGS, OUTPUTS, Engine, TextGame, make_game
from ..explanation import Explanation
from ..model import DEFAULT_MAX_BATCH_TOKENS, ModelAdapter, check_model
from ._units import LEVELS, RANKINGS, check_option, order, unit_scores, units
from .metrics import MetricResult, get_metric, metric_result

__all__ = [
    "FRACTIONS",
    "FaithfulnessResult",
    "TextCurves",
    "comprehensiveness",
    "deletion_area",
    "faithfulness",
    "insertion_area",
    "log_odds_drop",
    "sufficiency",
]

#: ERASER's removal fractions for comprehensiveness / sufficiency AOPC.
FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20, 0.50)
#: Points of the averaged curves kept for plots (fraction of units removed/inserted).
CURVE_GRID: tuple[float, ...] = tuple(float(x) for x in np.linspace(0.0, 1.0, 21))
_TINY = 1e-300


@dataclass(frozen=True)
class TextCurves:
    """The deletion and insertion curves of one text.

    Attributes
    ----------
    n_units : int
    deletion_k, deletion : tuple
        Units removed and the output after removing them (``k = 0`` is the full text).
    insertion_k, insertion : tuple
        Units kept and the output with only those (``k = 0`` is the fully masked text).
    """

    n_units: int
    deletion_k: tuple[int, ...]
    deletion: tuple[float, ...]
    insertion_k: tuple[int, ...]
    insertion: tuple[float, ...]


@dataclass(frozen=True)
class FaithfulnessResult:
    """Every faithfulness metric of one method's explanations on a data set.

    Attributes
    ----------
    method : str
    comprehensiveness, sufficiency : MetricResult
        AOPC over ``fractions``; ``details['at']`` holds the mean at each fraction.
    deletion, insertion : MetricResult
        Areas under the curves.
    log_odds : MetricResult or None
        None when the explained output is the logit (log-odds need probabilities).
    fractions : tuple of float
    curve_grid, deletion_curve, insertion_curve : tuple of float
        Curves averaged over texts (each interpolated onto ``curve_grid``), for plots.
    curves : tuple of TextCurves
        Per text.
    settings : dict
        level, masking, output, ranking, curve_steps.
    evaluations : int
        Inputs this call sent through the model (cached ones are free).
    """

    method: str
    comprehensiveness: MetricResult
    sufficiency: MetricResult
    deletion: MetricResult
    insertion: MetricResult
    log_odds: MetricResult | None
    fractions: tuple[float, ...]
    curve_grid: tuple[float, ...]
    deletion_curve: tuple[float, ...]
    insertion_curve: tuple[float, ...]
    curves: tuple[TextCurves, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    evaluations: int = 0

    def metrics(self) -> dict[str, MetricResult]:
        """The metric results by metric name."""
        out = {
            r.name: r
            for r in (self.comprehensiveness, self.sufficiency, self.deletion, self.insertion)
        }
        if self.log_odds is not None:
            out[self.log_odds.name] = self.log_odds
        return out

    def to_dict(self, per_text: bool = False) -> dict[str, Any]:
        """JSON-ready summary (per-text values only when asked)."""
        return {
            "method": self.method,
            "metrics": {k: v.to_dict(per_text) for k, v in self.metrics().items()},
            "fractions": list(self.fractions),
            "curve_grid": list(self.curve_grid),
            "deletion_curve": [_none_if_nan(v) for v in self.deletion_curve],
            "insertion_curve": [_none_if_nan(v) for v in self.insertion_curve],
            "settings": dict(self.settings),
            "evaluations": self.evaluations,
        }


def faithfulness(
    model: ModelAdapter,
    explanations: Sequence[Explanation] | Explanation,
    *,
    level: str = "word",
    masking: str = "mask",
    output: str = "probability",
    fractions: Sequence[float] = FRACTIONS,
    ranking: str = "signed",
    curve_steps: int | None = 20,
    log_odds_fraction: float = 0.2,
    engine: Engine | None = None,
    batch_texts: int = 64,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
) -> FaithfulnessResult:
    """Comprehensiveness, sufficiency (and AOPC), deletion/insertion areas and log-odds drop.

    Parameters
    ----------
    model : ModelAdapter
        The model the explanations are of.
    explanations : list of Explanation
        One method's explanations (any method, or precomputed scores); each is evaluated
        for its own ``target``. A single explanation is a list of one.
    level : {'word', 'token'}
        Units that are ranked and removed: words (scores summed over sub-words) or tokens.
    masking : {'mask', 'delete', 'pad'}
        How a unit is removed (see :mod:`textlens.explainers.perturbation.engine`).
    output : {'probability', 'logit'}
        The explained output ``p``; ERASER and the areas use the probability.
    fractions : sequence of float
        Removal fractions of comprehensiveness/sufficiency (ERASER's by default).
    ranking : {'signed', 'absolute'}
        Rank units by score (positive supports the target; default) or by ``|score|``.
    curve_steps : int or None
        Most curve steps per text (see the module docstring); None evaluates every step.
    log_odds_fraction : float
        Fraction removed for the log-odds drop.
    engine : Engine, optional
        An engine to share between calls (and methods): its cache makes repeated inputs
        free. Its masking and output must equal ``masking`` and ``output``.
    batch_texts : int
        Texts whose inputs are sent to the engine together.
    max_batch_tokens : int
        Token budget of a model batch when no engine is given.

    Returns
    -------
    FaithfulnessResult
    """
    check_model(model, "faithfulness()")
    owner = "faithfulness"
    check_option("level", level, LEVELS, owner)
    check_option("masking", masking, MASKINGS, owner)
    check_option("output", output, OUTPUTS, owner)
    check_option("ranking", ranking, RANKINGS, owner)
    fractions = _check_fractions(fractions)
    _check_fraction("log_odds_fraction", log_odds_fraction)
    if curve_steps is not None and (
        not isinstance(curve_steps, int) or isinstance(curve_steps, bool) or curve_steps < 1
    ):
        raise InvalidParameterError(
            f"The 'curve_steps' parameter of faithfulness must be None or an int >= 1. "
            f"Got {curve_steps!r}."
        )
    if engine is None:
        engine = Engine(model, masking=masking, output=output, max_batch_tokens=max_batch_tokens)
    elif engine.masking != masking or engine.output != output:
        raise InvalidParameterError(
            f"The engine given to faithfulness uses masking={engine.masking!r}, output="
            f"{engine.output!r}, but masking={masking!r}, output={output!r} were asked for; "
            "pass matching values or no engine."
        )
    explanations = [explanations] if isinstance(explanations, Explanation) else list(explanations)
    if not explanations:
        raise InvalidInputError("No explanations were given to evaluate.")
    if not model.has_probabilities:  # a regression: its "probability" is its raw value
        output = "logit"
    before = engine.model_evaluations
    plans: list[_Plan | None] = []
    for start in range(0, len(explanations), max(1, batch_texts)):
        chunk = explanations[start : start + max(1, batch_texts)]
        plans.extend(
            _evaluate_chunk(
                model, engine, chunk, level, ranking, fractions, curve_steps, log_odds_fraction
            )
        )
    return _result(
        explanations,
        plans,
        fractions,
        output,
        {
            "level": level,
            "masking": masking,
            "output": output,
            "ranking": ranking,
            "curve_steps": curve_steps,
            "log_odds_fraction": log_odds_fraction,
        },
        engine.model_evaluations - before,
    )


def comprehensiveness(
    model: ModelAdapter, explanations: Sequence[Explanation], **kwargs: Any
) -> MetricResult:
    """Comprehensiveness AOPC (ERASER); keyword arguments as for :func:`faithfulness`."""
    return faithfulness(model, explanations, **kwargs).comprehensiveness


def sufficiency(
    model: ModelAdapter, explanations: Sequence[Explanation], **kwargs: Any
) -> MetricResult:
    """Sufficiency AOPC (ERASER); keyword arguments as for :func:`faithfulness`."""
    return faithfulness(model, explanations, **kwargs).sufficiency


def deletion_area(
    model: ModelAdapter, explanations: Sequence[Explanation], **kwargs: Any
) -> MetricResult:
    """Area under the deletion curve; keyword arguments as for :func:`faithfulness`."""
    return faithfulness(model, explanations, **kwargs).deletion


def insertion_area(
    model: ModelAdapter, explanations: Sequence[Explanation], **kwargs: Any
) -> MetricResult:
    """Area under the insertion curve; keyword arguments as for :func:`faithfulness`."""
    return faithfulness(model, explanations, **kwargs).insertion


def log_odds_drop(
    model: ModelAdapter, explanations: Sequence[Explanation], **kwargs: Any
) -> MetricResult:
    """Log-odds drop at ``log_odds_fraction``; keyword arguments as for :func:`faithfulness`."""
    result = faithfulness(model, explanations, **kwargs).log_odds
    if result is None:
        raise InvalidParameterError(
            "The log-odds drop needs probabilities: use output='probability' with a "
            "classifier (a regression model's outputs are not probabilities)."
        )
    return result


# ---------------------------------------------------------------------- internals
@dataclass
class _Plan:
    n: int
    fraction_k: list[int]
    log_odds_k: int
    deletion_k: list[int]
    insertion_k: list[int]
    deletion: np.ndarray | None = None
    insertion: np.ndarray | None = None


def _check_fraction(name: str, value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1
    if not ok:
        raise InvalidParameterError(
            f"The {name!r} parameter of faithfulness must be a number in (0, 1]. Got {value!r}."
        )
    return float(value)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence) or not fractions:
        raise InvalidParameterError(
            f"The 'fractions' parameter of faithfulness must be a non-empty list of numbers in "
            f"(0, 1]. Got {fractions!r}."
        )
    return tuple(_check_fraction("fractions", f) for f in fractions)


def units_for_fraction(fraction: float, n: int) -> int:
    """Units removed at ``fraction`` of ``n``: ``ceil(fraction * n)``, at least 1, at most n."""
    return min(n, max(1, math.ceil(fraction * n - 1e-9)))


def _curve_ks(n: int, curve_steps: int | None) -> list[int]:
    if curve_steps is None or n <= curve_steps:
        return list(range(n + 1))
    return sorted({round(x) for x in np.linspace(0, n, curve_steps + 1)})


def _evaluate_chunk(
    model: ModelAdapter,
    engine: Engine,
    chunk: list[Explanation],
    level: str,
    ranking: str,
    fractions: tuple[float, ...],
    curve_steps: int | None,
    log_odds_fraction: float,
) -> list[_Plan | None]:
    texts = list(dict.fromkeys(e.text for e in chunk))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)  # the explanation already says so
        encoding = model.encode(texts)
    row_of = {text: i for i, text in enumerate(texts)}
    plans: list[_Plan | None] = []
    requests: list[tuple[TextGame, np.ndarray]] = []
    for e in chunk:
        row = row_of[e.text]
        if tuple(encoding.tokens[row]) != tuple(e.tokens):
            raise InvalidInputError(
                f"The explanation of {e.text[:60]!r} ({e.method}, model {e.model_id}) has other "
                f"tokens than {model.model_id} gives this text: evaluate explanations with the "
                "model they were made with."
            )
        spans = units(e, level)
        n = len(spans)
        if n == 0:
            plans.append(None)
            continue
        ranked = order(unit_scores(e, spans, ranking))
        fraction_k = [units_for_fraction(f, n) for f in fractions]
        log_odds_k = units_for_fraction(log_odds_fraction, n)
        curve = _curve_ks(n, curve_steps)
        plan = _Plan(
            n=n,
            fraction_k=fraction_k,
            log_odds_k=log_odds_k,
            deletion_k=sorted(set(curve) | set(fraction_k) | {log_odds_k}),
            insertion_k=sorted(set(curve) | set(fraction_k)),
        )
        coalitions = np.concatenate(
            [
                _prefix_rows(ranked, plan.deletion_k, n, keep_prefix=False),
                _prefix_rows(ranked, plan.insertion_k, n, keep_prefix=True),
            ]
        )
        game = make_game(encoding, row, [s.tokens for s in spans], e.target, f"evaluation|{level}")
        requests.append((game, coalitions))
        plans.append(plan)
    values = iter(engine.evaluate(requests))
    for item in plans:
        if item is not None:
            v = next(values)
            item.deletion = v[: len(item.deletion_k)]
            item.insertion = v[len(item.deletion_k) :]
    return plans


def _prefix_rows(ranked: np.ndarray, ks: Sequence[int], n: int, *, keep_prefix: bool) -> np.ndarray:
    """One coalition per ``k``: only the top ``k`` units kept, or all but them."""
    rows = np.full((len(ks), n), not keep_prefix, dtype=bool)
    for r, k in enumerate(ks):
        rows[r, ranked[:k]] = keep_prefix
    return rows


def _area(ks: Sequence[int], values: np.ndarray, n: int) -> float:
    x = np.asarray(ks, dtype=np.float64) / n
    y = np.asarray(values, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _result(
    explanations: list[Explanation],
    plans: list[_Plan | None],
    fractions: tuple[float, ...],
    output: str,
    settings: dict[str, Any],
    evaluations: int,
) -> FaithfulnessResult:
    nan = math.nan
    comp_at = np.full((len(plans), len(fractions)), nan)
    suff_at = np.full((len(plans), len(fractions)), nan)
    deletion, insertion, log_odds = [], [], []
    grid = np.asarray(CURVE_GRID)
    del_curves, ins_curves, curves = [], [], []
    for t, plan in enumerate(plans):
        if plan is None or plan.deletion is None or plan.insertion is None:
            deletion.append(nan)
            insertion.append(nan)
            log_odds.append(nan)
            curves.append(TextCurves(0, (), (), (), ()))
            continue
        d_of = dict(zip(plan.deletion_k, plan.deletion.tolist(), strict=True))
        i_of = dict(zip(plan.insertion_k, plan.insertion.tolist(), strict=True))
        full = d_of[0]
        for j, k in enumerate(plan.fraction_k):
            comp_at[t, j] = full - d_of[k]
            suff_at[t, j] = full - i_of[k]
        deletion.append(_area(plan.deletion_k, plan.deletion, plan.n))
        insertion.append(_area(plan.insertion_k, plan.insertion, plan.n))
        removed = d_of[plan.log_odds_k]
        log_odds.append(math.log(max(full, _TINY)) - math.log(max(removed, _TINY)))
        del_curves.append(np.interp(grid, np.asarray(plan.deletion_k) / plan.n, plan.deletion))
        ins_curves.append(np.interp(grid, np.asarray(plan.insertion_k) / plan.n, plan.insertion))
        curves.append(
            TextCurves(
                plan.n,
                tuple(plan.deletion_k),
                tuple(plan.deletion.tolist()),
                tuple(plan.insertion_k),
                tuple(plan.insertion.tolist()),
            )
        )
    method = _method_name(explanations)
    at = {"fractions": list(fractions)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> NaN
        comp_means = np.nanmean(comp_at, axis=0) if len(plans) else np.full(len(fractions), nan)
        suff_means = np.nanmean(suff_at, axis=0) if len(plans) else np.full(len(fractions), nan)
        mean_del = np.mean(del_curves, axis=0) if del_curves else np.full(len(grid), nan)
        mean_ins = np.mean(ins_curves, axis=0) if ins_curves else np.full(len(grid), nan)
        comp_per_text = np.nanmean(comp_at, axis=1) if len(fractions) else []
        suff_per_text = np.nanmean(suff_at, axis=1) if len(fractions) else []
    return FaithfulnessResult(
        method=method,
        comprehensiveness=metric_result(
            get_metric("comprehensiveness_aopc", output=output),
            comp_per_text,
            {**at, "at": comp_means.tolist()},
        ),
        sufficiency=metric_result(
            get_metric("sufficiency_aopc", output=output),
            suff_per_text,
            {**at, "at": suff_means.tolist()},
        ),
        deletion=metric_result(get_metric("deletion_area", output=output), deletion),
        insertion=metric_result(get_metric("insertion_area", output=output), insertion),
        log_odds=metric_result("log_odds_drop", log_odds) if output == "probability" else None,
        fractions=fractions,
        curve_grid=CURVE_GRID,
        deletion_curve=tuple(float(v) for v in mean_del),
        insertion_curve=tuple(float(v) for v in mean_ins),
        curves=tuple(curves),
        settings=settings,
        evaluations=evaluations,
    )


def _method_name(explanations: Sequence[Explanation]) -> str:
    names = list(dict.fromkeys(e.method for e in explanations))
    return names[0] if len(names) == 1 else "+".join(names)


def _none_if_nan(value: float) -> float | None:
    return value if math.isfinite(value) else None
