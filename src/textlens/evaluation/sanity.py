"""Sanity check: does an explanation depend on the model at all?

Cascading model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks for
Saliency Maps", https://arxiv.org/abs/1810.03292), adapted to text classifiers. A copy
of the model is re-initialised block by block from the top -- first the classification
head (with the pooler, when there is one), then the transformer layers from the last
to the first, finally the embeddings and anything left -- and after each step the
method explains the same texts, for the same target classes, on the damaged copy.
The similarity of each explanation to the original one is Spearman's rho of the
absolute word scores (Adebayo et al. report it with and without absolute values; the
signed one is kept in ``details``). A method whose explanations barely change once the
whole model is random -- rho at least ``threshold`` -- explains something other than
the model (word length, position, frequency...) and is flagged.

Re-initialisation follows the usual BERT-family scheme: weight matrices and embeddings
from ``N(0, initializer_range)`` (the model config's value, 0.02 by default), biases 0,
layer norms 1 and 0, drawn from a seeded generator (the global random state is not
touched). The original model is never modified.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ExplanationError, InvalidParameterError
from ..explanation import Explanation
from ..model import ModelAdapter, check_model
from ._units import LEVELS, check_option, unit_scores, units
from .agreement import spearman
from .cost import ExplainerSpec, build_explainer, explain_for_targets, method_name
from .metrics import MetricResult, get_metric, metric_result

__all__ = [
    "DEFAULT_THRESHOLD",
    "MIN_UNITS",
    "SanityResult",
    "cascading_randomization",
    "sanity_check",
]

#: Flag a method whose explanations on the fully random model still have this rank
#: correlation (of absolute word scores) with the original ones.
DEFAULT_THRESHOLD = 0.5
#: Texts with fewer words (units) than this do not count: two words are ranked the same
#: way or the other, a rank correlation of +1 or -1 whatever the method does.
MIN_UNITS = 3


@dataclass(frozen=True)
class SanityResult:
    """How one method's explanations change as the model is randomised from the top.

    Attributes
    ----------
    method : str
    stages : tuple of str
        The cascade, e.g. ``('head', 'layer 6', ..., 'embeddings')``: at stage ``s``
        every block up to and including ``s`` is random.
    similarity : tuple of MetricResult
        Per stage, Spearman's rho of ``|word scores|`` with the original explanations.
    threshold : float
    flagged : bool
        Whether the similarity after the last stage is at least ``threshold``.
    """

    method: str
    stages: tuple[str, ...]
    similarity: tuple[MetricResult, ...]
    threshold: float
    flagged: bool

    @property
    def final(self) -> MetricResult:
        """``randomization_similarity``: the similarity once the whole model is random."""
        return self.similarity[-1]

    @property
    def message(self) -> str:
        value = self.final.value
        if not math.isfinite(value):
            return (
                f"{self.method}: not checked (no text has {MIN_UNITS} or more words, and "
                "fewer cannot show whether a ranking changed)."
            )
        if self.flagged:
            return (
                f"{self.method}: explanations barely change when every layer of the model is "
                f"randomised (rank correlation {value:.2f} >= {self.threshold:g}); they do not "
                "explain this model."
            )
        return f"{self.method}: passes (rank correlation {value:.2f} with a fully random model)."

    def to_dict(self, per_text: bool = False) -> dict[str, Any]:
        return {
            "method": self.method,
            "stages": list(self.stages),
            "similarity": [r.to_dict(per_text) for r in self.similarity],
            "threshold": self.threshold,
            "flagged": self.flagged,
            "message": self.message,
        }


def cascading_randomization(
    model: ModelAdapter, *, steps: int | None = None, seed: int = 0
) -> Iterator[tuple[str, ModelAdapter]]:
    """Yield ``(stage, adapter)`` for a copy of ``model`` randomised further at each stage.

    Parameters
    ----------
    model : ModelAdapter
        Left untouched; one copy is made and randomised in place, stage after stage, so
        an adapter yielded earlier sees the later stages too (use each before the next).
    steps : int or None
        None: one stage per block (head, each layer, embeddings). An int ``s``: ``s``
        stages evenly spaced along the cascade, the first being the head alone and the
        last the whole model.
    seed : int
        Seed of the re-initialisation.
    """
    check_model(model, "cascading_randomization()")
    blocks = _blocks(model)
    points = _stage_points(len(blocks), steps)
    copy_model = copy.deepcopy(model.model)
    copy_blocks = _blocks_of(copy_model, model.num_layers)
    std = float(getattr(model.model.config, "initializer_range", None) or 0.02)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    done: set[int] = set()
    reached = 0
    for point in points:
        for _, modules in copy_blocks[reached:point]:
            for module in modules:
                _reinitialise(module, std, generator, done)
        reached = point
        stage = copy_blocks[point - 1][0]
        adapter = ModelAdapter(
            copy_model,
            model.tokenizer,
            model_id=f"{model.model_id} [randomised down to {stage}]",
            device=str(model.device),
            max_length=model.max_length,
        )
        yield stage, adapter


def sanity_check(
    model: ModelAdapter,
    method: ExplainerSpec,
    texts: Sequence[str],
    *,
    params: Mapping[str, Any] | None = None,
    explanations: Sequence[Explanation] | None = None,
    steps: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    level: str = "word",
) -> SanityResult:
    """Cascading randomisation check of one method on ``texts``.

    Parameters
    ----------
    model : ModelAdapter
    method : str, Explainer class or callable
        A registered name, an :class:`~textlens.explainers.Explainer` subclass or a
        function ``model -> Explainer`` (called once per stage).
    texts : list of str (or one str)
    params : dict, optional
        The method's parameters.
    explanations : list of Explanation, optional
        The method's explanations of ``texts`` on the original model, if already made.
    steps : int or None
        See :func:`cascading_randomization`.
    threshold : float
        Flag when the final similarity is at least this.
    seed : int
        Seed of the re-initialisation.
    level : {'word', 'token'}

    Returns
    -------
    SanityResult
    """
    check_model(model, "sanity_check()")
    check_option("level", level, LEVELS, "sanity_check")
    if (
        not isinstance(threshold, (int, float))
        or isinstance(threshold, bool)
        or not -1 <= threshold <= 1
    ):
        raise InvalidParameterError(
            f"The 'threshold' parameter of sanity_check must be a number in [-1, 1]. "
            f"Got {threshold!r}."
        )
    texts = [texts] if isinstance(texts, str) else list(texts)  # one text: a list of one
    if explanations is None:
        explanations = build_explainer(method, model, params).explain(texts)
    original = list(explanations)[: len(texts)]
    targets = [e.target for e in original]
    stages, similarity = [], []
    for stage, random_model in cascading_randomization(model, steps=steps, seed=seed):
        explainer = build_explainer(method, random_model, params)
        randomised = explain_for_targets(explainer, texts, targets)
        absolute, signed = [], []
        for before, after in zip(original, randomised, strict=True):
            spans = units(before, level)
            a, b = unit_scores(before, spans), unit_scores(after, spans)
            enough = len(spans) >= MIN_UNITS
            absolute.append(spearman(np.abs(a), np.abs(b)) if enough else math.nan)
            signed.append(spearman(a, b) if enough else math.nan)
        signed_mean = _nanmean(signed)
        stages.append(stage)
        similarity.append(
            metric_result(
                get_metric("randomization_similarity"),
                absolute,
                {"stage": stage, "signed": signed_mean, "signed_per_text": signed},
            )
        )
    final = similarity[-1].value
    return SanityResult(
        method=method_name(method),
        stages=tuple(stages),
        similarity=tuple(similarity),
        threshold=float(threshold),
        flagged=bool(math.isfinite(final) and final >= threshold),
    )


# ---------------------------------------------------------------------- internals
def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def _stage_points(n_blocks: int, steps: int | None) -> list[int]:
    if steps is None:
        return list(range(1, n_blocks + 1))
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidParameterError(
            f"The 'steps' parameter must be None or an int >= 1. Got {steps!r}."
        )
    if steps == 1:
        return [n_blocks]
    return sorted({round(x) for x in np.linspace(1, n_blocks, min(steps, n_blocks))})


def _blocks(model: ModelAdapter) -> list[tuple[str, list[torch.nn.Module]]]:
    return _blocks_of(model.model, model.num_layers)


def _blocks_of(hf: torch.nn.Module, n_layers: int) -> list[tuple[str, list[torch.nn.Module]]]:
    """The cascade's blocks, top first: head (+ pooler), layers last to first, the rest."""
    base = getattr(hf, "base_model", hf)
    layers = next(
        (m for m in base.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers),
        None,
    )
    if layers is None or base is hf:
        raise ExplanationError(
            f"The sanity check could not find the {n_layers} transformer layers and the "
            f"classification head of {type(hf).__name__}; it supports BERT-family "
            "*ForSequenceClassification models."
        )
    head = [m for m in hf.children() if m is not base]
    pooler = getattr(base, "pooler", None)
    if isinstance(pooler, torch.nn.Module):
        head.append(pooler)
    blocks: list[tuple[str, list[torch.nn.Module]]] = [("head", head)]
    blocks += [(f"layer {i + 1}", [layers[i]]) for i in reversed(range(n_layers))]
    blocks.append(("embeddings", [base]))  # whatever is left: embeddings, final norms...
    return blocks


def _reinitialise(
    module: torch.nn.Module, std: float, generator: torch.Generator, done: set[int]
) -> None:
    """Re-draw every parameter of ``module`` not already re-drawn (ids in ``done``)."""
    with torch.no_grad():
        for sub in module.modules():
            is_norm = "norm" in type(sub).__name__.lower()
            for name, parameter in sub.named_parameters(recurse=False):
                if id(parameter) in done:
                    continue
                done.add(id(parameter))
                if is_norm:
                    parameter.fill_(1.0 if name == "weight" else 0.0)
                elif parameter.dim() >= 2:
                    values = (
                        torch.randn(parameter.shape, generator=generator, dtype=torch.float32) * std
                    )
                    parameter.copy_(values.to(parameter.dtype))
                else:
                    parameter.zero_()
