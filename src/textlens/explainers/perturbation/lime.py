r"""LIME: a kernel-weighted linear surrogate of the model around the text.

LIME (Ribeiro et al. 2016, https://arxiv.org/abs/1602.04938) samples texts with some
features removed, weighs each by its closeness to the original, and fits a weighted
ridge regression of the model's output on the presence of each feature; the
coefficients are the explanation. This class estimates the same surrogate as the
``lime`` library's ``LimeTextExplainer`` at its defaults:

- samples: remove ``k`` features, ``k`` uniform in ``1..n-1``, which ones uniform;
- weight: ``sqrt(exp(-d**2 / width**2))`` with ``d`` the cosine distance between the
  sample's presence vector and all-ones, times 100 (``kernel_width=25``);
- ridge ``alpha=1`` with the original text as one extra sample, the rest of the
  weight scaled as for lime's default 5,000 samples.

Because the weight depends only on how many features are kept, the surrogate is a
weighted sum over coalition sizes, and it is estimated with a size-stratified design
without repeated coalitions (:mod:`.sampling`) instead of lime's i.i.d. draws (which
spend many model calls on duplicates: lime evaluates its 5,000 samples even when a
short text has only a few hundred distinct ones). Each size is a stratum, sampled in
proportion to its weight; the strata near the original text, which carry most of the
weight, are enumerated exactly; when ``2**n`` fits the budget the whole surrogate is
exact. The sampled part is fitted by :func:`.sampling.crossfit_fit` (exact Gram
matrix, cross-fitted linear control variate): the in-sample weighted regression is
unstable when the random draws are about as many as the features (its error at 2n
evaluations used to exceed that at 1n) and its standard errors then far too small.
Complementary pairs are not used here: the complement of a near-full sample is
a near-empty one, whose weight is almost nil. The result reports the surrogate's
weighted R² (how well a linear model fits locally), its intercept and its prediction at
the original text, and a standard error per feature.

One difference in what a feature is: lime (``bow=True``) removes every occurrence of a
word type at once and ignores punctuation; here a feature is one occurrence, grouped
by ``features`` (words from the tokenizer by default, punctuation included). For lime's
units, pass ``features=CharSpans(lambda t: [m.span() for m in re.finditer(r"\w+", t)])``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..._validation import Constraint, Interval
from ...features import Grouping
from ...model import ModelAdapter
from .base import FeatureScores, SampledExplainer
from .engine import DEFAULT_BATCH_TOKENS, TextGame
from .sampling import Design, crossfit_fit, population_gram, stratified_design, weighted_fit

__all__ = ["Lime", "lime_kernel_mass"]

#: lime's default number of samples: fixes the relative weight of the original text
#: and of the ridge penalty in the surrogate we estimate.
REFERENCE_SAMPLES = 5000


class Lime(SampledExplainer):
    """LIME's kernel-weighted linear surrogate, estimated with a stratified paired design.

    Ribeiro et al. 2016, https://arxiv.org/abs/1602.04938.

    Parameters
    ----------
    model : ModelAdapter
    budget : int
        Most distinct model evaluations per text (the original included); exact when
        ``2**n_features`` fits.
    seed : int or None
        Sampling seed (same seed, bit-identical results).
    kernel_width : float
        Width of lime's exponential kernel on ``100 x cosine distance`` (lime: 25).
    alpha : float
        Ridge penalty (lime: 1.0), relative to lime's 5,000-sample scale.
    features, span_size, masking, output, progress, max_batch_tokens, precision
        See :class:`~textlens.explainers.perturbation.base.PerturbationExplainer`.

    Notes
    -----
    ``quality`` holds ``features`` (text, span, score, stderr), ``intercept``,
    ``r2`` (weighted R² of the surrogate), ``local_prediction`` (the surrogate at the
    original text), ``f_full``, ``exact``, ``evaluations`` and ``seed``.
    """

    name = "lime"
    description = (
        "LIME linear surrogate, stratified sampling without repeats, with R² and standard errors."
    )
    reference = "https://arxiv.org/abs/1602.04938"
    parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "kernel_width": [Interval(float, 0, None, low_open=True)],
        "alpha": [Interval(float, 0, None)],
    }

    def __init__(
        self,
        model: ModelAdapter,
        *,
        budget: int = 512,
        seed: int | None = 0,
        kernel_width: float = 25.0,
        alpha: float = 1.0,
        features: str | Grouping = "word",
        span_size: int = 4,
        masking: str = "mask",
        output: str = "probability",
        progress: Any = False,
        max_batch_tokens: int = DEFAULT_BATCH_TOKENS,
        precision: str = "float32",
    ):
        super().__init__(
            model,
            features=features,
            span_size=span_size,
            masking=masking,
            output=output,
            progress=progress,
            max_batch_tokens=max_batch_tokens,
            precision=precision,
        )
        self.budget = budget
        self.seed = seed
        self.kernel_width = kernel_width
        self.alpha = alpha
        self._validate()

    def _design(self, game: TextGame, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        n = game.n_features
        full = np.ones((1, n), dtype=bool)
        if n <= 1:
            return np.concatenate([full, np.zeros((1, n), dtype=bool)]), None
        mass = lime_kernel_mass(n, self.kernel_width) * REFERENCE_SAMPLES
        design = stratified_design(n, mass, self.budget - 1, rng, paired=False)
        return np.concatenate([full, design.coalitions]), design

    def _estimate(
        self, game: TextGame, coalitions: np.ndarray, values: np.ndarray, state: Design | None
    ) -> FeatureScores:
        n = game.n_features
        f_full = float(values[0])
        if state is None:  # 0 or 1 feature: the line through the two points
            coef = values[:1] - values[1:] if n else np.zeros(0)
            intercept = float(values[1]) if n else f_full
            stderr, r2, exact = np.zeros(n), 1.0, True
        else:
            design = Design(
                coalitions,
                np.concatenate([[1.0], state.weights]),
                np.concatenate([[-1], state.pair]),
                np.concatenate([[-1], state.group]),
                state.exact,
                None if state.slot is None else np.concatenate([[-1], state.slot]),
            )
            if state.exact:
                fit = weighted_fit(
                    coalitions, values, design.weights, design.pair, design.group, ridge=self.alpha
                )
            else:
                mass = lime_kernel_mass(n, self.kernel_width) * REFERENCE_SAMPLES
                mass[n] += 1.0  # the original text, one sample of weight 1
                gram = population_gram(n, mass, intercept=True)
                fit = crossfit_fit(coalitions, values, design, gram, ridge=self.alpha)
            coef, intercept, stderr, r2, exact = (
                fit.coef,
                fit.intercept,
                fit.stderr,
                fit.r2,
                state.exact,
            )
        quality = {
            "intercept": float(intercept),
            "r2": float(r2),
            "local_prediction": float(intercept + np.sum(coef)),
            "f_full": f_full,
            "exact": bool(exact),
            "evaluations": len(coalitions),
        }
        return FeatureScores(np.asarray(coef, dtype=np.float64), stderr, quality)


def lime_kernel_mass(n: int, kernel_width: float = 25.0) -> np.ndarray:
    """Probability x kernel weight of lime's samples, by number of kept features ``0..n``.

    lime removes ``k`` features with ``k`` uniform in ``1..n-1``; a sample keeping ``m``
    features is at cosine distance ``1 - sqrt(m / n)`` from the original, and weighs
    ``sqrt(exp(-(100 d)**2 / width**2))``.
    """
    mass = np.zeros(n + 1)
    for kept in range(1, n):
        distance = 100.0 * (1.0 - np.sqrt(kept / n))
        mass[kept] = np.sqrt(np.exp(-(distance**2) / kernel_width**2)) / (n - 1)
    return mass
