"""Common checks run on every registered explainer (scikit-learn's ``check_estimator`` idea).

Everything here iterates :data:`textlens.explainers.REGISTRY`, so a method registered
later is checked without touching this file. A method that is slow with its default
parameters gets cheaper ones in :data:`CHEAP_PARAMS` (keyed by registered name).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import PLANTED_RATES, TEXTS, record

from textlens.errors import (
    InvalidInputError,
    InvalidParameterError,
    InvalidTargetError,
    UnknownMethodError,
)
from textlens.explainers import REGISTRY, Explainer, get_explainer_class, make_explainer
from textlens.explanation import Explanation
from textlens.model import ModelAdapter

METHODS = sorted(REGISTRY)

# Cheaper-than-default parameters for the slow methods; names a method lacks are ignored.
# 'information' gets a short sample of its own (its bundled one is long and slow for tiny
# models) and no disk cache (tests must not write to the user's cache folder).
CHEAP_PARAMS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 16},
    "lime": {"budget": 64},
    "shap": {"budget": 64},
    "information": {
        "max_steps": 40,
        "n_samples": 2,
        "use_cache": False,
        "sample_texts": ["the movie was fine", "a story of the city", "the road at night"],
    },
}

# Methods whose planted word must rank first (word level) on this share of texts. Others
# are measured and reported (terminal summary, junit property) but not held to a bar.
PLANTED_MIN_RATE = {"integrated_gradients": 0.95, "saliency": 0.95}

# Values tried for every declared parameter; each one its constraints reject must raise.
BAD_VALUES: tuple[Any, ...] = (0, -1, 0.0, -0.5, 1.5, 10**9, "bogus", None, True, math.nan)

# Scores must agree to RTOL of the text's largest absolute score, plus ATOL: the model runs
# in float32, so outputs of order 1 (probabilities) carry round-off of about 1e-7, and
# scores that are differences of such outputs (perturbation methods on a saturated
# prediction) cannot agree more closely than that.
RTOL = 1e-5
ATOL = 1e-7


def params_for(name: str, **overrides: Any) -> dict[str, Any]:
    """Cheap test parameters for ``name`` (plus ``seed=0`` when it has a seed)."""
    known = get_explainer_class(name)._all_constraints()
    params = {k: v for k, v in CHEAP_PARAMS.get(name, {}).items() if k in known}
    if "seed" in known:
        params["seed"] = 0
    params.update(overrides)
    return params


def build(name: str, model: ModelAdapter, **overrides: Any) -> Explainer:
    return make_explainer(name, model, **params_for(name, **overrides))


def assert_same_scores(a: Explanation, b: Explanation) -> None:
    assert a.tokens == b.tokens
    x, y = np.asarray(a.scores), np.asarray(b.scores)
    scale = max(np.abs(x).max(), np.abs(y).max())
    rtol = max(RTOL, getattr(REGISTRY[a.method], "batch_rtol", RTOL))
    assert np.abs(x - y).max() <= rtol * scale + ATOL, (a.method, x, y)
    # Whatever the tolerance, batching must not change the ranking.
    assert (
        np.array_equal(np.argsort(-x, kind="stable")[:3], np.argsort(-y, kind="stable")[:3])
        or rtol == RTOL
    )


@pytest.fixture(scope="module", params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(planted_adapter: ModelAdapter) -> ModelAdapter:
    """A trained model: an untrained one's outputs barely move, so its scores are round-off."""
    return planted_adapter


@pytest.fixture(scope="module")
def explained(method: str, model: ModelAdapter) -> list[Explanation]:
    return build(method, model).explain(TEXTS)


# ---------------------------------------------------------------------- registry
def test_registry_is_an_explicit_dict_of_explainer_classes() -> None:
    assert METHODS, "no method is registered"
    for name, cls in REGISTRY.items():
        assert issubclass(cls, Explainer)
        assert cls.name == name
        assert cls.description and "\n" not in cls.description
        assert cls.reference.startswith("https://")


def test_unknown_method_lists_the_registered_ones(model: ModelAdapter) -> None:
    with pytest.raises(UnknownMethodError) as info:
        make_explainer("integrated_gradient", model)
    assert isinstance(info.value, KeyError)
    message = str(info.value)
    assert "'integrated_gradient'" in message
    assert all(name in message for name in METHODS)


def test_a_list_of_methods_is_a_clear_error(model: ModelAdapter) -> None:
    with pytest.raises(UnknownMethodError, match="one name such as 'saliency', not a list"):
        make_explainer(["saliency", "grad_x_input"], model)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- results
def test_one_finite_score_per_token(method: str, explained: list[Explanation], model) -> None:
    encoding = model.encode(TEXTS)
    assert len(explained) == len(TEXTS)
    for i, e in enumerate(explained):
        assert e.text == TEXTS[i]
        assert e.method == method
        assert list(e.tokens) == encoding.tokens[i]
        assert len(e.scores) == len(e.tokens) == len(e.offsets) == len(e.special) == len(e.word_ids)
        assert all(math.isfinite(s) for s in e.scores)
        if e.uncertainty is not None:
            assert len(e.uncertainty) == len(e.tokens)
        assert e.labels == tuple(model.labels)
        assert math.isclose(sum(e.probabilities), 1.0, rel_tol=1e-6)
        assert e.target == e.predicted  # target=None explains the predicted class
        assert e.model_id == model.model_id


def test_params_are_recorded(method: str, explained: list[Explanation], model) -> None:
    explainer = build(method, model)
    for e in explained:
        assert e.params == explainer.get_params()
        assert "max_batch_tokens" not in e.params
        json.dumps(e.params)  # JSON-ready


def test_deterministic(method: str, explained: list[Explanation], model) -> None:
    again = build(method, model).explain(TEXTS)
    for a, b in zip(explained, again, strict=True):
        assert a.scores == b.scores
        assert a.quality == b.quality


def test_batched_equals_one_by_one(method: str, explained: list[Explanation], model) -> None:
    # TEXTS have different lengths, so the batched run pads all but the longest.
    explainer = build(method, model)
    for text, batched in zip(TEXTS, explained, strict=True):
        [alone] = explainer.explain([text])
        assert_same_scores(batched, alone)


def test_small_token_budget_gives_the_same_scores(
    method: str, explained: list[Explanation], model
) -> None:
    # A budget smaller than one padded text forces one (or fewer) rows per model call.
    small = build(method, model, max_batch_tokens=8).explain(TEXTS)
    for a, b in zip(explained, small, strict=True):
        assert_same_scores(a, b)


def test_target_by_index_and_by_name(method: str, model: ModelAdapter) -> None:
    explainer = build(method, model)
    by_name = explainer.explain(TEXTS[:2], target="positive")
    by_index = explainer.explain(TEXTS[:2], target=1)
    for a, b in zip(by_name, by_index, strict=True):
        assert a.target == b.target == 1
        assert a.target_label == "positive"
        assert a.scores == b.scores


@pytest.mark.parametrize("budget", [None, 8])
def test_one_target_per_text_equals_each_text_alone(
    method: str, model: ModelAdapter, budget: int | None
) -> None:
    """A list of targets (None = predicted) gives each text what explaining it alone gives;
    a budget of 8 tokens splits the texts over many passes."""
    explainer = build(method, model, **({} if budget is None else {"max_batch_tokens": budget}))
    texts, targets = TEXTS[:4], ["negative", None, 2, 1]
    together = explainer.explain(texts, target=targets)
    for text, target, e in zip(texts, targets, together, strict=True):
        [alone] = explainer.explain([text], target=target)
        assert e.target == alone.target
        assert_same_scores(e, alone)
    assert [e.target for e in together[::2]] == [0, 2]
    assert together[1].target == int(np.argmax(together[1].probabilities))
    gold = [1, 0, 2, 1]
    as_list = [e.scores for e in explainer.explain(texts, target=gold)]
    for as_array in (np.array(gold), torch.tensor(gold)):
        assert [e.scores for e in explainer.explain(texts, target=as_array)] == as_list


def test_per_text_targets_are_checked_before_any_model_call(
    method: str, model: ModelAdapter
) -> None:
    explainer = build(method, model)
    calls = []
    handle = model.model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(InvalidTargetError, match="2 targets were given for 3 texts"):
            explainer.explain(TEXTS[:3], target=[0, 1])
        with pytest.raises(InvalidTargetError, match="'bogus'"):
            explainer.explain(TEXTS[:2], target=[0, "bogus"])
    finally:
        handle.remove()
    assert calls == []


def test_prediction_is_the_models(method: str, explained: list[Explanation], model) -> None:
    """Whether taken from the method's own forward pass or from a separate one."""
    expected = model.predict_proba(model.encode(TEXTS))
    for e, p in zip(explained, expected, strict=True):
        np.testing.assert_allclose(e.probabilities, p, rtol=0, atol=1e-6)
        assert e.target == int(np.argmax(p))


@pytest.fixture
def single_pass(method: str, model: ModelAdapter) -> Explainer:
    """The method's explainer, if it takes the prediction from its own forward pass."""
    explainer = build(method, model)
    if not explainer.predicts_while_scoring:
        pytest.skip(f"{method} predicts in a pass of its own")
    return explainer


def test_single_pass_methods_predict_without_a_model_call_of_its_own(
    single_pass: Explainer, model: ModelAdapter
) -> None:
    """explain() costs the model calls of scoring alone: the prediction shares them."""
    explainer = single_pass
    encoding = model.encode(TEXTS[:3])
    calls = []
    handle = model.model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        for target in (None, "negative"):
            calls.clear()
            explained = explainer.explain(TEXTS[:3], target=target)
            explaining = len(calls)
            calls.clear()
            explainer._score_encoding(encoding, [e.target for e in explained])
            assert explaining == len(calls)
            if explainer.name != "integrated_gradients":  # one pass scores them all
                assert explaining == 1
    finally:
        handle.remove()


def test_single_pass_scores_equal_scores_for_given_targets(
    single_pass: Explainer, model: ModelAdapter
) -> None:
    """The shared pass scores the chosen target exactly as scoring that target directly."""
    explainer = single_pass
    encoding = model.encode(TEXTS[:3])
    for target in (None, 0, 2):
        explained = explainer.explain(TEXTS[:3], target=target)
        direct = explainer._score_encoding(encoding, [e.target for e in explained])
        for e, s in zip(explained, direct, strict=True):
            np.testing.assert_allclose(e.scores, s.values[: len(e.tokens)], rtol=1e-6, atol=1e-9)


def test_json_round_trip(explained: list[Explanation]) -> None:
    for e in explained:
        data = json.loads(json.dumps(e.to_dict(), allow_nan=False))
        assert Explanation.from_dict(data) == e


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("target", ["nonexistent", "Positive", 3, -1, 99, True, 1.0])
def test_bad_target_lists_valid_labels(method: str, model: ModelAdapter, target: Any) -> None:
    explainer = build(method, model)
    with pytest.raises(InvalidTargetError) as info:
        explainer.explain(TEXTS[:1], target=target)
    message = str(info.value)
    assert repr(target) in message
    assert "0='negative', 1='positive', 2='neutral'" in message


def test_bad_parameter_values_name_the_parameter(method: str, model: ModelAdapter) -> None:
    cls = get_explainer_class(method)
    constraints = cls._all_constraints()
    tried = 0
    for param, allowed in constraints.items():
        for value in BAD_VALUES:
            if any(c.accepts(value) for c in allowed):
                continue
            tried += 1
            with pytest.raises(InvalidParameterError) as info:
                make_explainer(method, model, **params_for(method, **{param: value}))
            message = str(info.value)
            prefix = f"The {param!r} parameter of {cls.__name__} must be "
            assert message.startswith(prefix), message
            assert message.endswith(f"Got {value!r}."), message
    assert tried, f"{method} declares no parameter that can be wrong"


def test_a_path_or_bare_model_is_refused_with_the_fix(method: str, model: ModelAdapter) -> None:
    for wrong, fragment in [
        ("demo", "model = textlens.load('demo')"),
        (Path("some/folder"), "model = textlens.load('some/folder')"),
        (model.model, "textlens.ModelAdapter(model, tokenizer)"),
        (None, "got a NoneType"),
    ]:
        with pytest.raises(InvalidParameterError, match=re.escape(fragment)):
            make_explainer(method, wrong)


def test_unknown_parameter_name(method: str, model: ModelAdapter) -> None:
    with pytest.raises(InvalidParameterError) as info:
        make_explainer(method, model, n_stepz=3)
    message = str(info.value)
    assert "'n_stepz'" in message
    assert get_explainer_class(method).__name__ in message
    assert all(name in message for name in get_explainer_class(method)._all_constraints())


@pytest.mark.parametrize(
    "texts, fragment",
    [
        ("the movie", "single string"),
        ([], "No texts"),
        ([""], "empty"),
        (["the movie", "   \n\t"], "Text 1 is empty"),
        (["the movie", None], "Text 1 is of type NoneType, not a string"),
        ([b"the movie"], "Text 0 is of type bytes"),
        (None, "Expected a list of texts, got NoneType."),
        (b"the movie", "got bytes: decode it first"),
    ],
)
def test_bad_input(method: str, model: ModelAdapter, texts: Any, fragment: str) -> None:
    explainer = build(method, model)
    with pytest.raises(InvalidInputError) as info:
        explainer.explain(texts)
    assert fragment in str(info.value)


def test_a_generator_of_texts_is_read_once(method: str, model: ModelAdapter) -> None:
    texts = ["the movie", "a day"]
    [first, second] = build(method, model).explain(t for t in texts)  # was a TypeError
    assert (first.text, second.text) == tuple(texts)


# ---------------------------------------------------------------------- planted words
@pytest.fixture(scope="module")
def planted_explanations(method: str, model: ModelAdapter, planted_test) -> list[Explanation]:
    return build(method, model).explain(planted_test.texts)


def test_planted_word_ranks_first(
    method: str, planted_explanations: list[Explanation], planted_test, request
) -> None:
    """Share of texts whose planted word is the top word; reported for every method."""
    pairs = list(zip(planted_explanations, planted_test.planted, strict=True))
    rate = sum(e.top(1)[0][0] == word for e, word in pairs) / len(pairs)
    PLANTED_RATES[method] = rate
    record(request, "planted_top1_rate", rate)
    assert [e.predicted for e in planted_explanations] == planted_test.labels
    minimum = PLANTED_MIN_RATE.get(method)
    if minimum is not None:
        assert rate >= minimum, f"{method}: planted word first on {rate:.0%} of texts"
