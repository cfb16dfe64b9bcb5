"""The result object: word aggregation, top units, JSON round trip (no model needed)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from textlens.errors import InvalidInputError, InvalidParameterError
from textlens.explanation import Explanation, Span

TEXT = "Unbelievably good, truly"
#        0         1         2
#        0123456789012345678901234


def make(**changes) -> Explanation:
    """[CLS] un ##believ ##ably good , truly [SEP] with hand-picked scores."""
    base = Explanation(
        text=TEXT,
        tokens=("[CLS]", "un", "##believ", "##ably", "good", ",", "truly", "[SEP]"),
        offsets=((0, 0), (0, 2), (2, 8), (8, 12), (13, 17), (17, 18), (19, 24), (0, 0)),
        special=(True, False, False, False, False, False, False, True),
        word_ids=(None, 0, 0, 0, 1, 2, 3, None),
        scores=(0.5, 0.1, 0.2, -0.05, -0.9, 0.01, 0.3, -0.4),
        method="integrated_gradients",
        params={"baseline": "pad", "n_steps": 50, "rule": "gauss_legendre"},
        target=1,
        labels=("negative", "positive"),
        probabilities=(0.25, 0.75),
        model_id="tiny",
        quality={"delta": -0.002, "relative_delta": 0.001, "converged": True},
    )
    return replace(base, **changes)


def test_words_sum_subwords_and_drop_specials() -> None:
    e = make()
    assert e.words == (
        Span("Unbelievably", 0, 12, (1, 2, 3)),
        Span("good", 13, 17, (4,)),
        Span(",", 17, 18, (5,)),
        Span("truly", 19, 24, (6,)),
    )
    assert all(TEXT[w.start : w.end] == w.text for w in e.words)
    assert e.word_scores == pytest.approx((0.25, -0.9, 0.01, 0.3))
    units, scores = e.aggregate("word")
    assert units == ("Unbelievably", "good", ",", "truly")
    assert scores == e.word_scores
    assert e.aggregate("token") == (e.tokens, e.scores)  # specials kept at token level


def test_aggregate_spans_is_an_exact_sum() -> None:
    e = make(scores=(0.0, 1e16, 1.0, -1e16, 0.0, 0.0, 0.0, 0.0))
    assert e.aggregate_spans([Span("x", 0, 12, (1, 2, 3))]) == (1.0,)  # math.fsum, not sum


def test_top_orders_by_absolute_score() -> None:
    e = make()
    assert e.top(2) == [("good", -0.9), ("truly", 0.3)]
    assert e.top(10, level="word") == [
        ("good", -0.9),
        ("truly", 0.3),
        ("Unbelievably", 0.25),
        (",", 0.01),
    ]
    assert e.top(1, level="token") == [("good", -0.9)]
    assert e.top(0) == []


def test_unknown_level() -> None:
    with pytest.raises(InvalidParameterError) as info:
        make().aggregate("sentence")
    assert str(info.value).startswith("The 'level' parameter must be one of 'token', 'word'")
    assert str(info.value).endswith("Got 'sentence'.")


def test_blank_words_join_the_next_word() -> None:
    """SentencePiece marks a word start with '▁', which may be a token of its own."""
    text = "a  bc"  # double space: a lone '▁' token covering one space
    e = make(
        text=text,
        tokens=("<s>", "▁a", "▁", "▁b", "c", "</s>"),
        offsets=((0, 0), (0, 1), (1, 2), (2, 4), (4, 5), (0, 0)),
        special=(True, False, False, False, False, True),
        word_ids=(None, 0, 1, 2, 2, None),
        scores=(0.0, 1.0, 0.5, 0.25, 0.125, 0.0),
    )
    assert e.words == (Span("a", 0, 1, (1,)), Span("bc", 3, 5, (2, 3, 4)))
    assert e.word_scores == (1.0, 0.875)


def test_prediction_and_delta() -> None:
    e = make()
    assert (e.target_label, e.predicted, e.predicted_label) == ("positive", 1, "positive")
    assert e.delta == -0.002
    assert make(quality={}).delta is None


def _without(data: dict, key: str) -> dict:
    return {k: v for k, v in data.items() if k != key}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: "not a dict", "is a JSON object; got a str"),
        (lambda d: _without(d, "offsets"), "has no 'offsets' field"),
        (lambda d: {**d, "scores": d["scores"][:-1]}, "8 tokens but scores 7"),
        (lambda d: {**d, "offsets": [1, 2]}, "a field of the wrong kind"),
        (lambda d: {**d, "target": 5}, "target 5: give one probability per label"),
        (lambda d: {"text": d["text"], "explanations": [d]}, r"rebuild each of row\['expl"),
    ],
)
def test_from_dict_refuses_what_to_dict_did_not_write(damage, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Explanation.from_dict(damage(make().to_dict()))


def test_top_checks_k() -> None:
    e = make()
    assert len(e.top(2)) == 2 and e.top(0) == []
    for k in (-1, "3", 1.5, True):
        with pytest.raises(InvalidParameterError, match="top\\(\\) takes a number"):
            e.top(k)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"uncertainty": (0.0, 0.1, 0.1, 0.1, 0.2, 0.0, 0.3, 0.0)},
        {"truncated_tokens": 7},
        {"quality": {"delta": 0.1, "relative_delta": None, "n_steps": 9}},
    ],
)
def test_json_round_trip(changes: dict) -> None:
    e = make(**changes)
    data = e.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert Explanation.from_dict(json.loads(text)) == e
    assert data["words"] == [w.text for w in e.words]
    assert data["word_spans"] == [[w.start, w.end] for w in e.words]
    assert data["word_scores"] == list(e.word_scores)
    assert data["prediction"] == {
        "label": "positive",
        "index": 1,
        "probabilities": {"negative": 0.25, "positive": 0.75},
    }
    assert data["target_label"] == "positive"
    assert data["delta"] == e.delta


def test_explanations_are_frozen() -> None:
    e = make()
    with pytest.raises(AttributeError):
        e.scores = ()  # type: ignore[misc]
    assert math.isfinite(sum(e.scores))
