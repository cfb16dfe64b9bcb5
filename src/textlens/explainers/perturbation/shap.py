"""Shapley values of the features, exact when the budget allows, else KernelSHAP.

The game is ``v(S)``: the explained output (target probability by default) with every
feature outside ``S`` masked. The Shapley value of feature ``i`` is

    phi_i = sum over S not containing i of |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S)),

the only attribution that is efficient (``sum(phi) = v(all) - v(none)``), symmetric,
null for dummies and additive (Shapley 1953; Lundberg & Lee 2017,
https://arxiv.org/abs/1705.07874).

- If ``2**n <= budget`` every coalition is evaluated and the formula above is applied:
  the result is exact (standard errors 0).
- Otherwise the values are the KernelSHAP regression (the Shapley kernel's weighted
  least squares under the efficiency constraint, whose solution over all coalitions
  is exactly the Shapley values), estimated from a paired, size-stratified design of
  ``budget`` distinct coalitions (see :mod:`.sampling`): the small and large
  coalitions, which carry most of the kernel's weight, are enumerated exactly, the
  rest is sampled without replacement in complementary pairs. Every estimate
  satisfies efficiency exactly and comes with a standard error per feature.
- With the probability as output and at least 3 evaluations per feature, a logistic
  surrogate ``sigmoid(c + sum a_i)`` fitted to the evaluations is used as a control
  variate (:class:`LogisticSurrogate`): its Shapley values cost no model call, and
  KernelSHAP only estimates those of the residual, which saturation makes much smaller
  than the output itself (the idea of regression-adjusted Monte Carlo, Witter et al.
  2025, https://arxiv.org/abs/2506.11849).
- Below ``2 n + 2`` evaluations there is no room for pairs: every leave-one-out
  coalition is used, plus single features; below ``n + 2``, runs of consecutive
  features are treated as one player and their value is spread evenly (recorded in
  ``quality['grouped_into']``). The standard errors of these deterministic designs
  are a rough size of the interactions they cannot see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..._validation import Constraint
from ...features import Grouping
from ...model import ModelAdapter
from .base import FeatureScores, SampledExplainer
from .engine import DEFAULT_BATCH_TOKENS, TextGame
from .sampling import Design, all_coalitions, stratified_design, weighted_fit

__all__ = ["Shap", "exact_shapley", "shapley_kernel_mass"]


class Shap(SampledExplainer):
    """Shapley values of the features: exact enumeration or stratified paired KernelSHAP.

    Lundberg & Lee 2017, https://arxiv.org/abs/1705.07874; paired sampling: Covert &
    Lee 2021, https://arxiv.org/abs/2012.01536. See the module docstring for the
    estimator used at each budget.

    Parameters
    ----------
    model : ModelAdapter
    budget : int
        Most distinct model evaluations per text; exact when ``2**n_features <= budget``.
    seed : int or None
        Sampling seed (same seed, bit-identical results).
    features, span_size, masking, output, progress, max_batch_tokens, precision
        See :class:`~textlens.explainers.perturbation.base.PerturbationExplainer`.

    Notes
    -----
    ``quality`` holds ``features`` (text, span, score, stderr), ``f_full`` and
    ``f_empty`` (the game at all / no features), ``efficiency_gap`` (sum of the values
    minus ``f_full - f_empty``, 0 up to rounding), ``exact``, ``estimator``,
    ``evaluations`` and ``seed``.
    """

    name = "shap"
    description = (
        "Shapley values of words: exact if 2^n fits the budget, else stratified paired KernelSHAP."
    )
    reference = "https://arxiv.org/abs/1705.07874"
    parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {}

    def __init__(
        self,
        model: ModelAdapter,
        *,
        budget: int = 512,
        seed: int | None = 0,
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
        self._validate()

    def _design(self, game: TextGame, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        n = game.n_features
        if n <= 20 and 2**n <= self.budget:
            return all_coalitions(n), None
        plan = _kernel_plan(n, self.budget, rng)
        plan.surrogate_seed = int(rng.integers(2**62))
        return plan.feature_coalitions(), plan

    def _estimate(
        self, game: TextGame, coalitions: np.ndarray, values: np.ndarray, state: _KernelPlan | None
    ) -> FeatureScores:
        n = game.n_features
        quality: dict[str, Any] = {}
        if state is None:
            f_empty, f_full = float(values[0]), float(values[-1])
            phi, stderr, estimator = exact_shapley(values, n), np.zeros(n), "exact"
        else:
            f_empty, f_full = float(values[0]), float(values[1])
            phi, stderr, estimator = self._kernel_shap(state, values)
            if state.groups is not None:
                quality["grouped_into"] = int(state.n_groups)
                quality["note"] = (
                    f"The budget ({self.budget}) is below n_features + 2 ({n + 2}): Shapley "
                    f"values were estimated for {state.n_groups} runs of consecutive "
                    "features and spread evenly over their features. Raise the budget or "
                    "use coarser features (features='span' or 'sentence')."
                )
        quality.update(
            {
                "f_full": f_full,
                "f_empty": f_empty,
                "efficiency_gap": float(phi.sum() - (f_full - f_empty)),
                "exact": state is None or (state.design.exact and state.groups is None),
                "estimator": estimator,
                "evaluations": len(coalitions),
            }
        )
        return FeatureScores(phi, stderr, quality)

    def _kernel_shap(
        self, plan: _KernelPlan, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """Feature values, standard errors and the estimator's name from a sampled design."""
        design = plan.design
        f_empty, f_full = float(values[0]), float(values[1])
        if plan.n_groups == 1:  # a budget of 2 or 3: one run of every feature, whose
            coef = np.array([f_full - f_empty])  # value efficiency gives exactly
            phi = plan.spread(coef)
            return phi, np.abs(phi), plan.estimator  # the split within the run is unknown
        y = values[2:]
        estimator = plan.estimator
        surrogate_phi = surrogate_se = None
        if (
            self.output == "probability"
            and self.model.has_probabilities
            and not design.exact
            and len(y) >= _SURROGATE_MIN_ROWS_PER_PLAYER * plan.n_groups
        ):
            surrogate = LogisticSurrogate.fit(design.coalitions, y, design.weights, f_empty, f_full)
            surrogate_phi, surrogate_se = surrogate.shapley(
                np.random.default_rng(plan.surrogate_seed),
                permutations=min(max(4 * self.budget, 512), 8192),
            )
            y = y - surrogate(design.coalitions)
            f_empty, f_full = f_empty - surrogate.empty, f_full - surrogate.full
            estimator += "+logistic_control_variate"
        fit = weighted_fit(
            design.coalitions,
            y,
            design.weights,
            design.pair,
            design.group,
            intercept=f_empty,
            total=f_full - f_empty,
        )
        coef, stderr = fit.coef, fit.stderr
        if surrogate_phi is not None and surrogate_se is not None:
            coef = coef + surrogate_phi
            stderr = np.sqrt(stderr**2 + surrogate_se**2)
        units = _random_units(design)
        if plan.estimator != "kernel_shap_paired_stratified" or units < _FEW_UNITS:
            stderr = _deterministic_design_stderr(
                design, values[2:], float(values[0]), float(values[1]), coef
            )
        elif units < _SOME_UNITS:  # a variance from few draws is itself unreliable
            stderr = np.maximum(
                stderr,
                _deterministic_design_stderr(
                    design, values[2:], float(values[0]), float(values[1]), coef
                ),
            )
        phi, stderr = plan.spread(coef), plan.spread(stderr)
        if plan.groups is not None:  # within a run of features the split is unknown
            stderr = np.sqrt(stderr**2 + phi**2)
        return phi, stderr, estimator


@dataclass
class _KernelPlan:
    """A KernelSHAP design over ``n_groups`` players (features, or runs of them)."""

    design: Design
    n_groups: int
    groups: np.ndarray | None  # feature -> group, None when the players are the features
    estimator: str
    surrogate_seed: int = 0

    def feature_coalitions(self) -> np.ndarray:
        players = np.concatenate(
            [
                np.zeros((1, self.n_groups), bool),
                np.ones((1, self.n_groups), bool),
                self.design.coalitions,
            ]
        )
        return players if self.groups is None else players[:, self.groups]

    def spread(self, group_values: np.ndarray) -> np.ndarray:
        if self.groups is None:
            return group_values
        sizes = np.bincount(self.groups, minlength=self.n_groups)
        return group_values[self.groups] / sizes[self.groups]


def _kernel_plan(n: int, budget: int, rng: np.random.Generator) -> _KernelPlan:
    """The design for ``n`` features and ``budget`` evaluations (empty and full included).

    - ``budget - 2 >= 2n``: paired stratified design (sizes 1 and n-1 first);
    - ``n <= budget - 2 < 2n``: every leave-one-out coalition, plus single features
      drawn without replacement (not enough for pairs of both);
    - ``budget - 2 < n``: the same over ``budget - 2`` runs of consecutive features.
    """
    left = budget - 2
    if left >= 2 * n:
        design = stratified_design(n, shapley_kernel_mass(n), left, rng, paired=True)
        return _KernelPlan(design, n, None, "kernel_shap_paired_stratified")
    groups = None
    players = n
    if left < n:
        players = max(left, 1)
        groups = (np.arange(n) * players) // n
    return _KernelPlan(
        _leave_one_out_design(players, left, rng),
        players,
        groups,
        "kernel_shap_leave_one_out" if groups is None else "kernel_shap_grouped",
    )


def _leave_one_out_design(n: int, left: int, rng: np.random.Generator) -> Design:
    """All ``n`` leave-one-out coalitions and ``left - n`` random singletons."""
    mass = shapley_kernel_mass(n)
    if n == 1:
        return Design(
            np.zeros((0, 1), bool), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), True
        )
    loo = ~np.eye(n, dtype=bool)
    k = min(max(left - n, 0), n)
    singles = np.eye(n, dtype=bool)[np.sort(rng.choice(n, size=k, replace=False))]
    weights = np.concatenate([np.full(n, mass[n - 1] / n), np.full(k, mass[1] / max(k, 1))])
    if k == 0:  # no add-one coalition: the leave-one-out stratum stands for both
        weights[:n] *= 2
    random_rows = k < n
    pair = np.concatenate([np.full(n, -1), np.arange(k) if random_rows else np.full(k, -1)])
    group = np.concatenate(
        [np.full(n, -1), np.zeros(k, np.int64) if random_rows else np.full(k, -1)]
    )
    return Design(
        np.concatenate([loo, singles]),
        weights,
        pair.astype(np.int64),
        group.astype(np.int64),
        exact=n <= 2 or k == n,
    )


def shapley_kernel_mass(n: int) -> np.ndarray:
    """Total Shapley-kernel weight of the coalitions of each size ``0..n`` (0 at the ends).

    The kernel gives a coalition of size ``s`` the weight ``(n - 1) / (C(n, s) s (n - s))``,
    so all ``C(n, s)`` of them together weigh ``(n - 1) / (s (n - s))``.
    """
    mass = np.zeros(n + 1)
    for s in range(1, n):
        mass[s] = (n - 1) / (s * (n - s))
    return mass


def exact_shapley(values: np.ndarray, n: int) -> np.ndarray:
    """Shapley values from the game's values on all ``2**n`` coalitions.

    ``values[k]`` is the value of the coalition whose bit ``i`` says whether feature
    ``i`` is kept (the order of :func:`.sampling.all_coalitions`).
    """
    values = np.asarray(values, dtype=np.float64)
    codes = np.arange(2**n)
    sizes = np.array([bin(c).count("1") for c in codes]) if n else np.zeros(1, int)
    weights = np.array([1.0 / (n * math.comb(n - 1, s)) if s < n else 0.0 for s in range(n + 1)])
    phi = np.zeros(n)
    for i in range(n):
        bit = 1 << i
        without = codes[(codes & bit) == 0]
        phi[i] = np.sum(weights[sizes[without]] * (values[without | bit] - values[without]))
    return phi


_SURROGATE_EXACT_PLAYERS = 14
#: The surrogate is fitted only when the design has this many rows per player: with
#: fewer it overfits and the control variate hurts more than it helps.
_SURROGATE_MIN_ROWS_PER_PLAYER = 3


#: Below this many randomly drawn units the design is treated as deterministic; below
#: ``_SOME_UNITS`` the sampling variance is floored by the interaction-gap estimate
#: (the calibration test and the benchmark's 2-SE coverage rely on both).
_FEW_UNITS = 4
_SOME_UNITS = 16


def _random_units(design: Design) -> int:
    return int(design.pair.max()) + 1 if len(design.pair) and design.pair.max() >= 0 else 0


def _deterministic_design_stderr(
    design: Design, values: np.ndarray, f_empty: float, f_full: float, phi: np.ndarray
) -> np.ndarray:
    """A rough standard error for designs with (almost) nothing random in them.

    That is the leave-one-out design (budget below 2n + 2), or the paired design when
    the budget only just covers the coalitions of one feature in or one feature out.

    Its error is not random but the interactions it cannot see. For the features whose
    singleton was also evaluated, half the gap between adding the feature to nothing
    and removing it from everything is the size of those interactions (the two agree
    for an additive game; their mean is exact up to pairwise interactions): its root
    mean square stands for every feature. With fewer than two such features nothing
    measures it, and the typical size of a value is reported instead.
    """
    n = len(phi)
    sizes = design.coalitions.sum(axis=1)
    leave_one_out = np.zeros(n)
    add_one = np.full(n, np.nan)
    for row, size, value in zip(design.coalitions, sizes, values, strict=True):
        if size == n - 1:
            leave_one_out[~row] = f_full - value
        elif size == 1:
            add_one[row] = value - f_empty
    seen = ~np.isnan(add_one)
    if seen.sum() >= 2:
        gap = (add_one[seen] - leave_one_out[seen]) / 2
        return np.full(n, float(np.sqrt(np.mean(gap**2))))
    return np.full(n, float(np.sqrt(np.mean(phi**2))))


@dataclass
class LogisticSurrogate:
    """``h(S) = sigmoid(c + sum of a_i over S)``: a control variate for probability games.

    A classifier's probability saturates: once a text is clearly positive, removing one
    positive word barely moves it, removing all of them does. That is a high-order
    interaction no linear fit captures, but a logistic of an additive score does. The
    Shapley values of ``h`` cost no model call (exact for few players, else antithetic
    permutations), so KernelSHAP is only asked for those of the residual ``f - h``,
    which varies less: same budget, smaller error. Efficiency is kept: both parts are
    efficient.
    """

    c: float
    a: np.ndarray

    @classmethod
    def fit(
        cls, x: np.ndarray, y: np.ndarray, weights: np.ndarray, f_empty: float, f_full: float
    ) -> LogisticSurrogate:
        n = x.shape[1]
        points = np.vstack([np.zeros((1, n)), np.ones((1, n)), x.astype(np.float64)])
        rows = np.hstack([np.ones((len(points), 1)), points])
        target = np.concatenate([[f_empty, f_full], y])
        w = np.concatenate([[weights.max(initial=1.0)] * 2, weights])
        w = w / w.mean()
        ridge = np.eye(n + 1) * 1e-6
        ridge[0, 0] = 0.0
        clipped = np.clip(target, 1e-6, 1 - 1e-6)
        beta = np.linalg.solve(
            rows.T @ (rows * w[:, None]) + ridge,
            rows.T @ (w * (np.log(clipped) - np.log1p(-clipped))),
        )
        for _ in range(4):  # Gauss-Newton in probability space
            h = _sigmoid(rows @ beta)
            jac = rows * (h * (1 - h))[:, None]
            step = np.linalg.solve(jac.T @ (jac * w[:, None]) + ridge, jac.T @ (w * (target - h)))
            beta = beta + step
        return cls(float(beta[0]), beta[1:])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(self.c + x.astype(np.float64) @ self.a)

    @property
    def empty(self) -> float:
        return float(_sigmoid(np.array(self.c)))

    @property
    def full(self) -> float:
        return float(_sigmoid(np.array(self.c + self.a.sum())))

    def shapley(
        self, rng: np.random.Generator, permutations: int = 512
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shapley values of ``h`` and their Monte Carlo standard errors (0 if exact)."""
        n = len(self.a)
        if n <= _SURROGATE_EXACT_PLAYERS:
            return exact_shapley(self(all_coalitions(n)), n), np.zeros(n)
        m = permutations
        order = np.argsort(rng.random((m, n)), axis=1)
        order = np.concatenate([order, order[:, ::-1]])
        cumulative = np.cumsum(self.a[order], axis=1)
        before = np.concatenate([np.zeros((2 * m, 1)), cumulative[:, :-1]], axis=1)
        gains = _sigmoid(self.c + cumulative) - _sigmoid(self.c + before)
        per_permutation = np.zeros((2 * m, n))
        np.put_along_axis(per_permutation, order, gains, axis=1)
        pairs = (per_permutation[:m] + per_permutation[m:]) / 2
        return pairs.mean(axis=0), pairs.std(axis=0, ddof=1) / np.sqrt(m)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))
