"""The information explainer (Guan et al., ICML 2019) and the layer sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from textlens.errors import InvalidParameterError
from textlens.explainers import REGISTRY, make_explainer
from textlens.explainers.information import (
    InformationLoss,
    ModelState,
    information_loss,
    information_loss_entropy,
    state_spread,
)
from textlens.layers import LayerSweep, heatmap_png, heatmap_table, layer_sweep

torch.set_num_threads(1)

TEXTS = [
    "the movie was wonderful",
    "an awful plot with a dreadful actor in the city",
    "unbelievably playing",
    "the story of a friend",
]


@pytest.fixture
def explainer_kwargs(tmp_path):
    return {"cache_dir": str(tmp_path / "cache")}


# ------------------------------------------------------------------------ the paper's sanity case
def test_linear_phi_ranks_positions_by_weight():
    """Guan et al.'s check: Phi(x) = sum_i w_i x_i with w = [10, 20, 5, -20, -10]."""
    torch.manual_seed(0)
    weights = torch.tensor([10.0, 20.0, 5.0, -20.0, -10.0])
    x = torch.randn(5, 16)

    def phi(e: torch.Tensor) -> torch.Tensor:
        return (weights[None, :, None] * e).sum(1)

    [result] = information_loss(phi, x, seed=0)
    order = list(np.argsort(result.sigma) + 1)  # 1-based positions, smallest sigma first
    assert set(order[:2]) == {2, 4}
    assert set(order[2:4]) == {1, 5}
    assert order[4] == 3
    assert result.converged
    # Linear Phi: the optimum has sigma_i proportional to 1 / |w_i|.
    product = result.sigma * weights.abs().numpy()
    assert product.std() / product.mean() < 0.05


def test_few_outputs_start_at_the_linearised_optimum():
    """Phi with few outputs gets its exact Jacobian: for a linear Phi the start is the
    optimum sigma_t = r sqrt(lam / 2n) / |w_t|, and the control variate removes all the
    sampling noise, so the fit stays there and stops at the first check."""
    torch.manual_seed(1)
    weights = torch.tensor([10.0, 20.0, 5.0, -20.0, -10.0])
    x = torch.randn(5, 16)

    def phi(e: torch.Tensor) -> torch.Tensor:
        return (weights[None, :, None] * e).sum(1)

    r = 30.0
    [result] = information_loss(phi, x, r=r, seed=3, lam=0.1, window=5)
    expected = r * math.sqrt(0.1 / (2 * 5)) / weights.abs().numpy()
    assert np.allclose(result.sigma, expected, rtol=1e-4)
    assert result.converged and result.iterations == 10


def test_texts_of_similar_length_share_model_calls():
    """Each step pads a call to its longest text, so calls group texts of similar length."""
    from textlens.explainers.information import _length_groups, _Problem

    lengths = [46, 13, 44, 20, 42, 19, 30, 14]
    problems = [
        _Problem(
            x=torch.zeros(n, 4),
            noise_mask=torch.ones(n, dtype=torch.bool),
            target=torch.zeros(1),
            weight=torch.ones(1),
            seed=0,
        )
        for n in lengths
    ]
    groups = _length_groups(problems, list(range(len(lengths))), samples=8, budget=8192)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert [[lengths[i] for i in g] for g in groups] == [[46, 44, 42], [30], [20, 19], [14, 13]]
    small = _length_groups(problems, [0, 2, 4], samples=8, budget=8 * 2 * 46)
    assert small == [[0, 2], [4]]  # the token budget still caps a call


def test_jacobian_takes_one_row_per_output():
    """A Phi with 2 outputs gets its exact Jacobian from one call of 2 rows, not n_samples."""
    torch.manual_seed(2)
    weights = torch.randn(5, 2)
    calls = []

    def phi(e: torch.Tensor) -> torch.Tensor:
        calls.append(e.shape[0])
        return torch.einsum("ntd,tk->nk", e, weights)

    information_loss(phi, torch.randn(5, 8), n_samples=8, max_steps=2)
    assert calls[:3] == [1, 2, 8]  # clean target, Jacobian, first step


def test_information_loss_formula():
    sigma = np.array([0.1, 1.0])
    h = information_loss_entropy(sigma, 4)
    assert np.allclose(h, 2 * math.log(2 * math.pi * math.e) + 4 * np.log(sigma))


# ------------------------------------------------------------------------ the explainer on models
def test_registered():
    assert REGISTRY["information"] is InformationLoss


def test_planted_words_get_the_smallest_sigma(planted_adapter, planted_test, explainer_kwargs):
    explainer = InformationLoss(planted_adapter, layer="logits", **explainer_kwargs)
    explanations = explainer.explain(planted_test.texts)
    hits = 0
    for e, word in zip(explanations, planted_test.planted, strict=True):
        sigma = e.quality["sigma"]
        word_tokens = [i for i, t in enumerate(e.tokens) if t == word]
        smallest = min((s, i) for i, s in enumerate(sigma) if s is not None)[1]
        hits += smallest in word_tokens
        assert e.top(1)[0][0] == e.words[e.word_ids[smallest]].text
    assert hits / len(explanations) >= 0.9


def test_one_score_per_token_and_quality(tiny_adapter, explainer_kwargs):
    explanations = InformationLoss(tiny_adapter, layer=1, **explainer_kwargs).explain(TEXTS)
    for e in explanations:
        assert len(e.scores) == len(e.tokens)
        assert all(math.isfinite(s) and s >= 0 for s in e.scores)
        q = e.quality
        assert {"sigma", "information_loss", "loss", "iterations", "converged", "scale"} <= set(q)
        assert q["target_independent"] is True
        for special, sigma, h, score in zip(
            e.special, q["sigma"], q["information_loss"], e.scores, strict=True
        ):
            if special:  # special tokens get no noise by default
                assert sigma is None and h is None and score == 0.0
            else:
                assert 0 < sigma < q["scale"]
                assert score == pytest.approx(math.log(q["scale"] / sigma))
                assert h == pytest.approx(information_loss_entropy(np.array([sigma]), 32)[0])
        restored = type(e).from_dict(json.loads(json.dumps(e.to_dict())))
        assert restored == e


def test_special_tokens_can_be_perturbed(tiny_adapter, explainer_kwargs):
    [e] = InformationLoss(
        tiny_adapter, layer=2, special_tokens="perturb", **explainer_kwargs
    ).explain(TEXTS[:1])
    assert all(s is not None for s in e.quality["sigma"])


def test_deterministic_under_a_seed(tiny_adapter, explainer_kwargs):
    def run(seed: int) -> list[tuple[float, ...]]:
        explainer = InformationLoss(tiny_adapter, layer=2, seed=seed, **explainer_kwargs)
        return [e.scores for e in explainer.explain(TEXTS)]

    assert run(3) == run(3)
    assert run(3) != run(4)


@pytest.mark.parametrize("layer", [1, "logits"])
def test_batched_equals_one_by_one(tiny_adapter, explainer_kwargs, layer):
    """Each text has its own noise stream, so batching changes nothing but rounding."""
    explainer = InformationLoss(tiny_adapter, layer=layer, **explainer_kwargs)
    together = explainer.explain(TEXTS)
    for text, e in zip(TEXTS, together, strict=True):
        [alone] = explainer.explain([text])
        assert alone.quality["iterations"] == e.quality["iterations"]
        np.testing.assert_allclose(alone.scores, e.scores, rtol=1e-3, atol=1e-4)


def test_small_budget_still_fits_every_text(tiny_adapter, explainer_kwargs):
    big = InformationLoss(tiny_adapter, layer=1, **explainer_kwargs).explain(TEXTS)
    small = InformationLoss(tiny_adapter, layer=1, max_batch_tokens=16, **explainer_kwargs).explain(
        TEXTS
    )
    for a, b in zip(big, small, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-3, atol=1e-4)


def test_bfloat16_fit_is_recorded_and_ranks_like_float32(
    planted_adapter, planted_test, explainer_kwargs
):
    texts = planted_test.texts[:4]
    full = InformationLoss(planted_adapter, layer=2, **explainer_kwargs).explain(texts)
    half = InformationLoss(
        planted_adapter, layer=2, precision="bfloat16", **explainer_kwargs
    ).explain(texts)
    assert {e.params["precision"] for e in full} == {"float32"}
    assert {e.params["precision"] for e in half} == {"bfloat16"}
    # bfloat16 really ran (sigma moves) and ranks the tokens the same way
    assert any(not np.array_equal(a.scores, b.scores) for a, b in zip(full, half, strict=True))
    for a, b in zip(full, half, strict=True):
        keep = [i for i, s in enumerate(a.special) if not s]
        ranks = [np.argsort(np.argsort(np.array(e.scores)[keep])) for e in (a, b)]
        assert np.corrcoef(*ranks)[0, 1] >= 0.8


@pytest.mark.parametrize("layer", ["logits", "pooled"])
def test_bfloat16_on_a_few_outputs_warns(tiny_adapter, layer):
    with pytest.warns(UserWarning, match="bfloat16 rounding"):
        InformationLoss(tiny_adapter, layer=layer, precision="bfloat16")


def test_bfloat16_layer_sweep_records_the_precision(tiny_adapter, explainer_kwargs):
    [sweep] = layer_sweep(tiny_adapter, TEXTS[:1], precision="bfloat16", **explainer_kwargs)
    assert sweep.params["precision"] == "bfloat16"


def test_bad_precision_is_a_parameter_error_naming_the_choices(tiny_adapter):
    with pytest.raises(InvalidParameterError, match=r"'precision'.*float32.*bfloat16"):
        InformationLoss(tiny_adapter, layer=1, precision="float16")


@pytest.mark.parametrize("layer", [0, 3, -1, "first", 1.5, True])
def test_bad_layer_lists_the_valid_range(tiny_adapter, layer):
    with pytest.raises(InvalidParameterError, match=r"\[1, 2\]|must be an int"):
        InformationLoss(tiny_adapter, layer=layer)


def test_bad_layer_message_names_the_range(tiny_adapter):
    with pytest.raises(InvalidParameterError, match=r"int in \[1, 2\].*has 2 layers"):
        InformationLoss(tiny_adapter, layer=7)


def test_bad_parameter(tiny_adapter):
    with pytest.raises(
        InvalidParameterError, match="'n_samples' parameter of InformationLoss must be an int >= 1"
    ):
        make_explainer("information", tiny_adapter, n_samples=0)
    with pytest.raises(InvalidParameterError, match="'positions'"):
        InformationLoss(tiny_adapter, layer=1, positions="middle")


# ---------------------------------------------------------------------------- Phi and r
@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("positions", ["all", "cls"])
def test_early_stopped_layer_matches_hidden_states(tiny_adapter, layer, positions):
    encoding = tiny_adapter.encode(TEXTS)
    state = ModelState(tiny_adapter, layer, positions)
    with torch.no_grad():
        got = state(encoding, tiny_adapter.word_embeddings(encoding.input_ids))
        expected = tiny_adapter.forward(encoding, output_hidden_states=True).hidden_states[layer]
    expected = expected[:, :1] if positions == "cls" else expected
    torch.testing.assert_close(got, expected)


def test_pooled_and_logits_states(tiny_adapter):
    encoding = tiny_adapter.encode(TEXTS)
    embeds = tiny_adapter.word_embeddings(encoding.input_ids)
    with torch.no_grad():
        pooled = ModelState(tiny_adapter, "pooled")(encoding, embeds)
        logits = ModelState(tiny_adapter, "logits")(encoding, embeds)
        bert = tiny_adapter.model.bert(
            input_ids=encoding.input_ids,
            attention_mask=encoding.attention_mask,
            **encoding.model_inputs,
        )
        expected_logits = tiny_adapter.logits(encoding)
    torch.testing.assert_close(pooled[:, 0], bert.pooler_output)
    torch.testing.assert_close(logits[:, 0], expected_logits)


def test_regularisation_is_cached(tiny_adapter, tmp_path, monkeypatch):
    from textlens.explainers import information

    state = ModelState(tiny_adapter, 2, "all")
    first = state_spread(tiny_adapter, state, cache_dir=tmp_path)
    assert first.shape == (32,) and (first > 0).all()
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("r was recomputed instead of read from the cache")

    monkeypatch.setattr(information, "_compute_spreads", fail)
    np.testing.assert_array_equal(state_spread(tiny_adapter, state, cache_dir=tmp_path), first)
    logits = state_spread(tiny_adapter, ModelState(tiny_adapter, "logits"), cache_dir=tmp_path)
    assert logits.shape == (2,)


def test_the_weights_fingerprint_is_computed_once_until_the_weights_change(monkeypatch):
    """A server's every information request used to sum every weight (~0.2 s on MiniLM)."""
    from conftest import FILLER, tiny_bert, wordpiece_tokenizer

    from textlens.explainers import information
    from textlens.model import ModelAdapter

    tokenizer = wordpiece_tokenizer(FILLER)
    model = ModelAdapter(tiny_bert(len(tokenizer), seed=2), tokenizer)
    calls = []
    fingerprint = information._fingerprint
    monkeypatch.setattr(information, "_fingerprint", lambda *a: calls.append(1) or fingerprint(*a))
    first = information._cache_key(model, TEXTS)
    assert information._cache_key(model, TEXTS) == first and len(calls) == 1
    assert information._cache_key(model, TEXTS[:2]) != first and len(calls) == 2  # other sample
    with torch.no_grad():  # fine-tuned in place: a new fingerprint
        next(model.model.parameters()).mul_(1.5)
    assert information._cache_key(model, TEXTS) != first and len(calls) == 3

    fresh = ModelAdapter(tiny_bert(len(tokenizer), seed=3), tokenizer)
    state_spread(fresh, ModelState(fresh, 1, "cls"), sample_texts=TEXTS, use_cache=False)
    assert len(calls) == 3  # no cache, no fingerprint


def test_regularisation_from_user_sample(tiny_adapter, tmp_path):
    state = ModelState(tiny_adapter, 1, "cls")
    default = state_spread(tiny_adapter, state, cache_dir=tmp_path)
    own = state_spread(tiny_adapter, state, sample_texts=TEXTS, cache_dir=tmp_path)
    assert not np.allclose(default, own)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    with pytest.raises(InvalidParameterError, match="at least 2 texts"):
        state_spread(tiny_adapter, state, sample_texts=["one"], cache_dir=tmp_path)


def test_params_are_json(tiny_adapter, explainer_kwargs):
    explainer = InformationLoss(tiny_adapter, layer=1, sample_texts=TEXTS, **explainer_kwargs)
    params = explainer.get_params()
    json.dumps(params)
    assert params["sample_texts"]["count"] == len(TEXTS)
    assert "positions" not in InformationLoss(tiny_adapter, **explainer_kwargs).get_params()


# ---------------------------------------------------------------------------- layer sweep
def test_layer_sweep_shape_and_dict(tiny_adapter, explainer_kwargs):
    sweeps = layer_sweep(tiny_adapter, TEXTS[:2], **explainer_kwargs)
    assert len(sweeps) == 2
    for sweep, text in zip(sweeps, TEXTS[:2], strict=True):
        assert isinstance(sweep, LayerSweep)
        assert sweep.layers == (1, 2)
        assert sweep.shape == (2, len(text.split()))
        data = json.loads(json.dumps(sweep.to_dict()))
        assert data["words"] == text.split()
        assert np.array(data["word_sigma"]).shape == sweep.shape
        assert np.array(data["word_scores"]).shape == sweep.shape
        assert len(data["sigma"][0]) == len(sweep.tokens)
        table = heatmap_table(sweep)
        assert table["rows"] == ["layer 1", "layer 2"]
        assert np.all((np.array(table["kept"]) >= 0) & (np.array(table["kept"]) <= 1))


def test_layer_sweep_matches_the_explainer(tiny_adapter, explainer_kwargs):
    [sweep] = layer_sweep(tiny_adapter, TEXTS[1:2], layers=[2], **explainer_kwargs)
    [e] = InformationLoss(tiny_adapter, layer=2, **explainer_kwargs).explain(TEXTS[1:2])
    np.testing.assert_allclose(sweep.word_scores[0], e.word_scores, rtol=1e-6)


def test_layer_sweep_words_keep_subwords_together(tiny_adapter, explainer_kwargs):
    [sweep] = layer_sweep(tiny_adapter, ["unbelievable playing"], layers=[1], **explainer_kwargs)
    assert sweep.words == ("unbelievable", "playing")
    assert [len(t) for t in sweep.word_tokens] == [3, 2]


def test_layer_sweep_bad_layer(tiny_adapter):
    with pytest.raises(InvalidParameterError, match=r"numbered layers 1\.\.2; got 5"):
        layer_sweep(tiny_adapter, TEXTS[:1], layers=[1, 5])
    with pytest.raises(InvalidParameterError, match="numbered layers"):
        layer_sweep(tiny_adapter, TEXTS[:1], layers=["logits"])


def test_heatmap_png(tiny_adapter, explainer_kwargs):
    sweeps = layer_sweep(tiny_adapter, TEXTS[:2], **explainer_kwargs)
    png = heatmap_png(sweeps)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_heatmap_png_draws_dollars_as_text(tiny_adapter, explainer_kwargs):
    """matplotlib read '$x^$' in a title or word as broken mathtext and raised."""
    sweeps = layer_sweep(tiny_adapter, ["the movie costs $x^$ now"], **explainer_kwargs)
    assert heatmap_png(sweeps).startswith(b"\x89PNG")
