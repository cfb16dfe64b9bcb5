"""The shared explain() loop: batching, target resolution and result building live here once.

A method subclasses :class:`Explainer`, declares its parameters and their constraints,
and writes only its scoring step, ``_score(batch, targets) -> list[Scores]``. A method
that runs the model on the unchanged texts anyway sets ``predicts_while_scoring`` and
writes ``_score_predicting(batch, choose)`` instead, so the prediction shares its pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from .._validation import Constraint, Interval, check_params
from ..errors import InvalidParameterError
from ..explanation import Explanation
from ..model import (
    DEFAULT_MAX_BATCH_TOKENS,
    Encoding,
    ModelAdapter,
    apply_output_function,
    check_model,
    check_texts,
    probabilities_of,
)

__all__ = ["Explainer", "Scores"]

Target = int | str | None
# One target for every text, or a list with one per text (None there = the predicted class).
Targets = Target | Sequence[Target]


class Chooser(Protocol):
    """Picks the explained class of each row of ``logits`` ``[rows, classes]``.

    ``rows`` are the rows' positions in the batch being scored (None: all, in order), so a
    method that runs the unchanged texts in several passes gets each text its own target.
    """

    def __call__(self, logits: torch.Tensor, rows: Sequence[int] | None = None) -> torch.Tensor:
        """The target class index of every row of ``logits``."""
        ...


@dataclass
class Scores:
    """What a method's scoring step returns for one text."""

    values: np.ndarray
    quality: dict[str, Any] = field(default_factory=dict)
    uncertainty: np.ndarray | None = None


class Explainer:
    """Base class of every explanation method.

    Parameters
    ----------
    model : ModelAdapter
        The model to explain (see :func:`textlens.load`).
    max_batch_tokens : int
        Upper bound on ``rows x padded length`` of any batch sent through the model;
        this is what bounds memory, whatever the number of texts or steps.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "max_batch_tokens": [Interval(int, 1, None)],
    }
    #: True when a method's scoring step runs the model on the unchanged texts anyway (a
    #: gradient or attention method): explain() then takes the prediction from that pass
    #: (``_score_predicting``) instead of running the model once more for it.
    predicts_while_scoring: ClassVar[bool] = False
    #: Relative tolerance within which explaining texts in a batch equals explaining them
    #: one by one (float32 round-off from padding); iterative optimisers loosen it.
    batch_rtol: ClassVar[float] = 1e-5

    #: What the method reads beyond the model's outputs: "embeddings" (runs the model on
    #: word embeddings and takes gradients), "attention", "hidden_states". See
    #: :attr:`ModelAdapter.internals` for what a model offers.
    needs: ClassVar[frozenset[str]] = frozenset({"embeddings", "attention", "hidden_states"})

    def __init__(self, model: ModelAdapter, *, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS):
        check_model(model, type(self).__name__)
        reason = type(self).unsupported_reason(model)
        if reason:
            raise InvalidParameterError(reason)
        self.model = model
        self.max_batch_tokens = max_batch_tokens

    @classmethod
    def unsupported_reason(cls, model: ModelAdapter) -> str | None:
        """Why this method cannot explain ``model`` (None when it can)."""
        offered = getattr(model, "internals", None)
        if offered is None or cls.needs <= offered:
            return None
        from . import REGISTRY

        usable = [n for n, c in REGISTRY.items() if c.needs <= offered]
        kind = getattr(model.model.config, "model_type", "this model")
        return (
            f"{cls.name or cls.__name__} cannot explain {model.model_id}: it is an "
            f"encoder-decoder classifier (model type {kind}), whose "
            f"{' and '.join(sorted(cls.needs - offered)).replace('_', ' ')} textlens does not "
            f"read. Use {', '.join(usable)}."
        )

    def _pass_tokens(self) -> int:
        """Most tokens per model call of this method: the budget, or less where faster."""
        return self.max_batch_tokens

    def _text_batch_tokens(self) -> int:
        """Padded tokens of the groups of texts handed to ``_score_predicting``.

        One model call per group by default (``_pass_tokens``); a method that packs its
        own rows from a group (integrated gradients' path points) takes larger groups.
        """
        return self._pass_tokens()

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _all_constraints(cls) -> dict[str, list[Constraint]]:
        merged: dict[str, list[Constraint]] = {}
        for klass in reversed(cls.__mro__):
            merged.update(getattr(klass, "parameter_constraints", {}))
        return merged

    @classmethod
    def check_parameters(cls, **params: Any) -> None:
        """Validate parameter values without a model (e.g. before a slow model load)."""
        constraints = {k: v for k, v in cls._all_constraints().items() if k in params}
        check_params(cls.__name__, params, constraints)

    def _validate(self) -> None:
        """Check every declared parameter; call at the end of ``__init__``."""
        constraints = self._all_constraints()
        check_params(type(self).__name__, {k: getattr(self, k) for k in constraints}, constraints)

    def get_params(self) -> dict[str, Any]:
        """The method's parameters (recorded in every explanation)."""
        return {k: getattr(self, k) for k in self._all_constraints() if k != "max_batch_tokens"}

    # ------------------------------------------------------------------ the verb
    def explain(self, texts: Sequence[str], target: Targets = None) -> list[Explanation]:
        """Explain ``texts`` (a list of strings) for ``target``.

        Parameters
        ----------
        texts : list of str
            The texts; batched internally under ``max_batch_tokens``.
        target : int, str, None, or a list of them
            Class index or label name to explain; None explains each text's predicted class.
            A list gives one target per text (e.g. each text's gold label); a None in it
            explains that text's predicted class.

        Returns
        -------
        list of Explanation
            One per text, in input order.
        """
        texts = check_texts(texts)  # a generator is read once, here
        self.model.resolve_targets(target, len(texts))  # fail before any model call
        encoding = self.model.encode(texts)
        return self.explain_encoding(encoding, target)

    def explain_encoding(self, encoding: Encoding, target: Targets = None) -> list[Explanation]:
        """Like :meth:`explain`, on texts already encoded by the model adapter."""
        per_text = self.model.resolve_targets(target, len(encoding))
        if self.predicts_while_scoring:
            scores, probabilities, targets = self._score_and_predict(encoding, per_text)
        else:
            logits = self.model.predict_logits(encoding, max_batch_tokens=self.max_batch_tokens)
            probabilities = probabilities_of(logits, self.model.output_function)
            targets = [
                self.model.resolve_target(t, int(p.argmax()))
                for t, p in zip(per_text, probabilities, strict=True)
            ]
            self._know_prediction(encoding, logits)
            scores = self._score_encoding(encoding, targets)
        return [
            self._build(encoding, i, targets[i], probabilities[i], s) for i, s in enumerate(scores)
        ]

    def _know_prediction(self, encoding: Encoding, logits: np.ndarray) -> None:
        """Hook: the logits of the unchanged texts, computed for the prediction (before scoring).

        A method that needs the model's output on the unchanged texts again (a perturbation
        method's full coalition) can keep them instead of running the model once more.
        """

    def _score_and_predict(
        self, encoding: Encoding, per_text: Sequence[int | None]
    ) -> tuple[list[Scores], np.ndarray, list[int]]:
        """Scores, class probabilities and targets of every text from the method's own passes."""
        results: list[Scores | None] = [None] * len(encoding)
        probabilities = np.zeros((len(encoding), self.model.num_labels))
        targets = [0] * len(encoding)

        for indices, batch in self.model.iter_batches(encoding, self._text_batch_tokens()):

            def choose(
                logits: torch.Tensor,
                rows: Sequence[int] | None = None,
                indices: Sequence[int] = indices,
            ) -> torch.Tensor:
                texts = indices if rows is None else [indices[r] for r in rows]
                predicted = logits.detach().argmax(dim=-1).tolist()
                picked = [
                    self.model.resolve_target(per_text[i], p)
                    for i, p in zip(texts, predicted, strict=True)
                ]
                return torch.tensor(picked, dtype=torch.long, device=logits.device)

            scores, logits = self._score_predicting(batch, choose)
            probabilities[indices] = probabilities_of(
                logits.detach().float().cpu().numpy(), self.model.output_function
            )
            for i, s, t in zip(indices, scores, choose(logits).tolist(), strict=True):
                results[i], targets[i] = s, t
        return [r for r in results if r is not None], probabilities, targets

    def _score_encoding(self, encoding: Encoding, targets: list[int]) -> list[Scores]:
        """Score every text; the default packs texts into batches under the token budget."""
        results: list[Scores | None] = [None] * len(encoding)
        for indices, batch in self.model.iter_batches(encoding, self.max_batch_tokens):
            batch_targets = torch.tensor([targets[i] for i in indices], dtype=torch.long)
            for i, scores in zip(indices, self._score(batch, batch_targets), strict=True):
                results[i] = scores
        return [r for r in results if r is not None]

    def _score(self, batch: Encoding, targets: torch.Tensor) -> list[Scores]:
        """Return one :class:`Scores` per text of ``batch`` (unpadded length)."""
        if self.predicts_while_scoring:

            def given(logits: torch.Tensor, rows: Sequence[int] | None = None) -> torch.Tensor:
                return targets if rows is None else targets[list(rows)]

            return self._score_predicting(batch, given)[0]
        raise NotImplementedError

    def _score_predicting(
        self, batch: Encoding, choose: Chooser
    ) -> tuple[list[Scores], torch.Tensor]:
        """For ``predicts_while_scoring`` methods: scores and the logits of the unchanged texts.

        The method runs the model on ``batch`` as it is, gets the logits ``[rows, classes]``,
        asks ``choose(logits)`` (``choose(logits, rows)`` for some of the batch's rows) for
        the targets (the predicted classes, or the requested ones) and scores for them: one
        forward pass serves the prediction and the scores.
        """
        raise NotImplementedError

    def _build(
        self, encoding: Encoding, i: int, target: int, probabilities: np.ndarray, scores: Scores
    ) -> Explanation:
        n = encoding.lengths[i]
        values = np.asarray(scores.values, dtype=np.float64)[:n]
        uncertainty = scores.uncertainty
        return Explanation(
            text=encoding.texts[i],
            tokens=tuple(encoding.tokens[i]),
            offsets=tuple(encoding.offsets[i]),
            special=tuple(encoding.special[i]),
            word_ids=tuple(encoding.word_ids[i]),
            scores=tuple(float(v) for v in values),
            method=self.name,
            params=self.get_params(),
            target=target,
            labels=tuple(self.model.labels),
            probabilities=tuple(float(p) for p in probabilities),
            model_id=self.model.model_id,
            quality=dict(scores.quality),
            truncated_tokens=encoding.truncated[i],
            uncertainty=None if uncertainty is None else tuple(float(u) for u in uncertainty[:n]),
        )


def target_output(
    logits: torch.Tensor, targets: torch.Tensor, output: str, function: str
) -> torch.Tensor:
    """The explained scalar per row: the target's logit or its probability.

    The probability is the logits through ``function``, the model's output function.
    """
    values = apply_output_function(logits, function) if output == "probability" else logits
    return values.gather(1, targets.view(-1, 1).to(values.device)).squeeze(1)
