"""The few-lines Python API: load a model, explain texts, list methods."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .explainers import REGISTRY, make_explainer
from .explainers.base import Targets
from .explanation import Explanation
from .model import ModelAdapter

__all__ = ["explain", "load", "methods"]

DEMO = "demo"


def load(
    path: str | Path,
    *,
    device: str = "cpu",
    max_length: int | None = None,
    output_function: str | None = None,
    trust_remote_code: bool = False,
) -> ModelAdapter:
    """Load a local sequence-classification model folder, or ``"demo"`` for the demo model.

    ``"demo"`` builds (first time only, a few minutes) and caches the sentiment model
    described in the README. ``output_function`` ('softmax', 'sigmoid' or 'none')
    overrides how the model's logits become its reported probabilities, which is
    otherwise read from its config (``problem_type``, ``num_labels``).
    ``trust_remote_code=True`` lets a folder's own model code (its ``.py`` files, named
    by ``auto_map`` in its config) run; it is refused otherwise.
    """
    if str(path) == DEMO:
        from .demo.build import build_sentiment_model

        path = build_sentiment_model().path
    return ModelAdapter.from_pretrained(
        path,
        device=device,
        max_length=max_length,
        output_function=output_function,
        trust_remote_code=trust_remote_code,
    )


def explain(
    model: ModelAdapter,
    texts: Sequence[str] | str,
    method: str = "integrated_gradients",
    *,
    target: Targets = None,
    **params: Any,
) -> list[Explanation]:
    """Explain ``texts`` with ``method``; ``params`` are the method's keyword parameters.

    A single string is accepted as a one-text batch. ``target`` is a label name or
    index for every text, a list with one per text (e.g. the gold labels; None there
    means that text's predicted class), or None for each text's predicted class.
    Returns one :class:`~textlens.Explanation` per text, in order.
    """
    batch = [texts] if isinstance(texts, str) else texts  # the explainer checks the rest
    return make_explainer(method, model, **params).explain(batch, target=target)


def methods() -> dict[str, str]:
    """Registered method names with a one-line description."""
    return {name: cls.description for name, cls in REGISTRY.items()}
