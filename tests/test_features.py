"""Feature groupings: words, tokens, spans, sentences, user-given character ranges."""

from __future__ import annotations

import pytest

from textlens.errors import InvalidParameterError
from textlens.features import (
    CharSpans,
    Sentences,
    Spans,
    Tokens,
    Words,
    feature_spans,
    make_grouping,
)


def _encode(adapter, text):
    return adapter.encode([text])


def test_words_group_subwords_and_match_explanation_words(tiny_adapter):
    enc = _encode(tiny_adapter, "unbelievable playing , the movie")
    spans = feature_spans(enc, 0, "word")
    assert [s.text for s in spans] == ["unbelievable", "playing", ",", "the", "movie"]
    assert spans[0].tokens == (1, 2, 3)  # un ##believ ##able
    assert spans[1].tokens == (4, 5)  # play ##ing
    for span in spans:
        assert span.text == enc.texts[0][span.start : span.end]
    import textlens as tl

    [e] = tl.explain(tiny_adapter, [enc.texts[0]], method="occlusion")
    assert [w.tokens for w in e.words] == [s.tokens for s in spans]


def test_special_tokens_are_never_features(tiny_adapter):
    enc = _encode(tiny_adapter, "the movie was wonderful")
    specials = {i for i, s in enumerate(enc.special[0]) if s}
    for grouping in (Words(), Tokens(), Spans(2), Sentences(), CharSpans([(0, 100)])):
        spans = feature_spans(enc, 0, grouping)
        assert spans, grouping
        assert not specials & {t for s in spans for t in s.tokens}


def test_tokens_spans_and_sentences(tiny_adapter):
    text = "the movie was wonderful. an awful plot! the end"
    enc = _encode(tiny_adapter, text)
    n_tokens = sum(not s for s in enc.special[0])
    assert len(feature_spans(enc, 0, "token")) == n_tokens
    words = feature_spans(enc, 0, "word")
    spans = feature_spans(enc, 0, Spans(3))
    assert len(spans) == -(-len(words) // 3)
    assert spans[0].text == "the movie was"
    sentences = feature_spans(enc, 0, "sentence")
    assert [s.text for s in sentences] == ["the movie was wonderful.", "an awful plot!", "the end"]


def test_char_spans_fixed_and_callable(tiny_adapter):
    text = "the movie was wonderful"
    enc = _encode(tiny_adapter, text)
    fixed = feature_spans(enc, 0, CharSpans([(0, 9), (14, 23)], name="fields"))
    assert [s.text for s in fixed] == ["the movie", "wonderful"]
    # 'was' is in no range: it is not a feature (never perturbed)
    assert all(enc.tokens[0][t] != "was" for s in fixed for t in s.tokens)
    dynamic = feature_spans(enc, 0, CharSpans(lambda t: [(0, len(t))]))
    assert len(dynamic) == 1 and dynamic[0].text == text
    assert CharSpans([(0, 9)], name="fields").to_param() == {
        "grouping": "fields",
        "spans": [[0, 9]],
    }


def test_bad_groupings_raise_clear_errors():
    with pytest.raises(InvalidParameterError, match="feature grouping 'paragraph'"):
        make_grouping("paragraph")
    with pytest.raises(InvalidParameterError, match="'size' parameter of Spans"):
        Spans(0)
    with pytest.raises(InvalidParameterError, match="pair \\(start, end\\)"):
        CharSpans([(5, 2)])
