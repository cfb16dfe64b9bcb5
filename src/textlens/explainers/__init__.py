"""Explanation methods and their registry.

The registry is an explicit dict ``{name: class}``; the CLI's choices and the server's
list come from it. Adding a method means adding one line here.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnknownMethodError
from ..model import ModelAdapter
from .attention import Attention, AttentionRollout
from .base import Explainer, Scores
from .gradient import GradientXInput, IntegratedGradients, Saliency
from .information import InformationLoss
from .perturbation import Lime, Occlusion, Shap

__all__ = [
    "REGISTRY",
    "Attention",
    "AttentionRollout",
    "Explainer",
    "GradientXInput",
    "IntegratedGradients",
    "Saliency",
    "Scores",
    "get_explainer_class",
    "make_explainer",
]

REGISTRY: dict[str, type[Explainer]] = {
    "attention": Attention,
    "attention_rollout": AttentionRollout,
    "saliency": Saliency,
    "grad_x_input": GradientXInput,
    "integrated_gradients": IntegratedGradients,
    "occlusion": Occlusion,
    "lime": Lime,
    "shap": Shap,
    "information": InformationLoss,
}


def get_explainer_class(name: str) -> type[Explainer]:
    """The explainer class registered under ``name``."""
    if not isinstance(name, str):
        raise UnknownMethodError(
            f"The method must be one name such as 'saliency', not a {type(name).__name__}. "
            "To run several methods, explain once per method."
        )
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(
            f"Unknown method {name!r}. Choose one of: {', '.join(sorted(REGISTRY))} "
            "(`textlens methods` describes them)."
        ) from None


def make_explainer(name: str, model: ModelAdapter, **params: Any) -> Explainer:
    """Build the explainer ``name`` for ``model``; unknown parameters raise a clear error."""
    cls = get_explainer_class(name)
    known = set(cls._all_constraints())
    unknown = sorted(set(params) - known)
    if unknown:
        from ..errors import InvalidParameterError

        raise InvalidParameterError(
            f"{cls.__name__} has no parameter {', '.join(map(repr, unknown))}. "
            f"Its parameters are: {', '.join(sorted(known))}."
        )
    return cls(model, **params)
