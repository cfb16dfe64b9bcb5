"""Attention scores against the model's own attention weights, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TEXTS

from textlens.errors import InvalidParameterError
from textlens.explainers import make_explainer
from textlens.model import ModelAdapter


def _attentions(model: ModelAdapter, text: str) -> np.ndarray:
    """``[layers, heads, len, len]`` for one unpadded text, straight from the model."""
    with torch.no_grad():
        out = model.forward(model.encode([text]), output_attentions=True)
    return torch.stack(out.attentions)[:, 0].numpy()


@pytest.mark.parametrize(
    "layer, head", [(-1, "mean"), (0, "mean"), (1, 0), (-2, 1), ("mean", "mean"), ("mean", 1)]
)
def test_attention_is_the_cls_row(planted_adapter: ModelAdapter, layer, head) -> None:
    results = make_explainer("attention", planted_adapter, layer=layer, head=head).explain(TEXTS)
    for e in results:
        att = _attentions(planted_adapter, e.text)[:, :, 0, :]  # from [CLS]: [layers, heads, keys]
        att = att.mean(0) if layer == "mean" else att[layer]
        expected = att.mean(0) if head == "mean" else att[head]
        np.testing.assert_allclose(e.scores, expected, rtol=1e-5, atol=1e-7)
        assert sum(e.scores) == pytest.approx(1.0, abs=1e-5)  # padding gets no attention
        assert e.quality == {"target_independent": True, "read_from": "first token"}


def test_rollout_multiplies_residual_attention_through_layers(planted_adapter) -> None:
    for e in make_explainer("attention_rollout", planted_adapter).explain(TEXTS):
        att = _attentions(planted_adapter, e.text).mean(1)  # [layers, len, len]
        n = att.shape[-1]
        rollout = np.eye(n)
        for layer in att:
            mixed = 0.5 * layer + 0.5 * np.eye(n)
            rollout = (mixed / mixed.sum(-1, keepdims=True)) @ rollout
        np.testing.assert_allclose(e.scores, rollout[0], rtol=1e-5, atol=1e-7)
        assert sum(e.scores) == pytest.approx(1.0, abs=1e-5)
        assert min(e.scores) >= 0


@pytest.mark.parametrize("method", ["attention", "attention_rollout"])
def test_attention_does_not_depend_on_the_target(planted_adapter, method: str) -> None:
    explainer = make_explainer(method, planted_adapter)
    negative = explainer.explain(TEXTS, target="negative")
    positive = explainer.explain(TEXTS, target="positive")
    for a, b in zip(negative, positive, strict=True):
        assert a.scores == b.scores
        assert (a.target, b.target) == (0, 1)


LAYER_MUST_BE = "The 'layer' parameter of Attention must be an int or one of 'mean'."


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"layer": 2},
            "The 'layer' parameter of Attention must be 'mean' or an int in [-2, 1] for this "
            "model (2 layers). Got 2.",
        ),
        (
            {"head": -3},
            "The 'head' parameter of Attention must be 'mean' or an int in [-2, 1] for this "
            "model (2 heads). Got -3.",
        ),
        ({"layer": "last"}, f"{LAYER_MUST_BE} Got 'last'."),
        ({"head": 0.5}, f"{LAYER_MUST_BE.replace('layer', 'head')} Got 0.5."),
        ({"layer": True}, f"{LAYER_MUST_BE} Got True."),
    ],
)
def test_bad_layer_or_head(planted_adapter: ModelAdapter, params: dict, message: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        make_explainer("attention", planted_adapter, **params)
    assert str(info.value) == message
