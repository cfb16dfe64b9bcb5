"""Cost: seconds and model evaluations per text, measured while a method explains.

Model evaluations are counted with a hook on the model's embedding layer, so every
input row that goes through the network counts once, whichever method sends it (a
perturbation method's masked copies, integrated gradients' path points, a gradient
method's forward+backward pass). Seconds are wall-clock, after an untimed warm-up
call on a separate explainer (so one-time work such as a disk cache or lazy set-up
does not count, and the timed explainer starts with an empty cache).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InvalidParameterError
from ..explainers import Explainer, get_explainer_class, make_explainer
from ..explanation import Explanation
from ..model import ModelAdapter, check_model, per_text_targets
from .metrics import MetricResult, get_metric

__all__ = [
    "ExplainerSpec",
    "MethodRun",
    "build_explainer",
    "count_evaluations",
    "explain_for_targets",
    "method_name",
    "run_method",
]

#: A registered method name, an Explainer subclass, or ``model -> Explainer``.
ExplainerSpec = str | type[Explainer] | Callable[[ModelAdapter], Explainer]


@dataclass
class EvaluationCounter:
    """Rows sent through the model since the counter started."""

    rows: int = 0

    def add(self, rows: int) -> None:
        self.rows += rows


@contextlib.contextmanager
def count_evaluations(model: ModelAdapter) -> Iterator[EvaluationCounter]:
    """Count the input rows that go through ``model`` inside the ``with`` block."""
    counter = EvaluationCounter()
    hf = model.model
    embeddings = getattr(getattr(hf, "base_model", hf), "embeddings", None)
    if isinstance(embeddings, torch.nn.Module):

        def after(module: Any, args: Any, out: Any) -> None:
            tensor = out[0] if isinstance(out, (tuple, list)) else out
            counter.add(int(tensor.shape[0]))

        handle = embeddings.register_forward_hook(after)
    else:  # pragma: no cover - every BERT-family model has base_model.embeddings

        def before(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
            tensor = kwargs.get("input_ids")
            if tensor is None:
                tensor = kwargs.get("inputs_embeds")
            if tensor is None and args:
                tensor = args[0]
            counter.add(int(tensor.shape[0]) if tensor is not None else 0)

        handle = hf.register_forward_pre_hook(before, with_kwargs=True)
    try:
        yield counter
    finally:
        handle.remove()


def method_name(spec: ExplainerSpec) -> str:
    """The name results are filed under: the registered name or the class's ``name``."""
    if isinstance(spec, str):
        return spec
    name = getattr(spec, "name", None) or getattr(spec, "__name__", None)
    return str(name) if name else "custom"


def explainer_class(spec: ExplainerSpec) -> type[Explainer] | None:
    """The explainer class of ``spec`` when known (not for an opaque factory)."""
    if isinstance(spec, str):
        return get_explainer_class(spec)
    if isinstance(spec, type) and issubclass(spec, Explainer):
        return spec
    return None


def build_explainer(
    spec: ExplainerSpec, model: ModelAdapter, params: Mapping[str, Any] | None = None
) -> Explainer:
    """An explainer of ``model`` from a registered name, a class or a factory."""
    params = dict(params or {})
    if isinstance(spec, str):
        return make_explainer(spec, model, **params)
    if isinstance(spec, type):
        return spec(model, **params)
    if callable(spec):
        if params:
            raise InvalidParameterError(
                "Parameters cannot be passed to an explainer factory; bind them in the factory."
            )
        return spec(model)
    raise InvalidParameterError(
        f"Expected a method name, an Explainer class or a function model -> Explainer; "
        f"got {spec!r}."
    )


def explain_for_targets(
    explainer: Explainer, texts: Sequence[str], targets: Sequence[int]
) -> list[Explanation]:
    """Explain each text for its own target class (texts grouped by target)."""
    out: list[Explanation | None] = [None] * len(texts)
    for target in sorted(set(targets)):
        indices = [i for i, t in enumerate(targets) if t == target]
        for i, e in zip(
            indices, explainer.explain([texts[i] for i in indices], target=target), strict=True
        ):
            out[i] = e
    return [e for e in out if e is not None]


@dataclass
class MethodRun:
    """A method's explanations of some texts and what they cost.

    Attributes
    ----------
    method : str
    params : dict
    explanations : list of Explanation
    seconds : float
        Wall-clock seconds of the timed ``explain`` call.
    evaluations : int
        Input rows sent through the model during that call.
    """

    method: str
    params: dict[str, Any]
    explanations: list[Explanation]
    seconds: float
    evaluations: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_texts(self) -> int:
        return len(self.explanations)

    def cost(self) -> dict[str, MetricResult]:
        """``seconds_per_text`` and ``evaluations_per_text`` (means over the batch)."""
        n = max(self.n_texts, 1)
        return {
            "seconds_per_text": MetricResult(
                get_metric("seconds_per_text"),
                self.seconds / n,
                (),
                {"seconds": self.seconds, "n_texts": self.n_texts},
            ),
            "evaluations_per_text": MetricResult(
                get_metric("evaluations_per_text"),
                self.evaluations / n,
                (),
                {"evaluations": self.evaluations},
            ),
        }


def run_method(
    model: ModelAdapter,
    method: ExplainerSpec,
    texts: Sequence[str],
    *,
    params: Mapping[str, Any] | None = None,
    target: int | str | None = None,
    warmup: bool = True,
) -> MethodRun:
    """Explain ``texts`` with ``method`` and measure seconds and model evaluations.

    Parameters
    ----------
    model : ModelAdapter
    method : str, Explainer class or callable
        A registered name, an :class:`~textlens.explainers.Explainer` subclass or a
        function ``model -> Explainer``.
    texts : list of str (or one str)
    params : dict, optional
        The method's keyword parameters.
    target : int, str or None
        Class to explain (None: each text's predicted class).
    warmup : bool
        Explain the first text once with a separate explainer before timing.

    Returns
    -------
    MethodRun
    """
    check_model(model, "run_method()")
    texts = [texts] if isinstance(texts, str) else list(texts)  # one text: a list of one
    if warmup and texts:
        per_text = per_text_targets(target)  # one per text: the first text's
        first = target if per_text is None else per_text[:1]
        build_explainer(method, model, params).explain(texts[:1], target=first)
    explainer = build_explainer(method, model, params)
    with count_evaluations(model) as counter:
        start = time.perf_counter()
        explanations = explainer.explain(texts, target=target)
        seconds = time.perf_counter() - start
    return MethodRun(
        method=method_name(method),
        params=dict(params or {}),
        explanations=explanations,
        seconds=seconds,
        evaluations=counter.rows,
        settings={"threads": torch.get_num_threads(), "warmup": warmup},
    )
