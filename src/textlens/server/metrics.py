"""A minimal Prometheus metrics registry (text exposition format 0.0.4).

Written here rather than taken from ``prometheus_client`` so the server needs no extra
package and every app gets its own registry (no process-wide state). Counters, gauges
and histograms with labels; updated from the event-loop thread only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["LATENCY_BUCKETS", "Counter", "Gauge", "Histogram", "Registry"]

#: Seconds; from 1 ms to 60 s.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

Labels = tuple[str, ...]
M = TypeVar("M", bound="_Metric")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)

    def _label_text(self, values: Labels, extra: str = "") -> str:
        parts = [f'{n}="{_escape(v)}"' for n, v in zip(self.label_names, values, strict=True)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def _check(self, labels: Labels) -> Labels:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {labels}")
        return tuple(str(v) for v in labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing count."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self.values: dict[Labels, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._check(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(self._check(labels), 0.0)

    def total(self) -> float:
        return math.fsum(self.values.values())

    def render(self) -> list[str]:
        return self.header() + [
            f"{self.name}{self._label_text(k)} {_number(v)}" for k, v in sorted(self.values.items())
        ]


class Gauge(_Metric):
    """A value read when the metrics are scraped."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        super().__init__(name, help_text)
        self.read = read

    def render(self) -> list[str]:
        return [*self.header(), f"{self.name} {_number(float(self.read()))}"]


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float], label_names: Sequence[str] = ()
    ) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))
        self.series: dict[Labels, list[float]] = {}  # bucket counts..., +Inf count, sum

    def observe(self, value: float, *labels: str) -> None:
        key = self._check(labels)
        row = self.series.setdefault(key, [0.0] * (len(self.buckets) + 2))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                row[i] += 1
        row[-2] += 1
        row[-1] += value

    def count(self, *labels: str) -> float:
        row = self.series.get(self._check(labels))
        return row[-2] if row else 0.0

    def render(self) -> list[str]:
        lines = self.header()
        for key, row in sorted(self.series.items()):
            for bound, value in zip(self.buckets, row, strict=False):
                le = self._label_text(key, 'le="' + _number(bound) + '"')
                lines.append(f"{self.name}_bucket{le} {_number(value)}")
            le = self._label_text(key, 'le="+Inf"')
            lines.append(f"{self.name}_bucket{le} {_number(row[-2])}")
            lines.append(f"{self.name}_sum{self._label_text(key)} {_number(row[-1])}")
            lines.append(f"{self.name}_count{self._label_text(key)} {_number(row[-2])}")
        return lines


class Registry:
    """The metrics of one app, rendered together."""

    def __init__(self) -> None:
        self.metrics: list[_Metric] = []

    def add(self, metric: M) -> M:
        self.metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
