"""Coalition designs and weighted regression with standard errors, for LIME and SHAP.

Both KernelSHAP and LIME fit a weighted linear model over coalitions whose weight
depends only on the coalition's *size* (number of kept features). Their exact answers
are weighted sums over all ``2**n`` coalitions; this module estimates them with a
budget of distinct coalitions by **stratified sampling** on the size:

1. size strata are paired with their complements (size ``s`` with ``n - s``), and each
   sampled coalition comes with its complement (*paired* or antithetic sampling: the
   even-order interaction terms of the two halves cancel in the fit; Covert & Lee 2021,
   https://arxiv.org/abs/2012.01536);
2. pair strata whose coalitions are worth more than one sample each are enumerated
   exactly, largest weight per coalition first (as shap's KernelExplainer does);
3. the remaining budget is allocated to the other strata in proportion to their weight,
   and coalitions are drawn uniformly *without replacement* inside each stratum, so
   every evaluation is a distinct coalition (no model call is spent on a duplicate);
4. each row's regression weight is its stratum's total weight divided by the number of
   rows drawn in it (a Horvitz-Thompson weight), so the fit is a consistent estimate
   of the fit over all coalitions, and exact once every stratum is enumerated.

Standard errors come from the linearisation (sandwich) of the weighted least-squares
solution, with the variance of the sampled part estimated from the pairs of each
stratum (strata with few pairs are pooled), cluster-jackknife (CR3) residuals and a
Welch-Satterthwaite t inflation. :func:`crossfit_fit` estimates the same fit with the
exact population Gram matrix and cross-fitted control variates (used by LIME, whose
in-sample regression estimate is unstable when random rows are about as many as the
features).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Control",
    "Design",
    "Fit",
    "all_coalitions",
    "crossfit_fit",
    "population_gram",
    "stratified_design",
    "weighted_fit",
]

_MAX_ENUMERATED_STRATUM = 200_000
_MIN_UNITS_PER_STRATUM = 3


@dataclass
class Design:
    """Distinct coalitions to evaluate, with their regression weights.

    Attributes
    ----------
    coalitions : np.ndarray
        Bool ``[m, n]`` (True = feature kept), all distinct.
    weights : np.ndarray
        ``[m]`` regression weight of each row.
    pair : np.ndarray
        ``[m]`` id of the sampled pair (coalition, complement) a row belongs to; -1 for
        rows of enumerated strata (not random).
    group : np.ndarray
        ``[m]`` variance group of the row's pair (pooled strata); -1 if enumerated.
    exact : bool
        True when every stratum with weight was enumerated.
    slot : np.ndarray or None
        ``[m]`` a random rank of the row's pair among the pairs of its group (-1 if
        enumerated): cross-fitting splits the pairs into folds by ``slot % folds``.
    """

    coalitions: np.ndarray
    weights: np.ndarray
    pair: np.ndarray
    group: np.ndarray
    exact: bool
    slot: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.weights)


@dataclass
class Fit:
    """A weighted least-squares fit and its standard errors."""

    coef: np.ndarray
    intercept: float
    stderr: np.ndarray
    r2: float


def all_coalitions(n: int) -> np.ndarray:
    """Bool ``[2**n, n]``: row ``k`` keeps feature ``i`` when bit ``i`` of ``k`` is set."""
    codes = np.arange(2**n, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n)) & 1).astype(bool)


def stratified_design(
    n: int,
    mass: np.ndarray,
    budget: int,
    rng: np.random.Generator,
    *,
    paired: bool = True,
    power: float = 1.0,
) -> Design:
    """A size-stratified design of at most ``budget`` distinct coalitions.

    Parameters
    ----------
    n : int
        Number of features.
    mass : np.ndarray
        ``[n + 1]``: total regression weight of all coalitions of each size (0 excludes
        a size). Sizes 0 and n are never drawn here: add them yourself.
    budget : int
        Most coalitions in the design.
    rng : numpy.random.Generator
    paired : bool
        Draw every coalition with its complement (for kernels symmetric in the size, as
        Shapley's); else each size is a stratum of its own (LIME's kernel is not
        symmetric: a complement of a near-full sample weighs almost nothing).
    """
    strata = _strata(n, mass, paired)
    remaining = float(sum(s.mass for s in strata))
    left = budget
    rows: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    sampled: list[_Stratum] = []
    # Enumerate the strata worth at least one draw per coalition, richest first. With
    # pairs, the richest (one feature in or out) is always enumerated when it fits:
    # without it some features would appear in no informative coalition at small
    # budgets. Not without pairs (LIME): its richest stratum per coalition (one feature
    # out) holds little of the kernel's weight, and enumerating it would spend half of
    # a budget of 2n on it, leaving the strata that matter as few draws as at 1n.
    for rank, stratum in enumerate(sorted(strata, key=lambda s: (-s.mass / s.count, s.low))):
        share = left * stratum.mass / remaining if remaining > 0 else 0.0
        worth = stratum.count <= share or (paired and rank == 0 and stratum.count <= left)
        if worth and stratum.count <= _MAX_ENUMERATED_STRATUM:
            block = stratum.enumerate(n)
            rows.append(block)
            weights.append(_size_weight(block, mass, n))
            left -= len(block)
            remaining -= stratum.mass
        else:
            sampled.append(stratum)
    n_fixed = sum(len(r) for r in rows)
    pair_ids: list[np.ndarray] = [np.full(n_fixed, -1)]
    group_ids: list[np.ndarray] = [np.full(n_fixed, -1)]
    partial = 0 if left >= 1 else len(sampled)
    if sampled and left >= 1:
        sampled.sort(key=lambda s: s.low)
        own, pooled = _allocate(sampled, left, power)
        next_unit, next_group = 0, 0
        for stratum, n_draws in own:
            block, units = stratum.sample(n, n_draws, rng)
            rows.append(block)
            weights.append(_sampled_weight(block, mass, n))
            if len(block) == stratum.count:  # drawn in full: not random after all
                pair_ids.append(np.full(len(block), -1))
                group_ids.append(np.full(len(block), -1))
                continue
            partial += 1
            pair_ids.append(units + next_unit)
            next_unit += int(units.max()) + 1
            group_ids.append(np.full(len(block), next_group))
            next_group += 1
        if pooled:
            strata_in_pool, n_units = pooled
            partial += len(strata_in_pool)
            block, units, block_weights = _sample_pool(strata_in_pool, n_units, n, mass, rng, power)
            rows.append(block)
            weights.append(block_weights)
            pair_ids.append(units + next_unit)
            group_ids.append(np.full(len(block), next_group))
    exact = partial == 0
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return Design(np.zeros((0, n), bool), np.zeros(0), empty, empty.copy(), exact, empty.copy())
    pair = np.concatenate(pair_ids)
    group = np.concatenate(group_ids)
    return Design(
        coalitions=np.concatenate(rows),
        weights=np.concatenate(weights),
        pair=pair,
        group=group,
        exact=exact,
        slot=_random_slots(pair, group, rng),
    )


def _random_slots(pair: np.ndarray, group: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each pair's rank in a random order of the pairs of its group (-1 if enumerated)."""
    slot = np.full(len(pair), -1, dtype=np.int64)
    if not (pair >= 0).any():
        return slot
    n_pairs = int(pair.max()) + 1
    pair_group = np.full(n_pairs, -1, dtype=np.int64)
    pair_group[pair[pair >= 0]] = group[pair >= 0]
    pair_slot = np.zeros(n_pairs, dtype=np.int64)
    for g in np.unique(pair_group[pair_group >= 0]):
        members = np.flatnonzero(pair_group == g)
        pair_slot[members[rng.permutation(len(members))]] = np.arange(len(members))
    slot[pair >= 0] = pair_slot[pair[pair >= 0]]
    return slot


def weighted_fit(
    x: np.ndarray,
    y: np.ndarray,
    design_weights: np.ndarray,
    pair: np.ndarray,
    group: np.ndarray,
    *,
    intercept: float | None = None,
    total: float | None = None,
    ridge: float = 0.0,
) -> Fit:
    """Weighted least squares ``y ~ intercept + x @ coef`` with sandwich standard errors.

    Parameters
    ----------
    x : np.ndarray
        ``[m, n]`` design matrix (coalitions as 0/1).
    y : np.ndarray
        ``[m]`` responses.
    design_weights : np.ndarray
        ``[m]`` regression weights.
    pair, group : np.ndarray
        Sampling structure from :class:`Design` (-1 = not random).
    intercept : float or None
        A fixed intercept (KernelSHAP: the empty coalition's value), or None to fit one.
    total : float or None
        If given, constrain ``coef.sum() == total`` (SHAP's efficiency).
    ridge : float
        L2 penalty on ``coef`` (not on the intercept).
    """
    m = x.shape[0]
    w = design_weights
    fixed = intercept is not None
    design = x.astype(np.float64) if fixed else np.hstack([np.ones((m, 1)), x])
    target = y - intercept if fixed else y.astype(np.float64)
    p = design.shape[1]
    gram = design.T @ (design * w[:, None])
    penalty = np.eye(p) * ridge
    if not fixed:
        penalty[0, 0] = 0.0
    gram_r = gram + penalty + np.eye(p) * 1e-12 * max(np.trace(gram) / p, 1e-300)
    rhs = design.T @ (w * target)
    inverse = _pinv(gram_r)
    beta = inverse @ rhs
    project = inverse
    if total is not None:
        ones = np.zeros(p)
        ones[int(not fixed) :] = 1.0
        a_ones = inverse @ ones
        denominator = float(ones @ a_ones)
        beta = beta - a_ones * (float(ones @ beta) - total) / denominator
        project = inverse - np.outer(a_ones, a_ones) / denominator
    residual = target - design @ beta
    stderr = _sandwich(design, w, residual, project, pair, group)
    coef = beta if fixed else beta[1:]
    se = stderr if fixed else stderr[1:]
    b0 = float(beta[0]) if intercept is None else float(intercept)
    mean = float(np.sum(w * y) / np.sum(w)) if np.sum(w) > 0 else 0.0
    ss_total = float(np.sum(w * (y - mean) ** 2))
    ss_residual = float(np.sum(w * residual**2))
    r2 = 1.0 - ss_residual / ss_total if ss_total > 0 else 1.0
    return Fit(coef=coef, intercept=b0, stderr=se, r2=r2)


def population_gram(n: int, mass: np.ndarray, *, intercept: bool) -> np.ndarray:
    """``sum over all coalitions S of w(S) z z^T``, for weights that depend only on ``|S|``.

    ``z`` is the coalition as 0/1 (with a leading 1 if ``intercept``); ``mass[s]`` is the
    total weight of the coalitions of size ``s`` (``0..n``). A coalition of size ``s``
    holds a given feature with chance ``s / n`` and two given ones with chance
    ``s (s - 1) / (n (n - 1))``, so the matrix is known without enumerating anything.
    """
    sizes = np.arange(n + 1, dtype=np.float64)
    s1 = float(np.sum(mass * sizes)) / max(n, 1)
    s2 = float(np.sum(mass * sizes * (sizes - 1))) / (n * (n - 1)) if n > 1 else 0.0
    block = np.full((n, n), s2)
    np.fill_diagonal(block, s1)
    if not intercept:
        return block
    gram = np.empty((n + 1, n + 1))
    gram[0, 0] = float(np.sum(mass))
    gram[0, 1:] = gram[1:, 0] = s1
    gram[1:, 1:] = block
    return gram


@dataclass
class Control:
    """A control variate for :func:`crossfit_fit`: a game ``h`` fitted to some rows.

    Attributes
    ----------
    predict : np.ndarray
        ``[m]`` ``h`` at every row of the design.
    answer : np.ndarray
        The fit of ``h`` over all coalitions (the parameter vector, intercept first if
        it is fitted), known without a model call.
    empty, full : float
        ``h`` at no feature and at every feature (used with a fixed intercept / total).
    answer_variance : np.ndarray or None
        Monte Carlo variance of ``answer``, if it is itself estimated.
    """

    predict: np.ndarray
    answer: np.ndarray
    empty: float
    full: float
    answer_variance: np.ndarray | None = None


ControlFactory = Callable[[np.ndarray, np.ndarray], Control]

#: Folds of :func:`crossfit_fit`: each control is fitted on the other folds' pairs.
CROSSFIT_FOLDS = 4


def crossfit_fit(
    x: np.ndarray,
    y: np.ndarray,
    design: Design,
    gram: np.ndarray,
    *,
    intercept: float | None = None,
    total: float | None = None,
    ridge: float = 0.0,
    control: ControlFactory | None = None,
    folds: int = CROSSFIT_FOLDS,
) -> Fit:
    """The fit over all coalitions, estimated with cross-fitted control variates.

    The target is the weighted least-squares fit of ``y`` over *all* coalitions (with
    ``gram`` = :func:`population_gram`, known exactly). Its normal equations need only
    ``b = sum_S w(S) z y(S)``. Write ``y = h + r`` with ``h`` a cheap game whose fit is
    known (by default the linear model fitted to the design): ``fit(y) = fit(h) +
    gram^-1 b(r)``, and ``b(r)`` is estimated by Horvitz-Thompson from the design.
    If ``h`` were fitted to the very rows that estimate ``b(r)``, the residuals there
    would be too small (the fit bends towards them): the estimate would be biased and
    its standard errors far too small whenever the random rows are not many more than
    the features -- the in-sample weighted regression estimator (KernelSHAP) at small
    budgets. So the random pairs are split into ``folds``, and each fold's residuals
    come from the ``h`` fitted to everything else (cross-fitting, as in double machine
    learning: Chernozhukov et al. 2018, https://arxiv.org/abs/1608.00060; for Shapley
    values with exact ``gram``: Covert & Lee 2021, https://arxiv.org/abs/2012.01536;
    regression-adjusted Monte Carlo: Witter et al. 2025, https://arxiv.org/abs/2506.11849).
    The result is unbiased up to second order, its error does not blow up when the
    random rows are about as many as the features, and its standard errors (the
    between-pair spread of the out-of-fold contributions, per variance group) are honest.

    Parameters
    ----------
    x, y : np.ndarray
        ``[m, n]`` coalitions and ``[m]`` values of the design's rows.
    design : Design
        Weights and sampling structure of the rows (rows with ``pair == -1`` are
        enumerated, i.e. not random).
    gram : np.ndarray
        The population Gram matrix (with the intercept first if ``intercept`` is None).
    intercept, total, ridge
        As in :func:`weighted_fit`.
    control : callable or None
        ``control(train_mask, train_weights) -> Control``; None: the linear model.
    """
    w = design.weights
    pair = design.pair
    random = pair >= 0
    fixed = intercept is not None
    m = x.shape[0]
    z = x.astype(np.float64) if fixed else np.hstack([np.ones((m, 1)), x])
    p = z.shape[1]
    penalty = np.eye(p) * ridge
    if not fixed:
        penalty[0, 0] = 0.0
    inverse = _pinv(gram + penalty)
    project = inverse
    a_ones = np.zeros(p)
    denominator = 1.0
    if total is not None:
        ones = np.zeros(p)
        ones[int(not fixed) :] = 1.0
        a_ones = inverse @ ones
        denominator = float(ones @ a_ones)
        project = inverse - np.outer(a_ones, a_ones) / denominator

    def solve(b: np.ndarray, t: float | None) -> np.ndarray:
        return project @ b + (a_ones * (t / denominator) if t is not None else 0.0)

    if control is None:

        def control(train: np.ndarray, weights: np.ndarray) -> Control:
            none = np.full(int(train.sum()), -1)
            fit = weighted_fit(
                x[train], y[train], weights[train], none, none,
                intercept=intercept, total=total, ridge=ridge + _control_ridge(train, gram),
            )  # fmt: skip
            gamma = fit.coef if fixed else np.concatenate([[fit.intercept], fit.coef])
            offset = float(intercept) if intercept is not None else 0.0
            empty = offset if fixed else float(gamma[0])
            h_total = float(np.sum(gamma[int(not fixed) :]))
            return Control(
                predict=z @ gamma + offset,
                answer=solve(gram @ gamma, h_total if total is not None else None),
                empty=empty,
                full=empty + h_total,
            )

    units = int(pair.max()) + 1 if random.any() else 0
    slot = design.slot if design.slot is not None else np.where(random, pair, -1)
    k_folds = max(min(folds, units), 1)
    fold = np.where(random, slot % k_folds, -1)
    unit_fold = np.zeros(max(units, 1), dtype=np.int64)
    unit_fold[pair[random]] = fold[random]
    share = np.bincount(unit_fold[:units], minlength=k_folds) / max(units, 1)
    base = y - intercept if fixed else y.astype(np.float64)
    residual = np.zeros(m)
    estimate = np.zeros(p)
    answer_variance = np.zeros(p)
    enumerated = ~random
    for k in range(k_folds):
        test = fold == k
        if units and not test.any():
            continue
        train = ~test
        weights = w.copy()
        if units:
            weights[random & train] /= 1.0 - share[k] if share[k] < 1 else 1.0
        h = control(train, weights)
        r = base - (h.predict - h.empty if fixed else h.predict)
        t_r = None if total is None else total - (h.full - h.empty)
        b_enumerated = z[enumerated].T @ (w[enumerated] * r[enumerated])
        lam = share[k] if units else 1.0
        estimate += lam * (h.answer + solve(b_enumerated, t_r))
        residual[test] = r[test]
        if h.answer_variance is not None:
            answer_variance += lam**2 * h.answer_variance
    estimate += project @ (z[random].T @ (w[random] * residual[random]))
    stderr = np.zeros(p)
    if units:
        contributions = (z[random] * (w[random] * residual[random])[:, None]) @ project.T
        stderr = _projected_variance(contributions, pair[random], design.group[random])
    stderr = np.sqrt(np.clip(stderr + answer_variance, 0.0, None))
    coef = estimate if fixed else estimate[1:]
    b0 = float(intercept) if intercept is not None else float(estimate[0])
    fitted = z @ estimate + (float(intercept) if intercept is not None else 0.0)
    mean = float(np.sum(w * y) / np.sum(w)) if np.sum(w) > 0 else 0.0
    ss_total = float(np.sum(w * (y - mean) ** 2))
    r2 = 1.0 - float(np.sum(w * (y - fitted) ** 2)) / ss_total if ss_total > 0 else 1.0
    return Fit(coef=coef, intercept=b0, stderr=stderr if fixed else stderr[1:], r2=r2)


#: Ridge of the control fits, relative to the mean diagonal of the population Gram
#: matrix, when they have fewer than twice as many rows as parameters: keeps such a
#: control from going wild. With more rows only a trace of it, so that a control fitted
#: to an additive game is the game itself and the estimate is exact.
_CONTROL_RIDGE = 1e-2


def _control_ridge(train: np.ndarray, gram: np.ndarray) -> float:
    p = gram.shape[0]
    scale = 1.0 if int(train.sum()) < 2 * p else 1e-8
    return _CONTROL_RIDGE * scale * float(gram.trace()) / p


def _projected_variance(
    contributions: np.ndarray, pairs: np.ndarray, groups: np.ndarray
) -> np.ndarray:
    """Variance of the sum of the sampled pairs' contributions, i.i.d. within a group.

    Within a group of ``k`` pairs the variance of the sum is estimated by ``k/(k-1)``
    times the sum of squared deviations; the groups add up. That estimate is itself
    uncertain when it rests on few pairs, so it is inflated by ``(t/z)**2`` with the
    Welch-Satterthwaite degrees of freedom of the sum (per coefficient): a group of 3
    pairs among many others costs little, one group of 3 pairs alone costs a lot.
    """
    p = contributions.shape[1]
    n_pairs = int(pairs.max()) + 1
    per_pair = np.zeros((n_pairs, p))
    np.add.at(per_pair, pairs, contributions)
    present = np.zeros(n_pairs, dtype=bool)
    present[pairs] = True
    pair_group = np.full(n_pairs, -1, dtype=np.int64)
    pair_group[pairs] = groups
    variance = np.zeros(p)
    spread = np.zeros(p)  # sum over groups of variance**2 / dof
    for g in np.unique(pair_group[present]):
        block = per_pair[present & (pair_group == g)]
        k = len(block)
        if k < 2:  # one pair: its square, as if from one degree of freedom
            part = block[0] ** 2
            variance += part
            spread += part**2
            continue
        centred = block - block.mean(axis=0)
        part = np.sum(centred**2, axis=0) * (k / (k - 1))
        variance += part
        spread += part**2 / (k - 1)
    dof = np.where(spread > 0, variance**2 / np.where(spread > 0, spread, 1.0), 1e6)
    inflation = np.array([_t_inflation(max(int(d), 1)) for d in dof])
    return variance * inflation


def _sandwich(
    design: np.ndarray,
    w: np.ndarray,
    residual: np.ndarray,
    project: np.ndarray,
    pair: np.ndarray,
    group: np.ndarray,
) -> np.ndarray:
    """Standard errors of the fit from the sampled rows' contributions.

    The estimate is ``P @ sum_rows(w x r)`` to first order; enumerated rows are not
    random. Each sampled pair contributes ``g = sum_over_its_rows(w x r)`` with r the
    pair's jackknife (CR3) residual; within a variance group the pairs are treated as an
    i.i.d. sample, so ``Var(sum g) = k/(k-1) * sum (g - mean g)^2`` (see
    :func:`_projected_variance` for the small-sample inflation).
    """
    p = design.shape[1]
    random_rows = pair >= 0
    if not random_rows.any():
        return np.zeros(p)
    d = design[random_rows]
    wr = w[random_rows]
    pairs = pair[random_rows]
    groups = group[random_rows]
    scaled = _jackknife_residuals(d, wr, residual[random_rows], project, pairs)
    contributions = (d * (wr * scaled)[:, None]) @ project.T
    variance = _projected_variance(contributions, pairs, groups)
    return np.sqrt(np.clip(variance, 0.0, None))


def _jackknife_residuals(
    d: np.ndarray, w: np.ndarray, residual: np.ndarray, project: np.ndarray, pairs: np.ndarray
) -> np.ndarray:
    """Residuals of each sampled pair as if the fit had been made without that pair.

    ``(I - H_uu)^-1 r_u`` with ``H_uu`` the pair's block of the hat matrix (CR3, the
    cluster jackknife; Bell & McCaffrey 2002). The in-sample residuals of a regression
    with about as many random pairs as features are far too small (the fit passes
    through them), and a row-by-row correction (HC3) misses that a coalition and its
    complement pull the fit together.
    """
    out = residual.copy()
    order = np.argsort(pairs, kind="stable")
    bounds = np.flatnonzero(np.diff(pairs[order])) + 1
    for rows in np.split(order, bounds):
        block = d[rows]
        hat = (block @ project @ block.T) * w[rows][None, :]
        keep = np.eye(len(rows)) - hat
        try:
            fixed = np.linalg.solve(keep, residual[rows])
        except np.linalg.LinAlgError:
            fixed = residual[rows] / 0.05
        # a pair the fit cannot do without: cap the correction (as HC3's 1 - h >= 0.05)
        limit = np.abs(residual[rows]).max() * 20.0
        out[rows] = np.clip(fixed, -limit, limit) if limit > 0 else fixed
    return out


_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def _t_inflation(dof: int) -> float:
    """``(t_{0.975, dof} / z_{0.975})**2``: a variance estimated from few units is itself
    uncertain, so two standard errors must reach further to cover 95%."""
    z = 1.959964
    if dof <= len(_T_975):
        t = _T_975[dof - 1]
    else:  # Cornish-Fisher expansion of the t quantile
        t = z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
    return (t / z) ** 2


def _pinv(matrix: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(matrix)


@dataclass
class _Stratum:
    """Coalitions of size ``low``, with their complements (size ``high = n - low``) if paired."""

    low: int
    high: int
    mass: float
    count: int
    paired: bool

    def enumerate(self, n: int) -> np.ndarray:
        block = _combinations(n, self.low)
        if self.paired and self.high != self.low:
            block = np.concatenate([block, ~block])
        return block

    def sample(self, n: int, draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``draws`` distinct coalitions and the sampling unit (pair) of each row."""
        if not self.paired:
            count = min(max(draws, 1), self.count)
            chosen = _distinct_subsets(n, self.low, count, rng, canonical=False)
            return chosen, np.arange(count)
        self_complementary = self.high == self.low
        population = math.comb(n, self.low) // (2 if self_complementary else 1)
        n_pairs = min(max(draws // 2, 1), population)
        chosen = _distinct_subsets(n, self.low, n_pairs, rng, canonical=self_complementary)
        block = np.concatenate([chosen, ~chosen])
        pairs = np.concatenate([np.arange(n_pairs), np.arange(n_pairs)])
        return block, pairs


def _strata(n: int, mass: np.ndarray, paired: bool) -> list[_Stratum]:
    strata = []
    if not paired:
        for size in range(1, n):
            if mass[size] > 0:
                strata.append(_Stratum(size, size, float(mass[size]), math.comb(n, size), False))
        return strata
    for low in range(1, n // 2 + 1):
        high = n - low
        if high == low:
            total, count = float(mass[low]), math.comb(n, low)
        else:
            total, count = float(mass[low] + mass[high]), 2 * math.comb(n, low)
        if total > 0:
            strata.append(_Stratum(low, high, total, count, True))
    return strata


def _allocate(
    strata: list[_Stratum], budget: int, power: float = 1.0
) -> tuple[list[tuple[_Stratum, int]], tuple[list[_Stratum], int] | None]:
    """Split ``budget`` draws over ``strata`` in proportion to their mass.

    Strata that would get at least ``_MIN_UNITS_PER_STRATUM`` sampling units (pairs, or
    single coalitions when unpaired) are sampled on their own; the others are pooled:
    the pool gets the rest of the budget, and each of its draws first picks a stratum
    with probability proportional to its mass. So no stratum with weight is left out
    (which would bias the fit), however small the budget.

    Returns ``([(stratum, draws), ...], (pooled strata, units) or None)``.
    """
    unit = 2 if strata[0].paired else 1
    caps = np.array([s.count for s in strata], dtype=np.float64)
    masses = np.array([s.mass for s in strata]) ** power
    draws = np.zeros(len(strata))
    left = float(budget)
    active = np.ones(len(strata), dtype=bool)
    while left >= 1 and active.any():
        share = left * masses * active / masses[active].sum()
        over = active & (draws + share >= caps)
        if over.any():
            left -= float((caps[over] - draws[over]).sum())
            draws[over] = caps[over]
            active &= ~over
            continue
        draws += share
        left = 0
    units = np.floor(draws / unit)
    alone = units >= _MIN_UNITS_PER_STRATUM
    own = [(s, int(u * unit)) for s, u, a in zip(strata, units, alone, strict=True) if a]
    rest = [s for s, a in zip(strata, alone, strict=True) if not a]
    pool_units = int((budget - sum(d for _, d in own)) // unit)
    if not rest or pool_units < 1:
        return own, None
    return own, (rest, pool_units)


def _sample_pool(
    strata: list[_Stratum],
    units: int,
    n: int,
    mass: np.ndarray,
    rng: np.random.Generator,
    power: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``units`` draws: a stratum with probability proportional to its mass, then a coalition.

    Each row's weight is the Horvitz-Thompson weight of one draw from the pool:
    ``pool mass / units`` shared by the rows of the draw in proportion to their size's mass.
    """
    masses = np.array([s.mass for s in strata])
    total = masses.sum()
    chance = masses**power / np.sum(masses**power)
    picks = np.bincount(rng.choice(len(strata), size=units, p=chance), minlength=len(strata))
    blocks, unit_ids, weights = [], [], []
    next_unit = 0
    for stratum, k in zip(strata, picks, strict=True):
        if k == 0:
            continue
        draws = k * (2 if stratum.paired else 1)
        block, ids = stratum.sample(n, draws, rng)
        sizes = block.sum(axis=1)
        blocks.append(block)
        unit_ids.append(ids + next_unit)
        next_unit += int(ids.max()) + 1
        drawn = int(ids.max()) + 1  # may be fewer than k if the stratum is small
        share = stratum.mass / total / chance[strata.index(stratum)]  # importance weight
        weights.append(total / units * share * (k / drawn) * mass[sizes] / stratum.mass)
    return np.concatenate(blocks), np.concatenate(unit_ids), np.concatenate(weights)


def _size_weight(block: np.ndarray, mass: np.ndarray, n: int) -> np.ndarray:
    sizes = block.sum(axis=1)
    counts = np.array([math.comb(n, int(s)) for s in sizes], dtype=np.float64)
    return mass[sizes] / counts


def _sampled_weight(block: np.ndarray, mass: np.ndarray, n: int) -> np.ndarray:
    sizes = block.sum(axis=1)
    per_size = np.bincount(sizes, minlength=n + 1)
    return mass[sizes] / per_size[sizes]


def _combinations(n: int, k: int) -> np.ndarray:
    """All size-``k`` subsets of ``n`` as a bool matrix (lexicographic)."""
    from itertools import combinations

    count = math.comb(n, k)
    block = np.zeros((count, n), dtype=bool)
    for row, chosen in enumerate(combinations(range(n), k)):
        block[row, list(chosen)] = True
    return block


def _distinct_subsets(
    n: int, k: int, count: int, rng: np.random.Generator, *, canonical: bool
) -> np.ndarray:
    """``count`` distinct uniform size-``k`` subsets (bool rows), drawn without replacement.

    With ``canonical`` (self-complementary strata), a subset and its complement count as
    one: the subsets returned never contain a complement of another.
    """
    population = math.comb(n, k) // (2 if canonical else 1)
    if population <= 4 * count and math.comb(n, k) <= _MAX_ENUMERATED_STRATUM:
        block = _combinations(n, k)
        if canonical:
            block = block[block[:, 0]]  # one of each complementary pair
        return block[np.sort(rng.choice(len(block), size=count, replace=False))]
    seen: dict[bytes, np.ndarray] = {}
    while len(seen) < count:
        want = int((count - len(seen)) * 1.2) + 4
        keys = rng.random((want, n))
        picks = (
            np.argpartition(keys, k - 1, axis=1)[:, :k]
            if k < n
            else np.tile(np.arange(n), (want, 1))
        )
        rows = np.zeros((want, n), dtype=bool)
        np.put_along_axis(rows, picks, True, axis=1)
        if canonical:
            rows = np.where(rows[:, :1], rows, ~rows)
        for row in rows:
            key = np.packbits(row).tobytes()
            if key not in seen:
                seen[key] = row
                if len(seen) == count:
                    break
    return np.stack(list(seen.values()))
