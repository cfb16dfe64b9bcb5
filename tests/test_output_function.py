"""How logits become probabilities: softmax, a sigmoid per label, or a regression's raw values.

A multi-label classifier (``problem_type='multi_label_classification'``), a one-logit
scorer such as a cross-encoder, and a regression are all ``*ForSequenceClassification``
models; transformers' text-classification pipeline reports sigmoid scores for the first
two and raw values for the last. The pipeline, run in-process on the same tiny models,
is the oracle here.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from test_gradient import assert_agrees_with_captum
from transformers import TextClassificationPipeline

import textlens as tl
from textlens.cli import main
from textlens.errors import InvalidParameterError
from textlens.evaluation import evaluate_explanations, faithfulness
from textlens.explainers import IntegratedGradients, Occlusion, Shap
from textlens.model import ModelAdapter, output_function_of

TEXTS = ["the movie was wonderful", "an awful plot with a dreadful actor", "the city at night"]

#: (problem_type, num_labels) -> the output function transformers' pipeline applies.
KINDS = {
    "single": (None, 3, "softmax"),
    "single_explicit": ("single_label_classification", 2, "softmax"),
    "multi": ("multi_label_classification", 3, "sigmoid"),
    "one_logit": (None, 1, "sigmoid"),
    "regression": ("regression", 1, "none"),
}


def _adapter(planted: ModelAdapter, kind: str, **kwargs) -> ModelAdapter:
    """The planted model (negative, positive, neutral) as a model of ``kind``.

    A one-output kind scores positive against negative: its head is the difference of
    the planted model's two rows, so its value follows the planted words too.
    """
    problem_type, num_labels, _ = KINDS[kind]
    model = copy.deepcopy(planted.model)
    if num_labels == 1:
        head = model.classifier
        model.classifier = torch.nn.Linear(head.in_features, 1)
        with torch.no_grad():
            model.classifier.weight.copy_(head.weight[1:2] - head.weight[0:1])
            model.classifier.bias.copy_(head.bias[1:2] - head.bias[0:1])
        model.config.num_labels = 1
        model.config.id2label, model.config.label2id = {0: "positive"}, {"positive": 0}
    elif num_labels == 2:
        model.classifier.weight.data = model.classifier.weight.data[:2].clone()
        model.classifier.bias.data = model.classifier.bias.data[:2].clone()
        model.config.num_labels = 2
        model.config.id2label = {0: "negative", 1: "positive"}
        model.config.label2id = {"negative": 0, "positive": 1}
    model.config.problem_type = problem_type
    return ModelAdapter(model.eval(), planted.tokenizer, model_id=f"tiny-{kind}", **kwargs)


@pytest.fixture(scope="module", params=list(KINDS))
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def adapters(planted_adapter: ModelAdapter) -> dict[str, ModelAdapter]:
    return {k: _adapter(planted_adapter, k) for k in KINDS}


def _pipeline_scores(adapter: ModelAdapter, texts: list[str]) -> np.ndarray:
    pipe = TextClassificationPipeline(model=adapter.model, tokenizer=adapter.tokenizer, top_k=None)
    out = []
    for rows in pipe(texts):
        by_label = {r["label"]: r["score"] for r in rows}
        out.append([by_label[label] for label in adapter.labels])
    return np.array(out)


def test_the_function_is_read_from_the_config_as_the_pipeline_does(kind, adapters) -> None:
    adapter = adapters[kind]
    assert adapter.output_function == KINDS[kind][2] == output_function_of(adapter.model.config)
    assert adapter.has_probabilities == (KINDS[kind][2] != "none")
    ours = adapter.predict_proba(adapter.encode(TEXTS))
    np.testing.assert_allclose(ours, _pipeline_scores(adapter, TEXTS), atol=1e-6)
    [e] = tl.explain(adapter, TEXTS[:1], method="saliency")
    np.testing.assert_allclose(e.probabilities, ours[0], atol=1e-6)


def test_multi_label_probabilities_are_a_sigmoid_per_label(adapters) -> None:
    adapter = adapters["multi"]
    encoding = adapter.encode(TEXTS)
    logits = adapter.predict_logits(encoding).astype(np.float64)
    probabilities = adapter.predict_proba(encoding)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert not np.allclose(probabilities.sum(axis=1), 1.0)  # labels are independent
    [e] = tl.explain(adapter, TEXTS[:1], method="saliency")
    assert e.predicted_label == adapter.labels[int(logits[0].argmax())]


@pytest.mark.parametrize("kind", ["multi", "one_logit", "regression"])
def test_integrated_gradients_of_the_probability_agree_with_captum(adapters, kind) -> None:
    adapter = adapters[kind]
    target = adapter.num_labels - 1
    assert_agrees_with_captum(adapter, TEXTS, output="probability", target=target, n_steps=12)
    [e] = IntegratedGradients(adapter, output="probability").explain(TEXTS[:1], target=target)
    logit = float(adapter.predict_logits(adapter.encode(TEXTS[:1]))[0, target])
    expected = logit if kind == "regression" else 1 / (1 + math.exp(-logit))
    assert e.quality["f_x"] == pytest.approx(expected, abs=1e-6)


def test_a_one_logit_model_gets_perturbation_scores_not_zeros(adapters) -> None:
    """Under a softmax, one logit is always probability 1: every occlusion drop was 0."""
    [e] = Occlusion(adapters["one_logit"]).explain(TEXTS[1:2])
    assert e.probabilities[0] < 1.0
    assert max(abs(s) for s in e.scores) > 1e-4


def test_one_word_shap_is_the_sigmoid_difference(adapters) -> None:
    adapter = adapters["multi"]
    [s] = Shap(adapter, budget=8).explain(["wonderful"], target=1)
    masked = adapter.encode(["[MASK]"])
    full = adapter.encode(["wonderful"])
    sigmoid = lambda e: 1 / (1 + np.exp(-adapter.predict_logits(e)[0, 1].astype(np.float64)))  # noqa: E731
    assert s.quality["f_full"] == pytest.approx(sigmoid(full), abs=1e-6)
    assert s.quality["f_empty"] == pytest.approx(sigmoid(masked), abs=1e-6)
    assert sum(s.scores) == pytest.approx(sigmoid(full) - sigmoid(masked), abs=1e-6)


def test_a_regression_explains_its_raw_value(adapters) -> None:
    adapter = adapters["regression"]
    raw = float(adapter.predict_logits(adapter.encode(TEXTS[1:2]))[0, 0])
    as_probability = Occlusion(adapter, output="probability").explain(TEXTS[1:2])[0]
    as_logit = Occlusion(adapter, output="logit").explain(TEXTS[1:2])[0]
    assert as_probability.probabilities == pytest.approx((raw,), abs=1e-6)
    np.testing.assert_allclose(as_probability.scores, as_logit.scores, atol=1e-9)
    [s] = Shap(adapter, budget=64).explain([TEXTS[1] + " in the city at night"])
    assert "logistic" not in s.quality["estimator"]  # the surrogate assumes (0, 1) values
    result = faithfulness(adapter, [as_probability], output="probability")
    assert result.log_odds is None  # raw values have no log-odds
    assert result.comprehensiveness.range == (-math.inf, math.inf)


def test_a_regression_leaderboard_names_the_output_it_measured(adapters) -> None:
    """Its curves are of the raw value, so the report must not say "probability"."""
    adapter = adapters["regression"]
    explanations = {"occlusion": Occlusion(adapter).explain(TEXTS)}
    board = evaluate_explanations(adapter, explanations, curve_steps=4)
    assert board.settings["output"] == "logit"
    assert "explained output: target logit" in board.to_text()
    described = [m.description for m in board.columns if m.family == "faithfulness"]
    assert described and all("probability" not in d for d in described)


def test_the_function_can_be_overridden_and_is_checked(adapters) -> None:
    base = adapters["single"]
    adapter = ModelAdapter(base.model, base.tokenizer, output_function="sigmoid")
    logits = adapter.predict_logits(adapter.encode(TEXTS[:1])).astype(np.float64)
    np.testing.assert_allclose(
        adapter.predict_proba(adapter.encode(TEXTS[:1])), 1 / (1 + np.exp(-logits)), atol=1e-6
    )
    with pytest.raises(InvalidParameterError, match="output_function must be one of"):
        ModelAdapter(base.model, base.tokenizer, output_function="relu")


def test_a_saved_multi_label_model_loads_with_its_sigmoid(adapters, tmp_path, capsys) -> None:
    adapter = adapters["multi"]
    adapter.model.save_pretrained(tmp_path)
    adapter.tokenizer.save_pretrained(tmp_path)
    assert tl.load(tmp_path).output_function == "sigmoid"
    assert tl.load(tmp_path, output_function="softmax").output_function == "softmax"

    expected = adapter.predict_proba(adapter.encode(TEXTS[:1]))[0]
    args = ["explain", str(tmp_path), TEXTS[0], "--method", "saliency", "--format", "json"]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out)
    got = [row["prediction"]["probabilities"][label] for label in adapter.labels]
    np.testing.assert_allclose(got, expected, atol=1e-6)

    assert main([*args, "--output-function", "softmax"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert sum(row["prediction"]["probabilities"].values()) == pytest.approx(1.0)
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--output-function", "tanh"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tanh'" in capsys.readouterr().err
