"""What occlusion, LIME and SHAP share: features, masking, the engine and the results.

A perturbation explainer turns each text into a coalition game over its features
(:mod:`textlens.features`), asks for the coalitions it wants (its *design*), lets the
:class:`~.engine.Engine` evaluate the designs of all texts together, and turns the
values into one score per feature. The feature scores are spread evenly over the
feature's tokens (so word-level aggregation gives back the feature score) and are
also kept, with their standard errors and character spans, in
``quality["features"]``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..._validation import Constraint, Interval, IsNone, Options
from ...features import GROUPINGS, Grouping, feature_spans, make_grouping
from ...model import Encoding, ModelAdapter, check_cancelled
from ..base import Explainer, Scores
from .engine import DEFAULT_BATCH_TOKENS, MASKINGS, OUTPUTS, PRECISIONS, Engine, TextGame, make_game

__all__ = ["FeatureScores", "PerturbationExplainer"]


class _IsGrouping(Constraint):
    def accepts(self, value: Any) -> bool:
        return isinstance(value, Grouping)

    def describe(self) -> str:
        return "a textlens.features.Grouping"


class _IsCallable(Constraint):
    def accepts(self, value: Any) -> bool:
        return callable(value) and not isinstance(value, type)

    def describe(self) -> str:
        return "a callable progress(done, total)"


@dataclass
class FeatureScores:
    """A method's answer for one text, per feature."""

    values: np.ndarray
    stderr: np.ndarray | None = None
    quality: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Plan:
    game: TextGame
    coalitions: np.ndarray
    state: Any


class PerturbationExplainer(Explainer):
    """Base class of the perturbation methods (see the module docstring).

    Parameters
    ----------
    model : ModelAdapter
    features : {'word', 'token', 'span', 'sentence'} or Grouping
        What is switched on and off together (see :mod:`textlens.features`).
    span_size : int
        Words per feature when ``features='span'``.
    masking : {'mask', 'pad', 'delete'}
        How a feature is removed: its tokens replaced by the mask token (one per
        sub-token) or the pad token, or deleted (shorter input).
    output : {'probability', 'logit'}
        The explained scalar: the target class's probability or its logit.
    progress : bool or callable
        Show a progress bar of model evaluations (stderr), or call
        ``progress(done, total)``. Not recorded in the results.
    max_batch_tokens : int
        Upper bound on ``rows x padded length`` of a batch: bounds memory.
    precision : {'float32', 'bfloat16'}
        Arithmetic of the model evaluations: 'bfloat16' (autocast) halves their cost on
        CPUs with native bfloat16 (AVX512-BF16, AMX) and on GPUs, at a small change of
        the outputs; slower on CPUs without it. See :mod:`.engine`.
    """

    needs: ClassVar[frozenset[str]] = frozenset()  # the model's outputs only
    parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "features": [Options(GROUPINGS), _IsGrouping()],
        "span_size": [Interval(int, 1, None)],
        "masking": [Options(MASKINGS)],
        "output": [Options(OUTPUTS)],
        "progress": [Options((True, False)), _IsCallable()],
        "precision": [Options(PRECISIONS)],
    }
    _NOT_RECORDED: ClassVar[tuple[str, ...]] = ("progress",)

    def __init__(
        self,
        model: ModelAdapter,
        *,
        features: str | Grouping = "word",
        span_size: int = 4,
        masking: str = "mask",
        output: str = "probability",
        progress: bool | Callable[[int, int], None] = False,
        max_batch_tokens: int = DEFAULT_BATCH_TOKENS,
        precision: str = "float32",
    ):
        super().__init__(model, max_batch_tokens=max_batch_tokens)
        self.precision = precision
        self.features = features
        self.span_size = span_size
        self.masking = masking
        self.output = output
        self.progress = progress
        self._engine: Engine | None = None

    # ------------------------------------------------------------------ parameters
    def get_params(self) -> dict[str, Any]:
        params = {k: v for k, v in super().get_params().items() if k not in self._NOT_RECORDED}
        if isinstance(self.features, Grouping):
            params["features"] = self.features.to_param()
        if params.get("features") != "span":
            params.pop("span_size", None)
        return params

    @property
    def engine(self) -> Engine:
        """The evaluation engine (created on first use; its cache lives with the explainer)."""
        if self._engine is None:
            self._engine = Engine(
                self.model,
                masking=self.masking,
                output=self.output,
                max_batch_tokens=self.max_batch_tokens,
                precision=self.precision,
            )
        return self._engine

    # ------------------------------------------------------------------ the method's part
    def _design(self, game: TextGame, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        """Coalitions to evaluate for ``game`` (bool ``[m, n_features]``) and any state."""
        raise NotImplementedError

    def _estimate(
        self, game: TextGame, coalitions: np.ndarray, values: np.ndarray, state: Any
    ) -> FeatureScores:
        """Feature scores from the values of the design's coalitions."""
        raise NotImplementedError

    def _seed_for(self, game: TextGame) -> int | None:
        return None

    # ------------------------------------------------------------------ the shared part
    def _games(self, encoding: Encoding, targets: list[int]) -> tuple[list[TextGame], list[Any]]:
        grouping = make_grouping(self.features, self.span_size)
        spans = [feature_spans(encoding, i, grouping) for i in range(len(encoding))]
        tag = f"{self.masking}|{grouping.to_param()}"
        games = [
            make_game(encoding, i, [s.tokens for s in spans[i]], targets[i], tag)
            for i in range(len(encoding))
        ]
        return games, spans

    def _know_prediction(self, encoding: Encoding, logits: np.ndarray) -> None:
        # the full coalition is the unchanged text: the prediction's logits are its value
        # (a game's cache key does not depend on the target)
        games, _ = self._games(encoding, [0] * len(encoding))
        for game, row in zip(games, logits, strict=True):
            self.engine.remember(game, row)

    def _score_encoding(self, encoding: Encoding, targets: list[int]) -> list[Scores]:
        games, spans = self._games(encoding, targets)
        plans = []
        for game in games:
            rng = np.random.default_rng(self._seed_sequence(game))
            coalitions, state = self._design(game, rng)
            plans.append(_Plan(game, coalitions, state))
        engine = self.engine
        engine.progress = self._progress_callback()
        try:
            values = engine.evaluate([(p.game, p.coalitions) for p in plans])
        finally:
            engine.progress = None
            self._close_progress()
        results = []
        for plan, text_spans, v in zip(plans, spans, values, strict=True):
            check_cancelled()  # a fit can take as long as a model pass (512 tokens: ~0.7 s)
            scores = self._estimate(plan.game, plan.coalitions, v, plan.state)
            results.append(self._to_scores(encoding, plan, text_spans, scores))
        return results

    def _seed_sequence(self, game: TextGame) -> list[int]:
        seed = self._seed_for(game)
        return [0 if seed is None else int(seed), game.seed_key]

    def _to_scores(
        self, encoding: Encoding, plan: _Plan, spans: list[Any], scores: FeatureScores
    ) -> Scores:
        n_tokens = plan.game.n_tokens
        token_values = np.zeros(n_tokens)
        token_stderr = None if scores.stderr is None else np.zeros(n_tokens)
        features = []
        for f, span in enumerate(spans):
            share = len(span.tokens)
            token_values[list(span.tokens)] = scores.values[f] / share
            entry: dict[str, Any] = {
                "text": span.text,
                "start": span.start,
                "end": span.end,
                "tokens": list(span.tokens),
                "score": float(scores.values[f]),
            }
            if scores.stderr is not None and token_stderr is not None:
                token_stderr[list(span.tokens)] = scores.stderr[f] / share
                entry["stderr"] = float(scores.stderr[f])
            features.append(entry)
        quality = {"features": features, "n_features": len(spans)}
        quality.update(scores.quality)
        if not spans:
            quality["note"] = (
                "The text has no features to perturb (only special tokens): every score is 0."
            )
        return Scores(token_values, quality, token_stderr)

    # ------------------------------------------------------------------ progress
    def _progress_callback(self) -> Callable[[int, int], None] | None:
        if callable(self.progress):
            return self.progress
        if not self.progress:
            return None
        self._bar: Any = None

        def update(done: int, total: int) -> None:
            if self._bar is None:
                from tqdm.auto import tqdm

                self._bar = tqdm(
                    total=total,
                    desc=self.name,
                    unit="eval",
                    file=sys.stderr,
                    leave=False,
                    dynamic_ncols=True,
                )
            self._bar.n = done
            self._bar.refresh()

        return update

    def _close_progress(self) -> None:
        bar = getattr(self, "_bar", None)
        if bar is not None:
            bar.close()
            self._bar = None


class SampledExplainer(PerturbationExplainer):
    """A perturbation explainer with a budget of model evaluations and a seed.

    Parameters
    ----------
    budget : int
        Most distinct model evaluations per text (the full and empty coalitions
        included). Duplicates and cached inputs are free.
    seed : int or None
        Seed of the sampling: the same seed gives bit-identical results. None draws a
        fresh seed, recorded in ``quality['seed']``.
    """

    parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "budget": [Interval(int, 2, None)],
        "seed": [IsNone(), Interval(int, 0, None)],
    }

    def _seed_for(self, game: TextGame) -> int | None:
        return self._effective_seed

    def _score_encoding(self, encoding: Encoding, targets: list[int]) -> list[Scores]:
        seed = getattr(self, "seed", None)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(2, np.uint64)[0] >> np.uint64(1))
        self._effective_seed = seed
        results = super()._score_encoding(encoding, targets)
        for scores in results:
            scores.quality["seed"] = seed
        return results
