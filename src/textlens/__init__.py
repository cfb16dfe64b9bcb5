"""textlens: explain the predictions of BERT-family text classifiers.

>>> import textlens as tl
>>> model = tl.load("path/to/model")            # or tl.load("demo")
>>> [e] = tl.explain(model, ["a great movie"], method="integrated_gradients")
>>> e.aggregate("word")
"""

from __future__ import annotations

from .api import explain, load, methods
from .errors import (
    Cancelled,
    ExplanationError,
    InputFileError,
    InvalidInputError,
    InvalidParameterError,
    InvalidTargetError,
    MissingDependencyError,
    ModelLoadError,
    TextlensError,
    TruncationWarning,
    UninformativeScoresWarning,
    UnknownMethodError,
)
from .explanation import Explanation, Span
from .model import ModelAdapter

__all__ = [
    "Cancelled",
    "Explanation",
    "ExplanationError",
    "InputFileError",
    "InvalidInputError",
    "InvalidParameterError",
    "InvalidTargetError",
    "MissingDependencyError",
    "ModelAdapter",
    "ModelLoadError",
    "Span",
    "TextlensError",
    "TruncationWarning",
    "UninformativeScoresWarning",
    "UnknownMethodError",
    "__version__",
    "explain",
    "load",
    "methods",
]

__version__ = "0.1.0"
