"""Information-based explanations of any hidden state (Guan et al., ICML 2019).

For a hidden state ``s = Phi(x)`` of the input word embeddings ``x``, the method learns
one noise level ``sigma_i`` per token: Gaussian noise ``eps_i ~ N(0, sigma_i^2 I)`` is
added to token i's word embedding, and the sigmas minimise

    L(sigma) = E_eps ||Phi(x + eps) - s||^2 / r^2  -  lambda * sum_i log sigma_i,

where ``r`` is the spread of ``Phi`` over a sample of texts. A token that can take much
noise without moving ``s`` carries little information into ``s`` (large sigma); one
that ``s`` depends on gets a small sigma. Its information loss is
``H_i = K/2 log(2 pi e) + K log sigma_i`` (K = embedding size).

Guan, Wang, Zhang, Chen, He & Xie, "Towards a Deep and Unified Understanding of Deep
Neural Models in NLP", ICML 2019, https://proceedings.mlr.press/v97/guan19a.html.

How this implementation differs from the published procedure (one text at a time,
one noise sample per step, Adam, 5,000 steps) — same objective, faster optimiser:

* many texts are optimised together in one batch, each with its own sigmas and its own
  noise stream (seeded from the seed and the text's token ids, so a text gets the same
  draws alone or in any batch); finished texts leave the batch and waiting ones join;
  each step runs the batch in model calls of texts of similar lengths, since padding
  costs as much as real tokens;
* every step averages ``n_samples`` noise draws;
* the step is a Newton step in ``u = log sigma``: for a locally linear ``Phi`` the
  distortion term is ``sum_i c_i sigma_i^2``, whose optimum has curvature ``2 lambda/n``
  in every ``u_i`` whatever ``c_i``, so ``u <- u - rho (dD/du - lambda/n) / (2 lambda/n)``
  is well scaled for every token and every model;
* a state with few elements (the logits) gets its exact Jacobian J (one backward pass
  per element): the fit starts at the optimum of the linearised objective,
  ``sigma_t^2 = lam / (2 n sum_f w_f |J_ft|^2)`` (capped near the common start, where
  the linearisation holds), the same draws pushed through ``J`` serve as a control
  variate (its expected gradient is known exactly), and the correcting steps shrink
  like ``1/t``; with noise this small the published loop itself stays near the
  linearised optimum, and plain stochastic steps would wander off it;
* the result is the average of ``log sigma`` over the last window of steps, and a text
  stops when two consecutive windows agree within ``tol`` (instead of a fixed count);
* ``r`` is computed once per model and state and cached on disk.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .._validation import Constraint, InstanceOf, Interval, IsNone, Options
from ..errors import InvalidInputError, InvalidParameterError
from ..model import DEFAULT_MAX_BATCH_TOKENS, PRECISIONS, Encoding, ModelAdapter, pack_batches
from .base import Explainer, Scores

__all__ = [
    "DEFAULT_LAM",
    "InformationLoss",
    "InformationResult",
    "ModelState",
    "information_loss",
    "information_loss_entropy",
]

#: Default weight of the entropy term (per token, per element of Phi; see ``lam``).
DEFAULT_LAM = 0.1
#: Default bound on sigma, in standard deviations of the word-embedding weights.
DEFAULT_SCALE_FACTOR = 10.0
POSITIONS = ("all", "cls")
SPECIAL_TOKENS = ("fixed", "perturb")
NAMED_STATES = ("pooled", "logits")
#: Starting point of every sigma: scale * sigmoid(INITIAL_THETA), about 2% of the bound, so
#: the fit grows each token's noise from a small value (see InformationLoss).
INITIAL_THETA = -4.0
_BURN_IN = 3  # steps that jump to the locally-quadratic optimum before damped steps
#: A state with at most this many noise-sample rounds' worth of elements (e.g. the
#: logits) gets its exact Jacobian: a linearised start and a control variate.
_EXACT_JACOBIAN_ROUNDS = 4
_CORRECTION_RATE = 0.4  # relative step of the correction after a linearised start
_MAX_MOVE = 2.0  # largest change of log sigma in one step
#: Inputs share one model call only if the shortest is within this share of the longest
#: (padding wastes compute: on 30 tweets of 13..46 tokens, layer 3, one padded call per
#: step made the fit 1.4x slower than length-grouped calls on a CPU).
_PAD_SLACK = 0.1
_THETA_LIMIT = 30.0  # sigmoid(30) == 1 in float32: sigma exactly at the bound


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class InformationResult:
    """The fitted noise of one input.

    Attributes
    ----------
    sigma : numpy.ndarray
        ``[tokens]`` noise standard deviation per token; NaN where no noise was added.
    loss : float
        The objective at the end (averaged over the last window of steps).
    iterations : int
        Optimisation steps taken.
    converged : bool
        Whether the convergence rule stopped the optimisation before ``max_steps``.
    scale : float
        The upper bound of sigma.
    embedding_size : int
        K, the size of one token's embedding.
    """

    sigma: np.ndarray
    loss: float
    iterations: int
    converged: bool
    scale: float
    embedding_size: int

    @property
    def information_loss(self) -> np.ndarray:
        """``H_i = K/2 log(2 pi e) + K log sigma_i`` in nats (NaN where no noise)."""
        return information_loss_entropy(self.sigma, self.embedding_size)

    @property
    def scores(self) -> np.ndarray:
        """``log(scale / sigma_i)``: information kept, >= 0, higher = more important.

        0 where no noise was added.
        """
        with np.errstate(invalid="ignore"):
            kept = np.log(self.scale) - np.log(self.sigma)
        return np.where(np.isnan(kept), 0.0, np.maximum(kept, 0.0))


def information_loss_entropy(sigma: np.ndarray, embedding_size: int) -> np.ndarray:
    """Entropy ``K/2 log(2 pi e) + K log sigma`` of ``N(0, sigma^2 I_K)``, elementwise."""
    k = float(embedding_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        return k / 2 * math.log(2 * math.pi * math.e) + k * np.log(
            np.asarray(sigma, dtype=np.float64)
        )


# ---------------------------------------------------------------------------- the optimiser
@dataclass(frozen=True)
class _Settings:
    lam: float
    n_samples: int
    learning_rate: float
    max_steps: int
    window: int
    tol: float
    seed: int
    burn_in: int = _BURN_IN
    theta0: float = INITIAL_THETA
    exact_jacobian_rounds: int = _EXACT_JACOBIAN_ROUNDS


@dataclass
class _Problem:
    """One input: embeddings, which tokens get noise, the target state and its weights."""

    x: torch.Tensor  # [T, D]
    noise_mask: torch.Tensor  # [T] bool
    target: torch.Tensor  # [F] flattened Phi(x)
    weight: torch.Tensor  # [F] 1 / r^2 per element
    seed: int
    jacobian: torch.Tensor | None = None  # [F, T, D] sqrt(weight_f) dPhi_f / dx (small F)


@dataclass
class _Track:
    """Optimisation state of one input: theta, its noise stream and the log-sigma history."""

    theta: torch.Tensor  # [T]
    generator: torch.Generator
    steps: int = 0
    burn_in: int = 0
    log_sigma: list[torch.Tensor] = field(default_factory=list)  # after the burn-in
    losses: list[float] = field(default_factory=list)  # after the burn-in
    converged: bool = False


# phi(indices, noisy [rows, T, D]) -> [rows, F]; every input gets rows / len(indices) rows
PhiRows = Callable[[list[int], torch.Tensor], torch.Tensor]


def _optimise(
    problems: Sequence[_Problem],
    phi: PhiRows,
    settings: _Settings,
    scale: float,
    max_batch_tokens: int,
) -> list[InformationResult]:
    """Fit sigma for every problem, many at a time, under a token budget.

    Problems join the active batch (longest first) while ``n_samples * rows * longest``
    stays under the budget; each leaves as soon as it converges, and waiting ones take
    its place. Every step runs the active problems in calls of similar lengths
    (:func:`_length_groups`). A problem's result never depends on which others share its
    batch.
    """
    waiting = sorted(range(len(problems)), key=lambda i: -len(problems[i].x))
    active: list[int] = []
    tracks: dict[int, _Track] = {}
    results: dict[int, InformationResult] = {}
    while waiting or active:
        joined: list[int] = []
        while waiting and (
            not active
            or _fits(problems, [*active, waiting[0]], settings.n_samples, max_batch_tokens)
        ):
            i = waiting.pop(0)
            active.append(i)
            joined.append(i)
        small = [
            i for i in joined if _rounds(problems[i], settings) <= settings.exact_jacobian_rounds
        ]
        for i in small:  # one text at a time: its start never depends on its batch
            problems[i].jacobian = _jacobian(problems[i], i, phi, settings)
        for i in joined:
            problem = problems[i]
            if problem.jacobian is not None:
                theta, burn_in = _linearised_theta(problem, settings, scale), 0
            else:
                theta, burn_in = torch.full((len(problem.x),), settings.theta0), settings.burn_in
            tracks[i] = _Track(
                theta=theta,
                generator=torch.Generator(device="cpu").manual_seed(problem.seed),
                burn_in=burn_in,
            )
        for group in _length_groups(problems, active, settings.n_samples, max_batch_tokens):
            _step(
                [problems[i] for i in group],
                [tracks[i] for i in group],
                group,
                phi,
                settings,
                scale,
            )
        for i in list(active):
            if tracks[i].converged or tracks[i].steps >= settings.max_steps:
                results[i] = _result(problems[i], tracks.pop(i), scale)
                active.remove(i)
    return [results[i] for i in range(len(problems))]


def _rounds(problem: _Problem, settings: _Settings) -> int:
    """Model calls of ``n_samples`` rows each that the exact Jacobian of ``Phi`` needs."""
    return math.ceil(len(problem.target) / settings.n_samples)


def _jacobian(problem: _Problem, index: int, phi: PhiRows, settings: _Settings) -> torch.Tensor:
    """``sqrt(w_f) dPhi_f/dx`` at the clean input, ``[F, T, D]``: one backward per element.

    The rows of one model call (at most ``n_samples``) are copies of the clean input, each
    pulled back along one element of ``Phi`` (weighted by ``sqrt(w_f)``, so that
    ``sum_f |J_f t|^2`` is the curvature of the distortion in ``sigma_t^2``).
    """
    s, n_feat = settings.n_samples, len(problem.target)
    rows: list[torch.Tensor] = []
    for start in range(0, n_feat, s):
        k = min(s, n_feat - start)  # one row per element left, at most n_samples per call
        x = problem.x[None].expand(k, -1, -1).clone().requires_grad_(True)
        with torch.enable_grad():
            out = phi([index], x)[:, :n_feat]  # [k, F]
            picks = torch.arange(start, start + k, device=out.device)
            cotangent = torch.zeros_like(out)
            cotangent[torch.arange(k, device=out.device), picks] = (
                problem.weight[picks] / n_feat
            ).sqrt()
            (grad,) = torch.autograd.grad(out, x, grad_outputs=cotangent)
        rows.append(grad.detach())
    return torch.cat(rows)


def _linearised_theta(problem: _Problem, settings: _Settings, scale: float) -> torch.Tensor:
    """theta at the optimum of the objective with ``Phi`` replaced by its linearisation.

    With ``Phi(x + eps) ~ Phi(x) + J eps`` the distortion is ``sum_t a_t sigma_t^2`` with
    ``a_t = sum_f w_f |J_ft|^2`` (``w_f`` = 1 / r_f^2 averaged over the F elements), so
    ``sigma_t^2 = lam / (2 n a_t)`` (capped, then clipped to the bound).
    """
    assert problem.jacobian is not None
    a = problem.jacobian.pow(2).sum(dim=(0, 2)).double()  # [T]
    n = max(int(problem.noise_mask.sum()), 1)
    sigma = torch.sqrt(settings.lam / (2 * n * a.clamp(min=1e-300)))
    # The linearisation only holds for small noise: a token it would send far above the
    # common starting point starts at most _MAX_MOVE (in log sigma) above it, and the
    # corrections take it further only if the model agrees.
    start = scale * torch.sigmoid(torch.tensor(settings.theta0, dtype=torch.float64))
    ratio = (sigma.clamp(max=float(start) * math.exp(_MAX_MOVE)) / scale).clamp(max=1.0)
    theta = torch.logit(ratio, eps=None).clamp(-_THETA_LIMIT, _THETA_LIMIT).float()
    theta = torch.where(ratio >= 1.0, torch.full_like(theta, _THETA_LIMIT), theta)
    return torch.where(problem.noise_mask, theta, torch.full_like(theta, settings.theta0))


def _length_groups(
    problems: Sequence[_Problem], indices: list[int], samples: int, budget: int
) -> list[list[int]]:
    """Split the active inputs into model calls of similar lengths, longest first.

    Every row of a call is padded to its longest input, and padding costs as much as real
    tokens (attention more: it grows with the square of the width). An input shares the
    current call only while it is at least ``1 - _PAD_SLACK`` times as long as the call's
    first input and the call stays under the token budget; otherwise it opens a new call.
    Each input's step depends only on its own noise, so the grouping changes nothing but
    float rounding.
    """
    lengths = [len(problems[i].x) for i in indices]
    return [
        [indices[j] for j in group]
        for group in pack_batches(lengths, budget, rows_per_item=samples, pad_slack=_PAD_SLACK)
    ]


def _fits(problems: Sequence[_Problem], indices: list[int], samples: int, budget: int) -> bool:
    longest = max(len(problems[i].x) for i in indices)
    return samples * len(indices) * longest <= budget


def _step(
    problems: list[_Problem],
    tracks: list[_Track],
    indices: list[int],
    phi: PhiRows,
    settings: _Settings,
    scale: float,
) -> None:
    """One step in log sigma for every active input (see the module docstring)."""
    n_active, s = len(problems), settings.n_samples
    width = max(len(p.x) for p in problems)
    dim = problems[0].x.shape[1]
    device = problems[0].x.device
    n_feat = max(len(p.target) for p in problems)
    x = torch.zeros(n_active, width, dim, device=device)
    mask = torch.zeros(n_active, width, dtype=torch.bool, device=device)
    theta = torch.zeros(n_active, width, device=device)
    noise = torch.zeros(n_active, s, width, dim, device=device)
    target = torch.zeros(n_active, n_feat, device=device)
    weight = torch.zeros(n_active, n_feat, device=device)
    for a, (p, t) in enumerate(zip(problems, tracks, strict=True)):
        n = len(p.x)
        x[a, :n] = p.x
        mask[a, :n] = p.noise_mask
        theta[a, :n] = t.theta
        noise[a, :, :n] = torch.randn(s, n, dim, generator=t.generator).to(device)
        target[a, : len(p.target)] = p.target
        weight[a, : len(p.weight)] = p.weight / len(p.weight)  # mean over Phi's elements
    jac_feat = max((len(p.target) for p in problems if p.jacobian is not None), default=0)
    jacobian = torch.zeros(n_active, jac_feat, width, dim, device=device) if jac_feat else None
    for a, p in enumerate(problems):
        if jacobian is not None and p.jacobian is not None:
            jacobian[a, : p.jacobian.shape[0], : p.jacobian.shape[1]] = p.jacobian
    sigma = (scale * torch.sigmoid(theta) * mask).detach().requires_grad_(True)
    with torch.enable_grad():
        eps = sigma[:, None, :, None] * noise
        noisy = x[:, None] + eps
        out = phi(indices, noisy.reshape(n_active * s, width, dim)).reshape(n_active, s, -1)
        distortion = (((out - target[:, None]) ** 2) * weight[:, None]).sum(-1).mean(1)  # [A]
        objective = distortion
        if jacobian is not None:
            # Control variate: the same draws through the linearised Phi, whose expected
            # gradient is known exactly (2 a_t sigma_t). What is left is the noise of
            # the non-linear part only, so the steps hardly fluctuate near the optimum.
            linear = torch.einsum("aftd,astd->asf", jacobian, eps)
            objective = distortion - linear.pow(2).sum(-1).mean(1)
        (grad,) = torch.autograd.grad(objective.sum(), sigma)
    if jacobian is not None:
        grad = grad + 2 * sigma.detach() * jacobian.pow(2).sum(dim=(1, 3))
    n_tokens = mask.sum(1).clamp(min=1)
    entropy_grad = (settings.lam / n_tokens)[:, None]  # d(lam * mean log sigma) / d log sigma_i
    distortion_grad = sigma.detach() * grad  # dD / d log sigma_i
    u = torch.log(sigma.detach().clamp(min=1e-30))
    burning_in = torch.tensor([t.steps < t.burn_in for t in tracks], device=device)[:, None]
    # Burn-in: jump to where a locally quadratic D would have its optimum (exact for a
    # linear Phi): u* = u + log((lam/n) / (dD/du)) / 2. Then damped Newton steps with the
    # curvature 2 lam/n that any locally quadratic D has at its optimum.
    jump = 0.5 * torch.log(entropy_grad / distortion_grad.clamp(min=1e-30))
    # A text that started at its linearised optimum only needs a correction: its steps
    # are smaller (x _CORRECTION_RATE) and shrink like 1 / (1 + t / window)
    # (Robbins-Monro), so the non-linear part's noise averages out instead of throwing
    # the iterate out of the optimum's basin.
    rate = torch.tensor(
        [
            settings.learning_rate * _CORRECTION_RATE / (1 + t.steps / settings.window)
            if p.jacobian is not None
            else settings.learning_rate
            for p, t in zip(problems, tracks, strict=True)
        ],
        device=device,
    )[:, None]
    newton = rate * (entropy_grad - distortion_grad) / (2 * entropy_grad)
    move = torch.where(burning_in, jump, newton).clamp(-_MAX_MOVE, _MAX_MOVE)
    # Back to theta through the bound: a sigma pushed past the scale sits on it exactly.
    ratio = torch.exp(u + move) / scale
    new_theta = torch.logit(ratio.clamp(max=1.0), eps=None).clamp(-_THETA_LIMIT, _THETA_LIMIT)
    new_theta = torch.where(ratio >= 1.0, torch.full_like(new_theta, _THETA_LIMIT), new_theta)
    loss = (
        distortion.detach() - settings.lam * (torch.where(mask, u, 0.0).sum(1) / n_tokens)
    ).cpu()
    for a, (p, t) in enumerate(zip(problems, tracks, strict=True)):
        n = len(p.x)
        t.theta = torch.where(p.noise_mask, new_theta[a, :n].cpu(), t.theta)
        t.steps += 1
        if t.steps > t.burn_in:
            t.log_sigma.append(u[a, :n].cpu())
            t.losses.append(float(loss[a]))
            t.converged = _converged(t, p.noise_mask, settings)


def _converged(track: _Track, mask: torch.Tensor, settings: _Settings) -> bool:
    """Every ``window`` steps: do the two halves of the second half of the history agree?

    The first half of the steps after the burn-in is discarded as transient; the second
    half is split in two and the RMS (over perturbed tokens) difference of their mean
    log sigma must be below ``tol``.
    """
    m = len(track.log_sigma)
    if m < 2 * settings.window or m % settings.window:
        return False
    if not bool(mask.any()):
        return True
    tail = torch.stack(track.log_sigma[m // 2 :])[:, mask]
    half = len(tail) // 2
    change = (tail[:half].mean(0) - tail[half:].mean(0)).pow(2).mean().sqrt()
    return bool(change < settings.tol)


def _result(problem: _Problem, track: _Track, scale: float) -> InformationResult:
    """sigma = exp(mean log sigma over the second half of the steps after the burn-in)."""
    if track.log_sigma:
        history = torch.stack(track.log_sigma)
        mean_u = history[len(history) // 2 :].mean(0)
        loss = float(np.mean(track.losses[len(track.losses) // 2 :]))
    else:  # max_steps within the burn-in
        mean_u = torch.log(scale * torch.sigmoid(track.theta))
        loss = float("nan")
    sigma = torch.where(
        problem.noise_mask, mean_u.double().exp(), torch.full_like(mean_u.double(), float("nan"))
    )
    return InformationResult(
        sigma=sigma.numpy(),
        loss=loss,
        iterations=track.steps,
        converged=track.converged,
        scale=float(scale),
        embedding_size=int(problem.x.shape[1]),
    )


# ---------------------------------------------------------------------------- any Phi
def information_loss(
    phi: Callable[[torch.Tensor], torch.Tensor],
    embeddings: torch.Tensor | Sequence[torch.Tensor],
    *,
    r: float | np.ndarray | torch.Tensor | None = None,
    noise_mask: torch.Tensor | Sequence[torch.Tensor] | None = None,
    lam: float = DEFAULT_LAM,
    scale: float | None = None,
    n_samples: int = 8,
    learning_rate: float = 0.5,
    max_steps: int = 400,
    window: int = 10,
    tol: float = 0.1,
    seed: int = 0,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
) -> list[InformationResult]:
    """Fit the information explanation of a plain function ``Phi`` of an embedding matrix.

    The model-free form of the method (the paper's generality): ``phi`` maps a batch of
    inputs ``[N, T, D]`` to anything with N rows; the result says how much of each of
    the T input vectors reaches ``phi``'s output.

    Parameters
    ----------
    phi : callable
        ``phi(x: Tensor[N, T, D]) -> Tensor[N, ...]``, differentiable.
    embeddings : Tensor ``[T, D]`` or a list of them
        The inputs (each optimised with its own sigmas and noise stream).
    r : float, array or None
        Spread of ``Phi`` (a scalar or one value per output element); None uses the
        standard deviation of all elements of ``phi`` of the given inputs.
    noise_mask : bool Tensor ``[T]`` (or a list), optional
        Which positions get noise (default all).
    scale : float or None
        Bound of sigma; None is 10 x the standard deviation of the given embeddings.
    lam, n_samples, learning_rate, max_steps, window, tol, seed, max_batch_tokens
        As for :class:`InformationLoss`.

    Returns
    -------
    list of InformationResult
        One per input, in order.
    """
    inputs = [embeddings] if isinstance(embeddings, torch.Tensor) else list(embeddings)
    if not inputs or any(not isinstance(x, torch.Tensor) or x.dim() != 2 for x in inputs):
        raise InvalidInputError("embeddings must be a [T, D] tensor or a non-empty list of them.")
    inputs = [x.detach().float() for x in inputs]
    masks = _masks(noise_mask, inputs)
    with torch.no_grad():
        targets = [phi(x[None]).reshape(-1).float() for x in inputs]
    if r is None:
        r = float(torch.cat(targets).std()) if sum(len(t) for t in targets) > 1 else 1.0
    weights = []
    for t in targets:
        spread = torch.as_tensor(r, dtype=torch.float32).reshape(-1)
        if spread.numel() not in (1, t.numel()) or bool((spread <= 0).any()):
            raise InvalidParameterError(
                f"r must be a positive scalar or have one value per element of phi's output "
                f"({t.numel()}); got {spread.numel()} values."
            )
        weights.append((1.0 / spread**2).expand(t.numel()).clone())
    if scale is None:
        scale = DEFAULT_SCALE_FACTOR * float(torch.cat([x.reshape(-1) for x in inputs]).std())
    problems = [
        _Problem(x=x, noise_mask=m, target=t, weight=w, seed=_text_seed(seed, [i, *x.shape]))
        for i, (x, m, t, w) in enumerate(zip(inputs, masks, targets, weights, strict=True))
    ]

    def phi_rows(indices: list[int], noisy: torch.Tensor) -> torch.Tensor:
        rows = noisy.reshape(len(indices), -1, *noisy.shape[1:])
        outs = [
            phi(rows[a, :, : len(inputs[i])]).reshape(rows.shape[1], -1)
            for a, i in enumerate(indices)
        ]
        width = max(o.shape[1] for o in outs)
        return torch.cat([torch.nn.functional.pad(o, (0, width - o.shape[1])) for o in outs])

    settings = _Settings(lam, n_samples, learning_rate, max_steps, window, tol, seed)
    return _optimise(problems, phi_rows, settings, float(scale), max_batch_tokens)


def _masks(
    noise_mask: torch.Tensor | Sequence[torch.Tensor] | None, inputs: list[torch.Tensor]
) -> list[torch.Tensor]:
    if noise_mask is None:
        return [torch.ones(len(x), dtype=torch.bool) for x in inputs]
    masks = [noise_mask] if isinstance(noise_mask, torch.Tensor) else list(noise_mask)
    if len(masks) != len(inputs) or any(
        m.shape != (len(x),) for m, x in zip(masks, inputs, strict=False)
    ):
        raise InvalidInputError(
            "noise_mask must hold one bool per input position, for every input."
        )
    return [m.bool() for m in masks]


def _text_seed(seed: int, ids: Sequence[int]) -> int:
    """A noise seed that depends on the seed and the text only (not on its batch)."""
    digest = hashlib.sha256(f"{seed}|{','.join(map(str, ids))}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# ---------------------------------------------------------------------------- Phi of a model
class _StopForward(Exception):
    """Raised by a forward hook once the wanted layer has run."""


class ModelState:
    """The hidden state ``Phi`` of a model that an information explanation is about.

    Parameters
    ----------
    model : ModelAdapter
        The model.
    layer : int, 'pooled' or 'logits'
        An int ``1..num_layers`` is the output of that transformer layer (the model's
        ``hidden_states[layer]``); 'pooled' is the vector the classifier's last linear
        layer reads (BERT's pooler output); 'logits' are all the logits.
    positions : {'all', 'cls'}
        For a layer: every position of the layer output, or the first ([CLS]) one.
    """

    def __init__(self, model: ModelAdapter, layer: int | str, positions: str = "all"):
        check_layer(model, layer, owner="ModelState")
        self.model = model
        self.layer = layer
        self.positions = positions if isinstance(layer, int) else "cls"
        self._layers = _layer_modules(model) if isinstance(layer, int) else None
        self._head = _last_linear(model) if layer == "pooled" else None

    @property
    def key(self) -> str:
        """A short name: 'layer3_all', 'layer3_cls', 'pooled' or 'logits'."""
        return (
            f"layer{self.layer}_{self.positions}"
            if isinstance(self.layer, int)
            else str(self.layer)
        )

    def describe(self) -> str:
        if isinstance(self.layer, int):
            where = "all positions" if self.positions == "all" else "[CLS] position"
            return f"output of layer {self.layer} of {self.model.num_layers} ({where})"
        return "pooled output" if self.layer == "pooled" else "logits"

    def __call__(self, batch: Encoding, embeds: torch.Tensor, repeat: int = 1) -> torch.Tensor:
        """``Phi`` of ``embeds``: ``[rows, P, F]``.

        ``embeds`` are word embeddings, ``repeat`` rows per text of ``batch``.
        """
        if self.layer == "logits":
            return self.model.logits(batch, inputs_embeds=embeds, repeat=repeat).float()[:, None, :]
        captured: list[torch.Tensor] = []
        if self.layer == "pooled":
            assert self._head is not None
            handle = self._head.register_forward_hook(lambda _m, args, _o: captured.append(args[0]))
            try:
                self.model.forward(batch, inputs_embeds=embeds, repeat=repeat)
            finally:
                handle.remove()
            pooled = captured[0].float()
            if pooled.dim() == 3:  # a decoder's head runs on every position: read its own
                pooled = _at_reader(self.model, pooled, batch, repeat)[:, 0]
            return pooled[:, None, :]
        assert isinstance(self.layer, int)
        if self._layers is None:  # no layer list found: run the whole model
            out = self.model.forward(
                batch, inputs_embeds=embeds, repeat=repeat, output_hidden_states=True
            )
            states = out.hidden_states[self.layer]
        else:
            handle = self._layers[self.layer - 1].register_forward_hook(_capture_and_stop(captured))
            try:
                self.model.forward(batch, inputs_embeds=embeds, repeat=repeat)
            except _StopForward:
                pass
            finally:
                handle.remove()
            if not captured:  # that list was not the model's layers after all
                self._layers = None
                return self(batch, embeds, repeat)
            states = captured[0]
        states = states.float()
        if self.positions == "all" and states.shape[1] != embeds.shape[1]:
            raise _pooled_positions_error(self.model, self.layer)
        return _at_reader(self.model, states, batch, repeat) if self.positions == "cls" else states


def _at_reader(
    model: ModelAdapter, states: torch.Tensor, batch: Encoding, repeat: int = 1
) -> torch.Tensor:
    """``states [rows, len, F]`` where the classifier reads them: ``[rows, 1, F]``.

    Position 0 ([CLS]) for most encoders, the last real token for decoder classifiers,
    the mean over real tokens for mean-pooling ones (see ``ModelAdapter.reader_weights``).
    """
    if not (model.pools_last_token or model.pools_mean):
        return states[:, :1]
    mask = (
        batch.attention_mask.repeat_interleave(repeat, dim=0)
        if repeat > 1
        else batch.attention_mask
    )
    weights = model.reader_weights(mask).to(device=states.device, dtype=states.dtype)
    return torch.einsum("bl,blf->bf", weights, states)[:, None, :]


def _capture_and_stop(captured: list[torch.Tensor]) -> Callable[..., None]:
    def hook(_module: torch.nn.Module, _args: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    return hook


def _layer_modules(model: ModelAdapter) -> torch.nn.ModuleList | None:
    """The list of transformer layers (to stop the forward pass early), if there is one."""
    n = model.num_layers
    containers = (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Sequential)
    for module in model.model.modules():
        if (
            isinstance(module, torch.nn.ModuleList)
            and len(module) == n
            and not any(isinstance(child, containers) for child in module)  # blocks of layers
        ):
            return module
    return None


def _last_linear(model: ModelAdapter) -> torch.nn.Linear:
    """The classifier's final linear layer (its input is the pooled representation)."""
    found = None
    for module in model.model.modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == model.num_labels:
            found = module
    if found is None:
        raise InvalidParameterError(
            f"Could not find the final linear layer of {model.model_id}; use layer='logits' "
            "or a layer number instead of 'pooled'."
        )
    return found


def check_layer(model: ModelAdapter, layer: Any, owner: str = "InformationLoss") -> None:
    """Raise :class:`InvalidParameterError` unless ``layer`` names a state of ``model``."""
    n = model.num_layers
    valid = isinstance(layer, int) and not isinstance(layer, bool) and 1 <= layer <= n
    if not (valid or layer in NAMED_STATES):
        raise InvalidParameterError(
            f"The 'layer' parameter of {owner} must be an int in [1, {n}] ({model.model_id} "
            f"has {n} layers; 1 is the first, {n} the last), 'pooled' or 'logits'. Got {layer!r}."
        )


# ---------------------------------------------------------------------------- regularisation r
CACHE_DIR_ENV = "TEXTLENS_CACHE_DIR"
# 2: "_cls" spreads are where the classifier reads (last token of decoders, mean of
# mean-pooling classifiers), no longer always position 0.
_CACHE_VERSION = 2
_SAMPLE_RESOURCE = "data/default_sample.txt"


def default_sample() -> list[str]:
    """The bundled sample of neutral English sentences used to compute ``r``."""
    from importlib.resources import files

    text = files("textlens").joinpath(_SAMPLE_RESOURCE).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def default_cache_dir() -> Path:
    """``$TEXTLENS_CACHE_DIR/information`` or the per-user cache folder of textlens."""
    import platformdirs

    root = os.environ.get(CACHE_DIR_ENV) or platformdirs.user_cache_dir("textlens")
    return Path(root).expanduser() / "information"


def state_spread(
    model: ModelAdapter,
    state: ModelState,
    *,
    sample_texts: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
) -> np.ndarray:
    """The regularisation ``r``: the standard deviation of each feature of ``Phi`` over a sample.

    Computed for every state of the model at once (all layers, both position modes,
    pooled output and logits) and cached on disk, keyed by a fingerprint of the model's
    weights and the sample, so later calls for any layer only read a file.

    Parameters
    ----------
    model : ModelAdapter
    state : ModelState
        Which ``Phi``.
    sample_texts : list of str, optional
        The sample; defaults to the bundled neutral sentences (:func:`default_sample`).
    cache_dir : str or Path, optional
        Cache folder; defaults to :func:`default_cache_dir`.
    use_cache : bool
        Read and write the cache (default) or always recompute.

    Returns
    -------
    numpy.ndarray
        ``[features]``: one standard deviation per feature (hidden unit or logit),
        shared by all positions; floored at 1e-3 of their mean so no feature divides by 0.
    """
    texts = list(sample_texts) if sample_texts is not None else default_sample()
    if len(texts) < 2:
        raise InvalidParameterError(
            f"The sample used to compute r needs at least 2 texts; got {len(texts)}. Pass more "
            "sample_texts or None for the bundled sample."
        )
    path = None
    if use_cache:  # the key sums every weight once per model: not worth it uncached
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        path = folder / f"{_cache_key(model, texts)}.npz"
        if path.is_file():
            with np.load(path) as cached:
                if state.key in cached.files:
                    return np.asarray(cached[state.key], dtype=np.float64)
    spreads = _compute_spreads(model, texts, max_batch_tokens)
    if path is not None:
        _write_atomically(path, spreads)
    if state.key not in spreads:
        raise _pooled_positions_error(model, state.layer)
    return spreads[state.key]


def _pooled_positions_error(model: ModelAdapter, layer: Any) -> InvalidParameterError:
    kind = getattr(model.model.config, "model_type", "this kind of model")
    return InvalidParameterError(
        f"The output of layer {layer} of {model.model_id} ({kind}) has fewer positions than "
        "the input has tokens (the model pools its sequence between layers), so noise on "
        "each token cannot be compared with each output position. Use positions='cls', or "
        "layer='pooled' or 'logits'."
    )


def _cache_key(model: ModelAdapter, texts: Sequence[str]) -> str:
    """The cache file's name: a fingerprint of the model, its weights and the sample.

    Summing every weight takes ~0.2 s on MiniLM (more on larger models), so it is
    remembered for the adapter until the weights change (a server pays it once).
    """
    key = ("information-cache-key", model.max_length, tuple(texts))
    return str(model.memoized(key, lambda: _fingerprint(model, texts)))


def _fingerprint(model: ModelAdapter, texts: Sequence[str]) -> str:
    h = hashlib.sha256(f"textlens-information-r-v{_CACHE_VERSION}".encode())
    h.update(str(model.model.config.to_json_string()).encode())
    h.update(f"max_length={model.max_length}".encode())
    with torch.no_grad():
        for name, parameter in model.model.named_parameters():
            values = parameter.detach().double()
            h.update(
                f"{name}{tuple(parameter.shape)}{values.sum():.6e}{values.abs().sum():.6e}".encode()
            )
    for text in texts:
        h.update(text.encode() + b"\0")
    return h.hexdigest()[:24]


def _compute_spreads(
    model: ModelAdapter, texts: Sequence[str], max_batch_tokens: int
) -> dict[str, np.ndarray]:
    sums: dict[str, list[torch.Tensor]] = {}

    def add(key: str, rows: torch.Tensor) -> None:
        rows = rows.double()
        total = sums.setdefault(
            key, [torch.zeros(rows.shape[-1], dtype=torch.float64)] * 2 + [torch.zeros(())]
        )
        sums[key] = [total[0] + rows.sum(0), total[1] + (rows**2).sum(0), total[2] + rows.shape[0]]

    try:
        head: torch.nn.Linear | None = _last_linear(model)
    except InvalidParameterError:
        head = None
    encoding = model.encode(texts)
    for _, batch in model.iter_batches(encoding, max_batch_tokens):
        pooled: list[torch.Tensor] = []
        handle = (
            head.register_forward_hook(lambda _m, a, _o, into=pooled: into.append(a[0]))
            if head
            else None
        )
        try:
            with torch.no_grad():
                out = model.forward(batch, output_hidden_states=True)
        finally:
            if handle is not None:
                handle.remove()
        real = batch.attention_mask.bool().to(out.logits.device)
        hidden = getattr(out, "hidden_states", None) or ()  # none where textlens reads none
        for layer in range(1, min(model.num_layers + 1, len(hidden))):
            states = hidden[layer].float()
            if states.shape[1] == real.shape[1]:  # not where a model pools its sequence
                add(f"layer{layer}_all", states[real])
            add(f"layer{layer}_cls", _at_reader(model, states, batch)[:, 0])
        add("logits", out.logits.float())
        if pooled:
            vectors = pooled[0].float()
            if vectors.dim() == 3:  # a decoder's head runs on every position
                vectors = _at_reader(model, vectors, batch)[:, 0]
            add("pooled", vectors)
    spreads = {}
    for key, (total, squares, count) in sums.items():
        mean = total / count
        std = (
            (squares / count - mean**2).clamp(min=0.0) * count / max(float(count) - 1, 1.0)
        ).sqrt()
        floor = 1e-3 * float(std.mean()) if float(std.mean()) > 0 else 1e-6
        spreads[key] = std.clamp(min=floor).cpu().numpy()
    return spreads


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            # numpy's stub: mypy checks **arrays against savez's `allow_pickle: bool` too
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache must not stop an explanation
        warnings.warn(
            f"Could not cache the regularisation in {path}: {exc}", RuntimeWarning, stacklevel=3
        )


# ---------------------------------------------------------------------------- the explainer
class InformationLoss(Explainer):
    """How much of each token's information reaches a hidden state (Guan et al., ICML 2019).

    Learns the largest Gaussian noise each token's word embedding can take before the
    chosen hidden state ``Phi`` changes (see the module docstring for the objective).
    Scores are ``log(scale / sigma_i)`` — the information a token keeps, in nats per
    embedding dimension relative to the maximal noise: 0 for a token ``Phi`` ignores,
    larger for tokens ``Phi`` depends on. They add up over a word's sub-word tokens
    like the information loss itself (independent noise: entropies add). Every
    explanation's ``quality`` holds ``sigma``, the information loss ``H`` (nats),
    the final ``loss``, ``iterations`` and ``converged``. Scores explain a hidden state,
    not one class, so they are the same for every target (``target_independent``).

    Parameters
    ----------
    layer : int, 'pooled' or 'logits'
        The hidden state: the output of layer ``1..num_layers``, the pooled output, or
        the logits (default).
    positions : {'all', 'cls'}
        For a layer: all positions of its output, or the [CLS] position only.
    lam : float
        lambda, the weight of the entropy term. Here the distortion is averaged over the
        elements of ``Phi`` and the entropy over the perturbed tokens, so one value suits
        any state and length: the paper's lambda for a text of n tokens and a state of
        M elements is ``lam * M / n``. Larger gives more noise to every token.
    scale : float or None
        Upper bound of sigma; None means 10 x the standard deviation of the model's
        word-embedding weights (the paper's recommendation).
    n_samples : int
        Noise draws averaged in every step.
    learning_rate : float
        Damping of the Newton step in log sigma (1 = the full step).
    max_steps : int
        Upper bound on steps per text; a text that reaches it reports ``converged: False``.
    window : int
        Steps per convergence window; the result is the mean of log sigma over the last one.
    tol : float
        Stop when the window means of log sigma of two consecutive windows differ by less
        than this for every token.
    seed : int
        Seed of the noise; each text's stream depends only on the seed and its tokens.
    special_tokens : {'fixed', 'perturb'}
        'fixed' (default): special tokens ([CLS], [SEP]) get no noise and score 0;
        'perturb': they get their own sigma like any token.
    sample_texts : list of str or None
        Texts over which ``r`` (the spread of ``Phi``) is computed; None uses the bundled
        neutral sample.
    cache_dir : str or None
        Where ``r`` is cached; None uses the user cache folder.
    use_cache : bool
        Cache ``r`` on disk (default).
    precision : {'float32', 'bfloat16'}
        Arithmetic of the model calls of the fit (the clean state, the Jacobian and every
        noisy step); ``r`` is always computed in float32. 'bfloat16' (autocast) makes a
        layer's fit about 1.7x faster on CPUs with native bfloat16 and on GPUs, with the
        same sigma ranking (``benchmarks/bench_information.py``). For 'logits' and
        'pooled' it warns: the small changes of a few outputs that the fit weighs drown
        in bfloat16 rounding.
    """

    # sigma is optimised iteratively with a stopping rule, so float32 round-off from
    # padding and from how rows are split into model calls moves the result by up to
    # ~2e-3 of its scale (the ranking is unchanged; the common test checks both).
    batch_rtol = 5e-3

    needs: ClassVar[frozenset[str]] = frozenset({"embeddings"})  # and a layer's hidden states
    name = "information"
    description = (
        "Information each token keeps in a hidden state (Guan et al. 2019), fast batched fit."
    )
    reference = "https://proceedings.mlr.press/v97/guan19a.html"
    parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "layer": [InstanceOf(int, "an int (a layer, from 1)"), Options(NAMED_STATES)],
        "positions": [Options(POSITIONS)],
        "lam": [Interval(float, 0, None, low_open=True)],
        "scale": [IsNone(), Interval(float, 0, None, low_open=True)],
        "n_samples": [Interval(int, 1, None)],
        "learning_rate": [Interval(float, 0, 1, low_open=True)],
        "max_steps": [Interval(int, 1, None)],
        "window": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None, low_open=True)],
        "seed": [Interval(int, 0, None)],
        "special_tokens": [Options(SPECIAL_TOKENS)],
        "sample_texts": [
            IsNone(),
            InstanceOf(list, "a list of texts"),
            InstanceOf(tuple, "a tuple of texts"),
        ],
        "cache_dir": [
            IsNone(),
            InstanceOf(str, "a folder path"),
            InstanceOf(Path, "a folder path"),
        ],
        "use_cache": [Options((True, False))],
        "precision": [Options(PRECISIONS)],
    }

    def __init__(
        self,
        model: ModelAdapter,
        *,
        layer: int | str = "logits",
        positions: str = "all",
        lam: float = DEFAULT_LAM,
        scale: float | None = None,
        n_samples: int = 8,
        learning_rate: float = 0.5,
        max_steps: int = 400,
        window: int = 10,
        tol: float = 0.1,
        seed: int = 0,
        special_tokens: str = "fixed",
        sample_texts: Sequence[str] | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        precision: str = "float32",
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ):
        super().__init__(model, max_batch_tokens=max_batch_tokens)
        if isinstance(layer, int) and "hidden_states" not in getattr(
            model, "internals", {"hidden_states"}
        ):
            raise InvalidParameterError(
                f"information on layer {layer} reads hidden states, which textlens does not "
                f"read for {model.model_id} (an encoder-decoder classifier); use "
                "layer='logits' or 'pooled'."
            )
        self.layer = layer
        self.positions = positions
        self.lam = lam
        self.scale = scale
        self.n_samples = n_samples
        self.learning_rate = learning_rate
        self.max_steps = max_steps
        self.window = window
        self.tol = tol
        self.seed = seed
        self.special_tokens = special_tokens
        self.sample_texts = sample_texts
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.precision = precision
        self._validate()
        check_layer(model, layer)
        if precision == "bfloat16" and not isinstance(layer, int):
            warnings.warn(
                f"precision='bfloat16' with layer={layer!r}: the changes of the {layer} that "
                "the fit weighs can be as small as bfloat16 rounding, so sigma comes out "
                "noisier and the fit may not converge (on the tiny test model it missed the "
                "decisive word on 2 of 20 texts; float32 on none). Use it for layer outputs, "
                "or keep precision='float32' here.",
                UserWarning,
                stacklevel=2,
            )
        self.state = ModelState(model, layer, positions)

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        if not isinstance(self.layer, int):
            del params["positions"]
        texts = self.sample_texts
        params["sample_texts"] = (
            None if texts is None else {"count": len(texts), "sha256": _texts_digest(texts)}
        )
        params["cache_dir"] = None if self.cache_dir is None else str(self.cache_dir)
        return params

    @property
    def effective_scale(self) -> float:
        """The bound of sigma: ``scale``, or 10 x the std of the word-embedding weights."""
        if self.scale is not None:
            return float(self.scale)
        return DEFAULT_SCALE_FACTOR * float(self.model.embedding_matrix.detach().float().std())

    def spread(self) -> np.ndarray:
        """``r`` for this explainer's state (from the cache when possible)."""
        return state_spread(
            self.model,
            self.state,
            sample_texts=self.sample_texts,
            cache_dir=self.cache_dir,
            use_cache=self.use_cache,
            max_batch_tokens=self.max_batch_tokens,
        )

    def fit(self, encoding: Encoding) -> list[InformationResult]:
        """Fit the noise of every text of ``encoding`` (all batched together)."""
        r = torch.as_tensor(self.spread(), dtype=torch.float32, device=self.model.device)
        with self.model.autocast(self.precision):
            return self._fit(encoding, r)

    def _fit(self, encoding: Encoding, r: torch.Tensor) -> list[InformationResult]:
        with torch.no_grad():
            clean = self._clean_states(encoding)
        problems = []
        for i in range(len(encoding)):
            n = encoding.lengths[i]
            ids = encoding.input_ids[i, :n]
            special = torch.tensor(encoding.special[i], dtype=torch.bool)
            noise_mask = (
                ~special if self.special_tokens == "fixed" else torch.ones(n, dtype=torch.bool)
            )
            target = clean[i]
            weight = (1.0 / r**2).repeat(target.shape[0])
            problems.append(
                _Problem(
                    x=self.model.word_embeddings(ids).detach().float(),
                    noise_mask=noise_mask.to(self.model.device),
                    target=target.reshape(-1),
                    weight=weight,
                    seed=_text_seed(self.seed, ids.tolist()),
                )
            )
        cache: dict[tuple[int, ...], Encoding] = {}

        def phi(indices: list[int], noisy: torch.Tensor) -> torch.Tensor:
            key = tuple(indices)
            if key not in cache:
                if len(cache) >= 64:  # one entry per group of similar lengths
                    cache.clear()
                cache[key] = encoding.select(indices)
            out = self.state(cache[key], noisy, repeat=len(noisy) // len(indices))
            return out.reshape(out.shape[0], -1)

        return _optimise(
            problems, phi, self._settings(), self.effective_scale, self.max_batch_tokens
        )

    def _settings(self) -> _Settings:
        return _Settings(
            lam=self.lam,
            n_samples=self.n_samples,
            learning_rate=self.learning_rate,
            max_steps=self.max_steps,
            window=self.window,
            tol=self.tol,
            seed=self.seed,
        )

    def _clean_states(self, encoding: Encoding) -> list[torch.Tensor]:
        """``Phi(x)`` of every text without noise: ``[P_i, F]`` each (own length)."""
        states: list[torch.Tensor | None] = [None] * len(encoding)
        for indices, batch in self.model.iter_batches(encoding, self.max_batch_tokens):
            out = self.state(batch, self.model.word_embeddings(batch.input_ids))
            for row, i in enumerate(indices):
                n = (
                    encoding.lengths[i]
                    if self.state.positions == "all" and isinstance(self.layer, int)
                    else 1
                )
                states[i] = out[row, :n].float()
        return [s for s in states if s is not None]

    def _score_encoding(self, encoding: Encoding, targets: list[int]) -> list[Scores]:
        fits = self.fit(encoding)
        return [self._scores(fit) for fit in fits]

    def _scores(self, fit: InformationResult) -> Scores:
        quality = {
            "sigma": _nan_to_none(fit.sigma),
            "information_loss": _nan_to_none(fit.information_loss),
            "loss": fit.loss,
            "iterations": fit.iterations,
            "converged": fit.converged,
            "scale": fit.scale,
            "state": self.state.describe(),
            "target_independent": True,
        }
        return Scores(fit.scores, quality)


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(float(v)) else float(v) for v in values]


def _texts_digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode() + b"\0")
    return h.hexdigest()[:16]
