"""Perturbation methods: occlusion, LIME and SHAP, on one shared evaluation engine.

They need only the model's outputs. Each text becomes a coalition game over its
features (words by default, see :mod:`textlens.features`); the
:class:`~.engine.Engine` evaluates the coalitions of all texts together (deduplicated,
cached, length-sorted and packed under ``max_batch_tokens``).
"""

from __future__ import annotations

from .base import PerturbationExplainer
from .engine import MASKINGS, OUTPUTS, Engine, TextGame
from .lime import Lime
from .occlusion import Occlusion
from .shap import Shap, exact_shapley

__all__ = [
    "MASKINGS",
    "OUTPUTS",
    "Engine",
    "Lime",
    "Occlusion",
    "PerturbationExplainer",
    "Shap",
    "TextGame",
    "exact_shapley",
]
