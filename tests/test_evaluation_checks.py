"""The evaluation ranks methods the way the planted-token model says it should, the sanity
check tells model-independent explainers apart, and stability and cost are measured."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from textlens.errors import InvalidParameterError
from textlens.evaluation import (
    cascading_randomization,
    evaluate_explanations,
    get_metric,
    has_seed,
    marked_explanations,
    run_method,
    sanity_check,
    stability,
)
from textlens.evaluation.stability import seed_stability
from textlens.explainers import REGISTRY, Explainer, Scores, get_explainer_class, make_explainer
from textlens.model import Encoding, ModelAdapter

# Cheaper-than-default parameters (names a method lacks are ignored).
CHEAP: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 16},
    "lime": {"budget": 64},
    "shap": {"budget": 64},
}
RANKED = ("comprehensiveness_aopc", "sufficiency_aopc", "deletion_area", "insertion_area")


def cheap(name: str) -> dict[str, Any]:
    known = get_explainer_class(name)._all_constraints()
    return {k: v for k, v in CHEAP.get(name, {}).items() if k in known}


class WordLength(Explainer):
    """A deliberately model-independent 'explainer': longer words score higher."""

    name = "word_length"
    description = "Scores each token by its length (ignores the model)."
    reference = "https://arxiv.org/abs/1810.03292"
    parameter_constraints: ClassVar[dict] = {}

    def __init__(self, model: ModelAdapter, *, max_batch_tokens: int = 8192) -> None:
        super().__init__(model, max_batch_tokens=max_batch_tokens)
        self._validate()

    def _score(self, batch: Encoding, targets: torch.Tensor) -> list[Scores]:
        return [
            Scores(
                np.array(
                    [
                        0.0 if s else float(len(t.removeprefix("##")))
                        for t, s in zip(tokens, special, strict=True)
                    ]
                )
            )
            for tokens, special in zip(batch.tokens, batch.special, strict=True)
        ]


@pytest.fixture(scope="module")
def planted_board(planted_adapter: ModelAdapter, planted_test):
    """Every registered method, the planted words' own explanation and the random baseline."""
    texts, planted = planted_test.texts[:40], planted_test.planted[:40]
    explanations = {
        name: make_explainer(name, planted_adapter, **cheap(name)).explain(texts)
        for name in REGISTRY
    }
    template = next(iter(explanations.values()))
    explanations["planted"] = marked_explanations(template, planted, method="planted")
    data = [{"text": t, "planted": p} for t, p in zip(texts, planted, strict=True)]
    return evaluate_explanations(planted_adapter, explanations, data=data, baselines=["planted"])


@pytest.mark.parametrize("metric", RANKED)
def test_random_ranks_last_and_planted_words_first(planted_board, metric: str) -> None:
    table = [(m, planted_board.value(m, metric)) for m in planted_board.ranking(metric)]
    assert table[-1][0] == "random", table
    # The planted word decides the label; once it is gone (or in), the order of the other
    # words moves the output by noise only. The oracle leaves them in text order, a
    # method may order them a little better: "first" is up to 0.001 (0.1% of the range).
    sign = 1.0 if get_metric(metric).higher_is_better else -1.0
    best = max(sign * v for _, v in table)
    assert sign * planted_board.value("planted", metric) >= best - 1e-3, table
    # ... and far from the random baseline.
    assert (
        sign * (planted_board.value("planted", metric) - planted_board.value("random", metric))
        > 0.3
    )


def test_planted_oracle_hits_and_evaluates_like_any_method(planted_board) -> None:
    assert planted_board.value("planted", "hit_at_1") == 1.0
    assert planted_board.value("random", "hit_at_1") < 0.5
    assert planted_board.value("saliency", "hit_at_1") >= 0.95
    # No cost without runs; the oracle is a reference row, never recommended.
    assert "seconds_per_text" not in {m.name for m in planted_board.columns}
    assert planted_board.recommendation.most_faithful not in ("planted", "random")


# ---------------------------------------------------------------------- sanity
def test_cascade_randomises_a_copy_top_down(planted_adapter: ModelAdapter) -> None:
    before = {k: v.clone() for k, v in planted_adapter.model.state_dict().items()}
    stages = []
    for stage, model in cascading_randomization(planted_adapter, seed=0):
        stages.append(stage)
        changed = {
            k
            for k, v in model.model.state_dict().items()
            if v.dtype.is_floating_point and not torch.equal(v, before[k])
        }
        if stage == "head":
            assert any(k.startswith("classifier") for k in changed)
            assert not any("encoder" in k or "embeddings" in k for k in changed)
        if stage == "layer 2":
            assert any("encoder.layer.1." in k for k in changed)
            assert not any("encoder.layer.0." in k for k in changed)
    assert stages == ["head", "layer 2", "layer 1", "embeddings"]
    assert "word_embeddings" in " ".join(changed)
    after = planted_adapter.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the original model changed"
    assert [s for s, _ in cascading_randomization(planted_adapter, steps=2)] == [
        "head",
        "embeddings",
    ]


def test_sanity_flags_a_model_independent_explainer(planted_adapter, planted_test) -> None:
    texts = planted_test.texts[:8]
    length = sanity_check(planted_adapter, WordLength, texts)
    assert length.flagged and length.final.value > 0.99
    assert "do not explain" in length.message
    ig = sanity_check(planted_adapter, "integrated_gradients", texts, params={"n_steps": 16})
    assert not ig.flagged, [r.value for r in ig.similarity]
    assert ig.stages == ("head", "layer 2", "layer 1", "embeddings")
    with pytest.raises(InvalidParameterError, match="threshold"):
        sanity_check(planted_adapter, WordLength, texts, threshold=2)


def test_sanity_ignores_texts_too_short_to_rank(planted_adapter, planted_test) -> None:
    short = ["good movie", "awful plot", "the city"]  # two words: rho is +1 or -1 anyway
    result = sanity_check(planted_adapter, "saliency", short, steps=2)
    assert math.isnan(result.final.value) and not result.flagged
    assert "not checked" in result.message and "3 or more words" in result.message
    mixed = sanity_check(planted_adapter, WordLength, short + planted_test.texts[:6], steps=2)
    assert mixed.flagged and mixed.final.n == 6  # the long texts decide


def test_leaderboard_runs_the_sanity_check_on_texts_long_enough(planted_adapter, planted_test):
    from textlens.evaluation import leaderboard

    texts = ["good movie", "awful plot", *planted_test.texts[:3]]
    board = leaderboard(
        planted_adapter, texts, ["saliency"], sanity_texts=2, sanity_steps=2, stability_texts=0
    )
    assert board.settings["sanity"]["texts"] == 2
    assert board.sanity["saliency"].final.n == 2 and math.isfinite(
        board.sanity["saliency"].final.value
    )


# ---------------------------------------------------------------------- stability and cost
def test_stability_over_seeds(planted_adapter, planted_test) -> None:
    assert has_seed("lime") and not has_seed("saliency") and not has_seed(WordLength)
    texts = planted_test.texts[:6]
    result = stability(planted_adapter, "lime", texts, seeds=(0, 1, 2), params={"budget": 16})
    assert result.seeds == (0, 1, 2)
    assert -1 <= result.rank_correlation.value <= 1 and result.rank_correlation.n == 6
    assert result.spread.value > 0  # 16 samples of ~10 words: estimates differ between seeds
    same = make_explainer("lime", planted_adapter, budget=16, seed=0).explain(texts)
    identical = seed_stability({0: same, 1: same})
    assert identical.rank_correlation.value == pytest.approx(1.0) and identical.spread.value == 0.0
    with pytest.raises(InvalidParameterError, match="deterministic"):
        stability(planted_adapter, "saliency", texts)


def test_cost_counts_model_evaluations(planted_adapter, planted_test) -> None:
    texts = planted_test.texts[:5]
    run = run_method(planted_adapter, "saliency", texts)
    assert run.evaluations == len(texts)  # one gradient pass per text, which also predicts
    assert run.cost()["evaluations_per_text"].value == 1.0
    assert run.cost()["seconds_per_text"].value > 0
    occlusion = run_method(planted_adapter, "occlusion", texts)
    words = sum(len(e.words) for e in occlusion.explanations)
    # the predictions (which are the full coalitions' values), then each word left out
    assert occlusion.evaluations == len(texts) + words


def test_a_model_path_is_refused_with_the_fix(tiny_adapter: ModelAdapter) -> None:
    """Passing the path instead of the loaded model used to end in an AttributeError."""
    from textlens.evaluation import evaluate_explanations, faithfulness, leaderboard
    from textlens.layers import layer_sweep

    explanations = make_explainer("saliency", tiny_adapter).explain(["the movie"])
    for call in [
        lambda m: faithfulness(m, explanations),
        lambda m: evaluate_explanations(m, {"saliency": explanations}),
        lambda m: leaderboard(m, ["the movie"], methods=["saliency"]),
        lambda m: sanity_check(m, "saliency", ["the movie"]),
        lambda m: stability(m, "lime", ["the movie"]),
        lambda m: layer_sweep(m, ["the movie"]),
    ]:
        with pytest.raises(InvalidParameterError, match=r"model = textlens.load\('my-model'\)"):
            call("my-model")


def test_one_text_is_a_list_of_one(tiny_adapter: ModelAdapter) -> None:
    """A single string was taken letter by letter ("Text 1 is empty" for its space)."""
    run = run_method(tiny_adapter, "saliency", "the movie", warmup=False)
    assert [e.text for e in run.explanations] == ["the movie"]
    sanity = sanity_check(tiny_adapter, "saliency", "the movie", steps=1)
    assert len(sanity.final.per_text) == 1
    spread = stability(tiny_adapter, "lime", "the movie", seeds=(0, 1), params={"budget": 8})
    assert len(spread.rank_correlation.per_text) == 1


def test_per_text_targets_go_through_the_warm_up(tiny_adapter: ModelAdapter) -> None:
    """The warm-up explains the first text alone; it was given every text's target."""
    texts = ["the movie", "a day", "the city"]
    run = run_method(tiny_adapter, "saliency", texts, target=["positive", 0, None])
    assert [e.target for e in run.explanations][:2] == [1, 0]
