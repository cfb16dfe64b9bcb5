"""One way to check parameters, so every bad value gets the same message form.

Modelled on scikit-learn's declarative parameter constraints: a constraint knows how to
test a value and how to describe what it accepts.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidParameterError


class Constraint:
    """A predicate on a parameter value with a human description."""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


#: Integers given as parameters must fit in 64 bits (torch and numpy hold no larger).
INT64_LIMIT = 2**63


@dataclass(frozen=True)
class Interval(Constraint):
    """A number of ``kind`` (int or float) within ``[low, high]`` (either end may be open)."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if isinstance(value, int) and not -INT64_LIMIT < value < INT64_LIMIT:
            return False  # no torch or numpy integer holds it
        if self.kind is int and not isinstance(value, int):
            return False
        if self.kind is float and not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return self.within(value)

    def within(self, value: float) -> bool:
        """Whether ``value`` lies between the bounds (whatever its type)."""
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )

    def describe(self) -> str:
        name = "an int" if self.kind is int else "a number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return f"{name} {' and '.join(parts)}".strip()


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed set of values."""

    values: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class IsNone(Constraint):
    """Exactly ``None``."""

    def accepts(self, value: Any) -> bool:
        return value is None

    def describe(self) -> str:
        return "None"


@dataclass(frozen=True)
class InstanceOf(Constraint):
    """An instance of ``kind``."""

    kind: type
    label: str

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.kind) and not isinstance(value, bool)

    def describe(self) -> str:
        return self.label


def _render(constraints: Collection[Constraint]) -> str:
    texts = [c.describe() for c in constraints]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]


def check_params(
    owner: str,
    values: Mapping[str, Any],
    constraints: Mapping[str, Collection[Constraint]],
) -> None:
    """Raise :class:`InvalidParameterError` for the first value no constraint accepts.

    The message reads: ``The 'n_steps' parameter of IntegratedGradients must be an int
    >= 1. Got 0.``
    """
    for name, allowed in constraints.items():
        value = values[name]
        if not any(c.accepts(value) for c in allowed):
            raise InvalidParameterError(
                f"The {name!r} parameter of {owner} must be {_render(allowed)}"
                f"{_past_64_bits(value, allowed)}. Got {value!r}{_numpy_hint(value, allowed)}."
            )


def _numpy_hint(value: Any, allowed: Collection[Constraint]) -> str:
    """The way out for a NumPy or torch scalar whose Python value would do."""
    if isinstance(value, (bool, int, float, str)):
        return ""
    item, ndim = getattr(value, "item", None), getattr(value, "ndim", None)
    if item is None or ndim:  # not a scalar
        return ""
    try:
        plain = item()
    except (TypeError, ValueError):
        return ""
    if not any(c.accepts(plain) for c in allowed):
        return ""
    kind = type(plain).__name__
    return f" (a {type(value).__module__.split('.')[0]} scalar: pass {kind}(x))"


def _past_64_bits(value: Any, allowed: Collection[Constraint]) -> str:
    """Why an integer that is in range but past 64 bits is refused, and the way out."""
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) < INT64_LIMIT:
        return ""
    try:
        as_float = float(value)
    except OverflowError:  # past float64 too
        return ""
    if any(c.accepts(as_float) for c in allowed):
        return f" (integers must lie within ±2**63: write it as a float, {as_float:g})"
    if any(isinstance(c, Interval) and c.kind is int and c.within(value) for c in allowed):
        return " (integers must lie within ±2**63)"
    return ""
