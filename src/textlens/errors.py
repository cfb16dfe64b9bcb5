"""Errors raised by textlens.

Every error a user can cause derives from :class:`TextlensError`; its message says
what was wrong, what was expected and how to fix it::

    TextlensError
    ├── ModelLoadError            (also OSError)    a model folder is missing or incomplete
    ├── InvalidInputError         (also ValueError) a text, file or record we cannot use
    │   └── InputFileError                          a batch input file (with line numbers)
    ├── InvalidParameterError     (also ValueError) a bad explainer parameter
    ├── InvalidTargetError        (also ValueError) an unknown label or class index
    ├── UnknownMethodError        (also KeyError)   a method name not in the registry
    ├── MissingDependencyError    (also ImportError) an optional extra is not installed
    ├── ExplanationError          (also RuntimeError) the model failed inside an explainer
    └── Cancelled                                   model work stopped: nobody waits for it
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "ExplanationError",
    "InputFileError",
    "InvalidInputError",
    "InvalidParameterError",
    "InvalidTargetError",
    "MissingDependencyError",
    "ModelLoadError",
    "TextlensError",
    "TruncationWarning",
    "UninformativeScoresWarning",
    "UnknownMethodError",
]


class TextlensError(Exception):
    """Base class of every error textlens raises on purpose."""


class ModelLoadError(TextlensError, OSError):
    """A model folder is missing, incomplete or not a sequence classifier."""


class InvalidInputError(TextlensError, ValueError):
    """A text or record that cannot be explained (empty, wrong type...)."""


class InputFileError(InvalidInputError):
    """A batch input file that cannot be read at all."""


class InvalidParameterError(TextlensError, ValueError):
    """An explainer or metric parameter outside its documented range."""


class InvalidTargetError(TextlensError, ValueError):
    """A target class that the model does not have."""


class UnknownMethodError(TextlensError, KeyError):
    """A method name that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(TextlensError, ImportError):
    """An optional dependency that a feature needs is not installed."""


class ExplanationError(TextlensError, RuntimeError):
    """The model raised while being explained; the message names the method and model."""


class Cancelled(TextlensError):
    """Model work stopped because its caller asked it to (see :func:`textlens.model.cancellable`).

    Not a ``RuntimeError``: code that catches model failures must let it through.
    """


class TruncationWarning(UserWarning):
    """A text was longer than the model accepts and was cut."""


class UninformativeScoresWarning(UserWarning):
    """A method's scores carry no information on this model (they are numerically zero)."""
