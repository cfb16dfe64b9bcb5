"""Occlusion: how much the output drops when a feature (or a window of them) is removed.

Zeiler & Fergus 2014 (https://arxiv.org/abs/1311.2901), applied to text features: the
score of feature ``i`` is ``v(all) - v(all without i)``. With ``window = w > 1``, every
run of ``w`` consecutive features is removed in turn and each feature gets the mean
drop over the windows that contain it (as captum's ``Occlusion`` does). Deterministic;
``n - w + 2`` model evaluations per text.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..._validation import Constraint, Interval
from ...features import Grouping
from ...model import ModelAdapter
from .base import FeatureScores, PerturbationExplainer
from .engine import DEFAULT_BATCH_TOKENS, TextGame

__all__ = ["Occlusion"]


class Occlusion(PerturbationExplainer):
    """Drop in the explained output when each feature (window of features) is masked.

    Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901.

    Parameters
    ----------
    model : ModelAdapter
    window : int
        Number of consecutive features removed together (1: leave-one-out).
    features, span_size, masking, output, progress, max_batch_tokens, precision
        See :class:`~textlens.explainers.perturbation.base.PerturbationExplainer`.

    Notes
    -----
    ``quality`` holds ``features`` (text, span, score), ``f_full`` and ``evaluations``.
    """

    name = "occlusion"
    description = (
        "Drop in target probability (or logit) when each word, or window of words, is masked."
    )
    reference = "https://arxiv.org/abs/1311.2901"
    parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "window": [Interval(int, 1, None)],
    }

    def __init__(
        self,
        model: ModelAdapter,
        *,
        window: int = 1,
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
        self.window = window
        self._validate()

    def _design(self, game: TextGame, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        n = game.n_features
        width = min(self.window, max(n, 1))
        starts = range(max(n - width + 1, 0))
        rows = np.ones((1 + len(starts), n), dtype=bool)
        for r, start in enumerate(starts, start=1):
            rows[r, start : start + width] = False
        return rows, width

    def _estimate(
        self, game: TextGame, coalitions: np.ndarray, values: np.ndarray, state: Any
    ) -> FeatureScores:
        n = game.n_features
        drops = values[0] - values[1:]
        removed = ~coalitions[1:]
        counts = removed.sum(axis=0)
        totals = removed.T.astype(np.float64) @ drops if n else np.zeros(0)
        scores = np.divide(totals, counts, out=np.zeros(n), where=counts > 0)
        quality = {"f_full": float(values[0]), "evaluations": len(coalitions)}
        return FeatureScores(scores, None, quality)
