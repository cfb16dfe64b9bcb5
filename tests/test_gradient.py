"""Gradient methods against oracles: Captum's integrated gradients and a linear model.

Captum (``LayerIntegratedGradients`` on the word-embedding layer, the same thing our
integrated gradients computes) must agree to 1e-4 of the attribution norm; on a linear
bag-of-embeddings classifier every gradient method has a closed form.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import LayerIntegratedGradients
from conftest import (
    FILLER,
    NEGATIVE,
    POSITIVE,
    SUBWORDS,
    TEXTS,
    planted_data,
    record,
    tiny_bert,
    wordpiece_tokenizer,
)
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from textlens.errors import InvalidParameterError, UninformativeScoresWarning
from textlens.explainers import make_explainer
from textlens.explainers.gradient import RULES, _AdaptiveText, quadrature
from textlens.model import ModelAdapter

CAPTUM_RULES = {
    "gauss_legendre": "gausslegendre",
    "riemann_left": "riemann_left",
    "riemann_right": "riemann_right",
    "riemann_middle": "riemann_middle",
    "riemann_trapezoid": "riemann_trapezoid",
}
AGREEMENT = 1e-4  # max |ours - captum| per text, as a fraction of the attributions' L2 norm


# ---------------------------------------------------------------------- Captum oracle
def _targets(model: ModelAdapter, texts: list[str], target: Any) -> list[int]:
    probabilities = model.predict_proba(model.encode(texts))
    return [model.resolve_target(target, int(p.argmax())) for p in probabilities]


def captum_attributions(
    model: ModelAdapter,
    texts: list[str],
    *,
    baseline: str,
    rule: str,
    n_steps: int,
    target: Any = None,
    output: str = "logit",
) -> list[np.ndarray]:
    """Captum's IG on the word embeddings, per text (unpadded), summed over dimensions."""
    encoding = model.encode(texts)
    targets = _targets(model, texts, target)
    names = list(encoding.model_inputs)
    extra = tuple(encoding.model_inputs[n] for n in names)
    keep = encoding.special_mask() | (encoding.attention_mask == 0)

    def explained(logits: torch.Tensor) -> torch.Tensor:
        if output == "logit" or model.output_function == "none":
            return logits
        return logits.sigmoid() if model.output_function == "sigmoid" else logits.softmax(-1)

    if baseline == "zero":

        def forward_embeds(embeds: torch.Tensor, mask: torch.Tensor, *rest: torch.Tensor):
            kwargs = dict(zip(names, rest, strict=True))
            out = model.model(inputs_embeds=embeds, attention_mask=mask, **kwargs)
            return explained(out.logits)

        inputs = model.word_embeddings(encoding.input_ids)
        baselines = torch.where(keep.unsqueeze(-1), inputs, torch.zeros_like(inputs))
        method: Any = CaptumIG(forward_embeds)
    else:

        def forward_ids(ids: torch.Tensor, mask: torch.Tensor, *rest: torch.Tensor):
            kwargs = dict(zip(names, rest, strict=True))
            return explained(model.model(input_ids=ids, attention_mask=mask, **kwargs).logits)

        fill = model.pad_token_id if baseline == "pad" else model.mask_token_id
        inputs = encoding.input_ids
        baselines = torch.where(keep, inputs, torch.full_like(inputs, fill))
        method = LayerIntegratedGradients(forward_ids, model.model.get_input_embeddings())
    attributions = method.attribute(
        inputs,
        baselines=baselines,
        additional_forward_args=(encoding.attention_mask, *extra),
        target=targets,
        n_steps=n_steps,
        method=CAPTUM_RULES[rule],
    )
    summed = attributions.sum(-1).detach().double().numpy()
    if rule == "riemann_trapezoid":
        # Captum's trapezoid weights are 1/n (halved at the ends), which sum to (n-1)/n;
        # the trapezoid rule on n points spaced 1/(n-1) apart (ours) has weights summing
        # to 1 and is exact on a linear path (see the linear-model tests below).
        summed *= n_steps / (n_steps - 1)
    return [summed[i, :n] for i, n in enumerate(encoding.lengths)]


def assert_agrees_with_captum(model: ModelAdapter, texts: list[str], **params: Any) -> None:
    target = params.pop("target", None)
    ours = make_explainer("integrated_gradients", model, **params).explain(texts, target=target)
    theirs = captum_attributions(
        model,
        texts,
        baseline=params.get("baseline", "pad"),
        rule=params.get("rule", "gauss_legendre"),
        n_steps=params.get("n_steps", 50),
        target=target,
        output=params.get("output", "logit"),
    )
    for e, reference in zip(ours, theirs, strict=True):
        scores = np.asarray(e.scores)
        assert scores.shape == reference.shape
        norm = np.linalg.norm(reference)
        assert norm > 0
        assert np.abs(scores - reference).max() <= AGREEMENT * norm, (e.text, scores, reference)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("baseline", ["pad", "mask"])
def test_integrated_gradients_agree_with_captum(planted_adapter, rule: str, baseline: str) -> None:
    assert_agrees_with_captum(planted_adapter, TEXTS, baseline=baseline, rule=rule, n_steps=12)


def test_integrated_gradients_agree_with_captum_on_zero_baseline(planted_adapter) -> None:
    assert_agrees_with_captum(planted_adapter, TEXTS, baseline="zero", n_steps=12)


@pytest.mark.parametrize("target", [0, "neutral"])
def test_integrated_gradients_agree_with_captum_for_other_targets(planted_adapter, target) -> None:
    assert_agrees_with_captum(planted_adapter, TEXTS, target=target, n_steps=12)


def test_integrated_gradients_agree_with_captum_on_probability(planted_adapter) -> None:
    assert_agrees_with_captum(planted_adapter, TEXTS, output="probability", n_steps=12)


def test_integrated_gradients_agree_with_captum_with_token_type_ids() -> None:
    """A tokenizer that returns token_type_ids: they reach the model on both paths."""
    tokenizer = wordpiece_tokenizer(FILLER + POSITIVE + NEGATIVE + SUBWORDS)
    tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    model = ModelAdapter(_random_bert(len(tokenizer), std=0.3), tokenizer)
    assert list(model.encode(TEXTS).model_inputs) == ["token_type_ids"]
    assert_agrees_with_captum(model, TEXTS, n_steps=8)


# ---------------------------------------------------------------------- completeness
def _random_bert(vocab_size: int, std: float, seed: int = 0):
    """A tiny BERT with large random weights: far from linear along the IG path."""
    model = tiny_bert(vocab_size, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model


@pytest.fixture(scope="module")
def rough_adapter() -> ModelAdapter:
    tokenizer = wordpiece_tokenizer(FILLER + POSITIVE + NEGATIVE + SUBWORDS)
    return ModelAdapter(_random_bert(len(tokenizer), std=0.3), tokenizer, model_id="rough-bert")


def test_delta_shrinks_as_steps_grow(rough_adapter: ModelAdapter) -> None:
    texts = planted_data(12, seed=5).texts
    medians = []
    for n_steps in (4, 16, 64):
        explainer = make_explainer("integrated_gradients", rough_adapter, n_steps=n_steps)
        results = explainer.explain(texts)
        medians.append(np.median([abs(e.delta) for e in results]))
        for e in results:
            # The delta is what the scores leave out of f(x) - f(baseline).
            gap = e.quality["f_x"] - e.quality["f_baseline"]
            assert sum(e.scores) - gap == pytest.approx(e.delta, abs=1e-9)
            assert e.quality["n_steps"] == n_steps
    # Measured when written: about 5e-2, 9e-6 and 5e-7 (float32 round-off).
    assert medians[0] > 100 * medians[1]
    assert medians[1] > medians[2]


def test_f_x_is_the_target_logit_and_specials_get_nothing(planted_adapter: ModelAdapter) -> None:
    encoding = planted_adapter.encode(TEXTS)
    with torch.no_grad():
        logits = planted_adapter.logits(encoding).numpy()
    for baseline in ("pad", "mask", "zero"):
        explainer = make_explainer(
            "integrated_gradients", planted_adapter, baseline=baseline, n_steps=8
        )
        for i, e in enumerate(explainer.explain(TEXTS, target="neutral")):
            assert e.quality["f_x"] == pytest.approx(logits[i, 2], abs=1e-5)
            assert all(s == 0.0 for s, special in zip(e.scores, e.special, strict=True) if special)


@pytest.mark.parametrize("params", [{"n_steps": 8}, {"target_delta": 0.01}])
def test_prediction_comes_from_the_path_at_alpha_one(planted_adapter, params) -> None:
    """No forward pass of its own for the prediction: every model call is a path row,
    and the explained output at alpha = 1 is the reported probability of the target."""
    texts = planted_data(5, seed=3).texts
    calls: list[tuple[bool, int]] = []  # (with gradients, rows) of each model call
    logits = planted_adapter.logits

    def counting(batch, **kwargs):
        embeds = kwargs.get("inputs_embeds")
        assert embeds is not None, "a model call outside the IG path"
        calls.append((embeds.requires_grad, int(embeds.shape[0])))
        return logits(batch, **kwargs)

    explainer = make_explainer(
        "integrated_gradients", planted_adapter, output="probability", **params
    )
    expected = explainer.explain(texts)
    planted_adapter.logits = counting  # type: ignore[method-assign]
    try:
        explained = explainer.explain(texts)
    finally:
        del planted_adapter.logits
    with_gradients = sum(rows for grad, rows in calls if grad)
    without = sum(rows for grad, rows in calls if not grad)
    assert with_gradients == pytest.approx(
        sum(e.quality["gradient_evaluations"] for e in explained)
    )
    if "n_steps" in params:  # alpha = 1 for each text, alpha = 0 once per baseline
        assert len(texts) < without <= 2 * len(texts)
    else:  # alpha = 1 and alpha = 0 are nodes with gradients
        assert without == 0
    reference = planted_adapter.predict_proba(planted_adapter.encode(texts))
    for e, again, p in zip(explained, expected, reference, strict=True):
        assert e.target == int(p.argmax())
        np.testing.assert_allclose(e.probabilities, p, rtol=1e-5, atol=1e-7)
        assert e.quality["f_x"] == pytest.approx(e.probabilities[e.target], abs=1e-7)
        np.testing.assert_allclose(e.scores, again.scores, rtol=1e-6, atol=1e-9)


def test_planted_model_baselines_are_neutral(planted_adapter, planted_test) -> None:
    """IG on the planted model has something to explain: f(x) - f(baseline) is large."""
    for baseline in ("pad", "mask"):
        explainer = make_explainer(
            "integrated_gradients", planted_adapter, baseline=baseline, n_steps=4
        )
        for e in explainer.explain(planted_test.texts):
            assert e.quality["f_x"] - e.quality["f_baseline"] > 2.0
    with torch.no_grad():
        neutral = planted_adapter.predict_proba(planted_adapter.encode(["[PAD] [PAD]", "[MASK]"]))
    assert (neutral.argmax(1) == 2).all()


def test_adaptive_steps_reach_the_target_delta(planted_adapter, request) -> None:
    """Adaptive Simpson stops at relative delta <= 0.01 on every text.

    The evaluation counts, the median delta and the uniform Gauss-Legendre step count
    that reaches the same median are recorded as junit properties, not asserted (the
    demo-model comparison is benchmarks/bench_gradients.py).
    """
    texts = planted_data(12, seed=5).texts
    adaptive = make_explainer("integrated_gradients", planted_adapter, target_delta=0.01)
    results = adaptive.explain(texts)
    for e in results:
        assert e.quality["converged"] is True
        assert e.quality["relative_delta"] <= 0.01
        assert e.quality["intervals"] >= 2
        assert e.params["rule"] == "adaptive_simpson" and "n_steps" not in e.params
    evaluations = [e.quality["n_steps"] for e in results]
    median_delta = np.median([e.quality["relative_delta"] for e in results])
    uniform_steps = None
    for n_steps in (16, 32, 64, 128):
        uniform = make_explainer("integrated_gradients", planted_adapter, n_steps=n_steps)
        results = uniform.explain(texts)
        if np.median([e.quality["relative_delta"] for e in results]) <= median_delta:
            uniform_steps = n_steps
            break
    record(request, "adaptive_evaluations_per_text", evaluations)
    record(request, "adaptive_median_relative_delta", float(median_delta))
    record(request, "gauss_legendre_steps_for_that_median", uniform_steps or ">128")


def test_adaptive_reports_not_converged_at_the_step_cap(planted_adapter: ModelAdapter) -> None:
    """``max_steps`` is honoured from the start: 5 is the smallest cap and is never exceeded."""
    for cap in (5, 6, 9):
        capped = make_explainer(
            "integrated_gradients", planted_adapter, target_delta=1e-6, max_steps=cap
        )
        for e in capped.explain(TEXTS[:2]):
            assert e.quality["converged"] is False
            assert e.quality["n_steps"] <= cap
    # Below float32 precision, with the default cap: it stops (see the synthetic test).
    tiny = make_explainer("integrated_gradients", planted_adapter, target_delta=1e-9)
    for e in tiny.explain(TEXTS[:2]):
        assert e.quality["converged"] is False and e.quality["n_steps"] <= 1025


def test_adaptive_batch_equals_one_by_one(planted_adapter: ModelAdapter) -> None:
    """Cross-text batching changes which rows share a forward pass, not any text's steps."""
    texts = planted_data(6, seed=11).texts
    adaptive = make_explainer("integrated_gradients", planted_adapter, target_delta=0.01)
    together = adaptive.explain(texts)
    for e in together:
        (alone,) = adaptive.explain([e.text])
        assert alone.quality["n_steps"] == e.quality["n_steps"]
        assert alone.quality["intervals"] == e.quality["intervals"]
        np.testing.assert_allclose(alone.scores, e.scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target_delta", [None, 0.01])
def test_per_text_targets_hold_when_the_prediction_takes_several_passes(
    planted_adapter: ModelAdapter, monkeypatch, target_delta: float | None
) -> None:
    """One row per pass: each text's own target is picked from its own pass's logits."""
    import textlens.explainers.gradient as gradient

    monkeypatch.setattr(gradient, "CPU_PASS_TOKENS", 1)
    ig = make_explainer(
        "integrated_gradients", planted_adapter, n_steps=8, target_delta=target_delta
    )
    texts, targets = TEXTS[:4], ["negative", None, 2, 1]
    together = ig.explain(texts, target=targets)
    for text, target, e in zip(texts, targets, together, strict=True):
        [alone] = ig.explain([text], target=target)
        assert e.target == alone.target
        np.testing.assert_allclose(e.scores, alone.scores, rtol=1e-5, atol=1e-7)
    assert [together[0].target, together[2].target, together[3].target] == [0, 2, 1]


def test_texts_with_the_same_baseline_share_its_gradient_evaluation(
    planted_adapter: ModelAdapter,
) -> None:
    """Same length and target: one evaluation at alpha = 0 serves every such text.

    The gradient rows the model really evaluates are counted; the results stay those
    of each text alone, and ``gradient_evaluations`` charges the shared row 1/k each.
    """
    texts = [  # three positive texts of 6 words, two negative of 6, one positive of 9
        "the wonderful movie was a day",
        "a superb film of the year",
        "the song was delightful at night",
        "an awful plot with the actor",
        "the dreadful road in a city",
        "the wonderful team at the game with a friend",
    ]
    lengths = planted_adapter.encode(texts).lengths
    assert lengths[:5] == [lengths[0]] * 5 and lengths[5] != lengths[0]
    rows = []
    logits = planted_adapter.logits

    def counting(batch, **kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is not None and embeds.requires_grad:
            rows.append(embeds.shape[0])
        return logits(batch, **kwargs)

    planted_adapter.logits = counting  # type: ignore[method-assign]
    try:
        for params in ({"target_delta": 0.01}, {"rule": "riemann_left", "n_steps": 4}):
            explainer = make_explainer("integrated_gradients", planted_adapter, **params)
            rows.clear()
            together = explainer.explain(texts)
            evaluated = sum(rows)
            labels = [e.target for e in together]
            assert labels[:3] == [labels[0]] * 3 and labels[3] == labels[4] != labels[0]
            # groups at alpha = 0: the three positives, the two negatives, the odd one
            assert evaluated == sum(e.quality["n_steps"] for e in together) - 3
            assert sum(e.quality["gradient_evaluations"] for e in together) == pytest.approx(
                evaluated
            )
            assert together[0].quality["gradient_evaluations"] == pytest.approx(
                together[0].quality["n_steps"] - 1 + 1 / 3
            )
            assert together[5].quality["gradient_evaluations"] == together[5].quality["n_steps"]
            for e in together:
                (alone,) = explainer.explain([e.text])
                assert alone.quality["gradient_evaluations"] == alone.quality["n_steps"]
                np.testing.assert_allclose(alone.scores, e.scores, rtol=1e-4, atol=1e-5)
                assert alone.delta == pytest.approx(e.delta, abs=1e-5)
    finally:
        del planted_adapter.logits


# Synthetic paths: ``g(alpha)`` per token and its exact antiderivative ``F``, driven
# through the same per-text refinement the explainer runs.
def _drive(g, F, target_delta: float, max_steps: int = 1025) -> _AdaptiveText:
    text = _AdaptiveText()
    pending = text.initial_nodes()
    while pending:
        assert len(text.nodes) + len(set(pending)) <= max_steps
        assert not set(pending) & set(text.nodes), "every round must add new nodes"
        for alpha in pending:
            text.nodes[alpha] = (float(F(alpha)), np.asarray(g(alpha), dtype=float))
        pending = text.refine(target_delta, max_steps)
    return text


def _relative_delta(text: _AdaptiveText, F) -> float:
    gap = F(1.0) - F(0.0)
    return abs(text.attributions().sum() - gap) / abs(gap)


def test_adaptive_is_exact_for_cubic_integrands_on_its_first_five_nodes() -> None:
    """Simpson's rule integrates cubics exactly: nothing to refine after 5 evaluations."""

    def g(a: float) -> list[float]:
        return [1 + a - 3 * a**2 + 4 * a**3, 2.0]

    def F(a: float) -> float:
        return a + a**2 / 2 - a**3 + a**4 + 2 * a

    text = _drive(g, F, 0.01)
    assert text.converged
    assert sorted(text.nodes) == [0.0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(text.attributions(), [1.5, 2.0], rtol=1e-12)


def _bump(a: float) -> np.ndarray:
    """A sharp sech^2 bump at 0.4 shared (with opposite signs) by two tokens, plus drift."""
    bump = 3.0 / (0.06 * np.cosh((a - 0.4) / 0.06) ** 2)
    return np.array([bump, -0.5 * bump + 1.0 + a, 0.2 * np.sin(6 * a)])


def _bump_f(a: float) -> float:
    return 1.5 * np.tanh((a - 0.4) / 0.06) + a + a * a / 2 + 0.2 * (1 - np.cos(6 * a)) / 6


def test_adaptive_follows_a_sharp_feature_with_few_evaluations() -> None:
    """11 evaluations reach 1% on this path (the previous rule, 9 initial nodes and a
    cancellation guard of 2, needed 15); every stop satisfies both criteria."""
    for target_delta, most in ((0.01, 11), (0.001, 21)):
        text = _drive(_bump, _bump_f, target_delta)
        assert text.converged
        assert len(text.nodes) <= most
        assert _relative_delta(text, _bump_f) <= target_delta
        gap = abs(_bump_f(1.0) - _bump_f(0.0))
        errors = [text._error(a, b) for a, b in text.intervals]
        assert sum(abs(e) for e in errors) <= text.GUARD * target_delta * gap


def test_adaptive_stops_where_float32_noise_starts() -> None:
    """A target below float32 precision ends in 'not converged', not in an endless loop.

    With the model's float32 outputs, the errors of tiny intervals are rounding noise
    that halving never reduces: refinement once halved the same spot down to intervals
    of width 0, whose midpoints were nodes already, so ``max_steps`` was never reached
    (a server request with ``target_delta=1e-6`` held the model for good).
    """

    def g32(a: float) -> np.ndarray:
        return _bump(a).astype(np.float32).astype(float)

    def f32(a: float) -> float:
        return float(np.float32(_bump_f(a)))

    for target_delta in (1e-9, 1e-12):
        text = _drive(g32, f32, target_delta)
        assert not text.converged
        assert min(b - a for a, b in text.intervals) >= text.MIN_WIDTH
        assert _relative_delta(text, _bump_f) < 1e-5  # as far as float32 allows


def test_adaptive_step_cap_on_a_synthetic_path() -> None:
    for cap in (5, 6, 7, 10):
        text = _drive(_bump, _bump_f, 1e-9, max_steps=cap)
        assert not text.converged
        assert len(text.nodes) <= cap


# ---------------------------------------------------------------------- parameters
def test_parameter_messages(planted_adapter: ModelAdapter) -> None:
    cases = {
        "n_steps": (
            0,
            "The 'n_steps' parameter of IntegratedGradients must be an int >= 1. Got 0.",
        ),
        "rule": (
            "simpson",
            "The 'rule' parameter of IntegratedGradients must be one of 'gauss_legendre', "
            "'riemann_left', 'riemann_right', 'riemann_middle', 'riemann_trapezoid'. "
            "Got 'simpson'.",
        ),
        "target_delta": (
            1.0,
            "The 'target_delta' parameter of IntegratedGradients must be None or a number "
            "> 0 and < 1. Got 1.0.",
        ),
        "baseline": (
            "unk",
            "The 'baseline' parameter of IntegratedGradients must be one of 'pad', 'mask', "
            "'zero'. Got 'unk'.",
        ),
    }
    for name, (value, message) in cases.items():
        with pytest.raises(InvalidParameterError) as info:
            make_explainer("integrated_gradients", planted_adapter, **{name: value})
        assert str(info.value) == message
    with pytest.raises(InvalidParameterError, match="'output' parameter of Saliency"):
        make_explainer("saliency", planted_adapter, output="logits")
    with pytest.raises(InvalidParameterError) as info:
        make_explainer("integrated_gradients", planted_adapter, rule="riemann_trapezoid", n_steps=1)
    assert "must be >= 2 with rule='riemann_trapezoid'. Got 1." in str(info.value)


@pytest.mark.parametrize("rule", RULES)
def test_quadrature_weights_sum_to_one(rule: str) -> None:
    alphas, weights = quadrature(rule, 7)
    assert len(alphas) == len(weights) == 7
    assert all(0.0 <= a <= 1.0 for a in alphas)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)


def test_gauss_legendre_is_exact_for_polynomials_of_degree_2n_minus_1() -> None:
    alphas, weights = quadrature("gauss_legendre", 4)
    for degree in range(8):
        integral = float(np.dot(weights, np.asarray(alphas) ** degree))
        assert integral == pytest.approx(1 / (degree + 1), abs=1e-12)


# ---------------------------------------------------------------------- analytic model
class BagConfig(PretrainedConfig):
    model_type = "textlens-test-bag"

    def __init__(self, vocab_size: int = 8, hidden_size: int = 4, **kwargs: Any) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = 0
        super().__init__(**kwargs)


class BagOfEmbeddings(PreTrainedModel):
    """``logits = W . sum_t(mask_t * embedding_t) + b``: linear in every word embedding."""

    config_class = BagConfig

    def __init__(self, config: BagConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        if inputs_embeds is None:
            inputs_embeds = self.embeddings(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long)
        pooled = (inputs_embeds * attention_mask.unsqueeze(-1).to(inputs_embeds.dtype)).sum(1)
        return SequenceClassifierOutput(logits=self.classifier(pooled))


@pytest.fixture(scope="module")
def bag() -> ModelAdapter:
    tokenizer = wordpiece_tokenizer(FILLER + POSITIVE + NEGATIVE + SUBWORDS)
    labels = ["negative", "positive", "neutral"]
    config = BagConfig(
        vocab_size=len(tokenizer), hidden_size=6, num_labels=3, id2label=dict(enumerate(labels))
    )
    torch.manual_seed(0)
    model = BagOfEmbeddings(config).double()  # float64: "exact" means to 1e-12
    with torch.no_grad():
        model.embeddings.weight.normal_()
        model.classifier.weight.normal_()
        model.classifier.bias.normal_()
    return ModelAdapter(model, tokenizer, model_id="bag")


def _analytic(bag: ModelAdapter, text: str, target: int, baseline: str) -> np.ndarray:
    encoding = bag.encode([text])
    ids = encoding.input_ids[0]
    special = torch.tensor(encoding.special[0])
    embedding = bag.embedding_matrix.detach()
    x = embedding[ids]
    if baseline == "zero":
        x_base = torch.zeros_like(x)
    else:
        fill = bag.pad_token_id if baseline == "pad" else bag.mask_token_id
        x_base = embedding[torch.full_like(ids, fill)]
    x_base[special] = x[special]
    w = bag.model.classifier.weight.detach()[target]
    return ((x - x_base) @ w).numpy()


@pytest.mark.parametrize("baseline", ["pad", "mask", "zero"])
@pytest.mark.parametrize(
    "params",
    [
        {"n_steps": 1, "rule": "gauss_legendre"},
        {"n_steps": 2, "rule": "riemann_trapezoid"},
        {"n_steps": 3, "rule": "riemann_left"},
        {"n_steps": 50},
        {"target_delta": 0.01},
    ],
)
def test_integrated_gradients_are_exact_on_a_linear_model(bag, baseline: str, params: dict) -> None:
    explainer = make_explainer("integrated_gradients", bag, baseline=baseline, **params)
    for target in (0, 1, 2):
        for e in explainer.explain(TEXTS, target=target):
            expected = _analytic(bag, e.text, target, baseline)
            np.testing.assert_allclose(e.scores, expected, rtol=1e-12, atol=1e-12)
            assert abs(e.delta) <= 1e-5 * abs(e.quality["f_x"] - e.quality["f_baseline"])


def test_gradient_x_input_and_saliency_are_exact_on_a_linear_model(bag: ModelAdapter) -> None:
    w = bag.model.classifier.weight.detach()
    grad_x_input = make_explainer("grad_x_input", bag).explain(TEXTS, target=2)
    saliency = make_explainer("saliency", bag).explain(TEXTS, target=2)
    for a, s in zip(grad_x_input, saliency, strict=True):
        ids = bag.encode([a.text]).input_ids[0]
        x = bag.embedding_matrix.detach()[ids]
        np.testing.assert_allclose(a.scores, (x @ w[2]).numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s.scores, float(w[2].norm()), rtol=1e-12)


def test_path_rows_of_different_lengths_are_not_padded_together(tiny_adapter, monkeypatch) -> None:
    """Each model call of the IG path holds rows of one length when lengths differ by
    more than the slack: padding a 3-word text's 50 steps to a 12-word one's width costs
    as much as real tokens. The attributions are those of explaining each text alone."""
    texts = ["good movie", "a long and rather boring but in the end quite good movie here"]
    widths: list[tuple[int, int]] = []
    original = tiny_adapter.logits

    def spy(batch, **kwargs):
        if "inputs_embeds" in kwargs:  # a path call (not the prediction)
            widths.append((int(kwargs["inputs_embeds"].shape[1]), min(batch.lengths)))
        return original(batch, **kwargs)

    explainer = make_explainer("integrated_gradients", tiny_adapter, n_steps=8)
    alone = [explainer.explain([t])[0] for t in texts]
    monkeypatch.setattr(tiny_adapter, "logits", spy)
    together = explainer.explain(texts)
    assert widths and all(width == shortest for width, shortest in widths), widths
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["integrated_gradients", "grad_x_input", "saliency"])
def test_gradient_passes_on_a_cpu_stay_under_the_cpu_pass_size(
    tiny_adapter, monkeypatch, method
) -> None:
    """On a CPU a forward+backward pass holds at most CPU_PASS_TOKENS tokens (with IG's
    attention term) even under a larger budget, and exactly the budget's rows under a
    smaller one; the scores do not depend on how the rows were split."""
    from textlens.explainers.gradient import CPU_PASS_TOKENS, _row_cost

    texts = [" ".join(["good movie"] * k) for k in range(1, 31)] * 3  # ~3,500 tokens
    passes: list[int] = []
    original = tiny_adapter.logits

    def spy(batch, **kwargs):
        if torch.is_grad_enabled() and "inputs_embeds" in kwargs:
            rows, width = kwargs["inputs_embeds"].shape[:2]
            passes.append(rows * (_row_cost(width) if method == "integrated_gradients" else width))
        return original(batch, **kwargs)

    params = {"n_steps": 50} if method == "integrated_gradients" else {}
    small = make_explainer(method, tiny_adapter, max_batch_tokens=1000, **params).explain(texts)
    monkeypatch.setattr(tiny_adapter, "logits", spy)
    large = make_explainer(method, tiny_adapter, max_batch_tokens=100_000, **params).explain(texts)
    assert passes and max(passes) <= CPU_PASS_TOKENS, max(passes)
    assert max(passes) > CPU_PASS_TOKENS // 2  # the passes are filled, not tiny
    for a, b in zip(small, large, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------- LayerNorm
def test_gradient_x_input_is_minus_the_gradient_on_position_and_segment_embeddings(
    planted_adapter: ModelAdapter,
) -> None:
    """BERT's embedding LayerNorm is scale-invariant, so grad . word = -grad . (pos + seg).

    Computed here independently with the Hugging Face model's own modules: the word's
    embedding enters grad_x_input only through the gradient.
    """
    texts = TEXTS[:3]
    explanations = make_explainer("grad_x_input", planted_adapter).explain(texts)
    hf = planted_adapter.model
    embeddings = hf.bert.embeddings
    for text, explanation in zip(texts, explanations, strict=True):
        batch = planted_adapter.tokenizer([text], return_tensors="pt")
        ids = batch["input_ids"]
        types = batch.get("token_type_ids", torch.zeros_like(ids))
        words = embeddings.word_embeddings(ids).detach().requires_grad_(True)
        logit = hf(inputs_embeds=words, token_type_ids=types).logits[0, explanation.target]
        (grad,) = torch.autograd.grad(logit, words)
        positions = embeddings.position_embeddings(torch.arange(ids.shape[1]))[None]
        others = (positions + embeddings.token_type_embeddings(types)).detach()
        expected = -(grad * others).sum(-1)[0].numpy()
        scores = np.asarray(explanation.scores)
        np.testing.assert_allclose(scores, expected, atol=1e-5 * np.abs(scores).max())
        # ...and on BERT the scores are small but not round-off
        assert 1e-3 < explanation.quality["input_alignment"] < 1


def _deberta_v3() -> ModelAdapter:
    """A tiny DeBERTa-v3: relative attention only, no absolute positions, no segments."""
    from test_tokenizers import family

    torch.manual_seed(0)
    model, tokenizer = family("deberta-v3")
    return ModelAdapter(model.eval(), tokenizer, model_id="tiny-deberta-v3")


def test_gradient_x_input_says_when_its_scores_are_round_off() -> None:
    """DeBERTa-v3's LayerNorm (epsilon 1e-7) sees the word embedding alone: g . x ~ 0."""
    adapter = _deberta_v3()
    with pytest.warns(UninformativeScoresWarning, match="numerically zero on tiny-deberta-v3"):
        explanations = make_explainer("grad_x_input", adapter).explain(TEXTS[:2])
    for explanation in explanations:
        assert explanation.quality["uninformative"] is True
        assert explanation.quality["input_alignment"] < 1e-3
        assert "numerically zero" in explanation.to_html()


def test_gradient_x_input_on_bert_is_not_flagged(tiny_adapter: ModelAdapter) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UninformativeScoresWarning)
        explanations = make_explainer("grad_x_input", tiny_adapter).explain(TEXTS[:3])
    for explanation in explanations:
        assert "uninformative" not in explanation.quality
        assert explanation.quality["input_alignment"] > 1e-3
