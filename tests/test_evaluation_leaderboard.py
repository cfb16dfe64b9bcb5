"""The leaderboard: every applicable metric per method, a recommendation, and its renderings."""

from __future__ import annotations

import json
import math
import re

import pytest

from textlens.errors import InvalidInputError, InvalidParameterError, UnknownMethodError
from textlens.evaluation import Leaderboard, evaluate_explanations, leaderboard, recommend
from textlens.explainers import REGISTRY, make_explainer

METHODS = ["saliency", "occlusion", "lime"]
PARAMS = {"lime": {"budget": 32}}


@pytest.fixture(scope="module")
def data(planted_test) -> list[dict]:
    """Planted texts, each with its planted word and the same word as a human rationale."""
    rows = []
    for text, word in zip(planted_test.texts[:12], planted_test.planted[:12], strict=True):
        start = text.index(word)
        rows.append({"text": text, "planted": word, "rationale": [[start, start + len(word)]]})
    rows.append({"text": "<script>alert('x')</script> the awful movie", "planted": "awful"})
    return rows


@pytest.fixture(scope="module")
def board(planted_adapter, data) -> Leaderboard:
    return leaderboard(
        planted_adapter,
        data,
        METHODS,
        params=PARAMS,
        budget_ms=10_000,
        stability_texts=4,
        sanity_texts=3,
        sanity_steps=2,
    )


def test_rows_columns_and_directions(board: Leaderboard) -> None:
    assert board.methods == [*METHODS, "random"]
    assert board.baselines == ["random"]
    names = [m.name for m in board.columns]
    assert names == [
        "comprehensiveness_aopc",
        "sufficiency_aopc",
        "deletion_area",
        "insertion_area",
        "log_odds_drop",
        "hit_at_1",
        "hit_at_k",
        "token_f1",
        "iou_f1",
        "auprc",
        "seed_rank_correlation",
        "seed_spread",
        "randomization_similarity",
        "seconds_per_text",
        "evaluations_per_text",
    ]
    for method in METHODS:
        assert board.value(method, "seconds_per_text") > 0
        # saliency: one pass per text, which also gives the prediction
        assert board.value(method, "evaluations_per_text") >= 1
        assert board.rows[method]["hit_at_1"].n == len(board.faithfulness[method].curves)
    assert board.rows["saliency"]["token_f1"].n == 12  # the last text has no rationale
    assert math.isnan(board.value("saliency", "seed_rank_correlation"))
    assert math.isfinite(board.value("lime", "seed_rank_correlation"))
    assert set(board.sanity) == set(METHODS) and board.sanity["saliency"].stages == (
        "head",
        "embeddings",
    )
    assert board.agreement is not None and board.agreement.methods == tuple(METHODS)
    assert board.settings["threads"] >= 1 and board.settings["params"]["lime"] == {"budget": 32}


def test_recommendation_and_budget(board: Leaderboard) -> None:
    rec = board.recommendation
    assert rec.most_faithful in METHODS and rec.order[0] == rec.most_faithful
    assert rec.within_budget == rec.most_faithful  # 10 s per text: everything fits
    assert "Most faithful" in rec.text
    tight = recommend(board, budget_ms=1e-6)
    assert tight.within_budget is None and "No method fits" in tight.text
    fastest = min(METHODS, key=lambda m: board.value(m, "seconds_per_text"))
    cut = board.value(fastest, "seconds_per_text") * 1000 * 1.0001
    assert recommend(board, budget_ms=cut).within_budget == fastest
    with pytest.raises(InvalidParameterError, match="budget_ms"):
        recommend(board, budget_ms=0)
    with pytest.raises(InvalidParameterError, match="must be a finite number > 0"):
        recommend(board, budget_ms=math.inf)  # JSON output would hold Infinity


def test_best_is_bold_in_markdown_and_terminal(board: Leaderboard) -> None:
    markdown = board.to_markdown()
    for metric in board.columns:
        for method in board.best(metric.name):
            row = next(line for line in markdown.splitlines() if line.startswith(f"| {method} |"))
            assert "**" in row
    assert (
        "random (baseline)" in markdown and "comp AOPC ↑" in markdown and "suff AOPC ↓" in markdown
    )
    assert "Agreement, Spearman" in markdown and "**Recommendation.**" in markdown
    plain = board.to_text()
    assert "*" in plain and "\x1b[1m" not in plain
    assert "\x1b[1m" in board.to_text(color=True)


def test_to_dict_is_strict_json(board: Leaderboard) -> None:
    data = json.loads(json.dumps(board.to_dict(), allow_nan=False))
    assert data["methods"] == [*METHODS, "random"]
    assert data["columns"][0]["name"] == "comprehensiveness_aopc"
    assert data["columns"][0]["higher_is_better"] is True
    assert data["rows"]["saliency"]["comprehensiveness_aopc"]["value"] > 0.5
    assert data["recommendation"]["most_faithful"] == board.recommendation.most_faithful
    assert len(data["faithfulness"]["lime"]["deletion_curve"]) == 21
    assert data["agreement"]["matrices"]["spearman"][0][0] == 1.0
    json.dumps(board.to_dict(per_text=True), allow_nan=False)


def test_html_report_is_escaped_and_self_contained(board: Leaderboard) -> None:
    page = board.to_html(title="eval <b>")
    assert page.startswith("<!DOCTYPE html>")
    assert "eval &lt;b&gt;" in page and "<b>eval" not in page
    assert page.count("<svg") == 5  # deletion, insertion, comp, suff, sanity cascade
    assert "<polyline" in page and "Agreement between methods" in page
    assert not re.search(r"""(src|href)=["']https?://""", page)
    assert "<script" not in page
    for method in METHODS:
        assert method in page
    assert board.recommendation.lines[0].split(":")[0] in page


def test_precomputed_explanations(planted_adapter, data) -> None:
    texts = [d["text"] for d in data]
    explanations = {"saliency": make_explainer("saliency", planted_adapter).explain(texts)}
    board = evaluate_explanations(planted_adapter, explanations, data=data, include_random=False)
    assert board.methods == ["saliency"] and board.agreement is None
    assert "seconds_per_text" not in {m.name for m in board.columns}
    assert board.recommendation.most_faithful == "saliency"
    with pytest.raises(InvalidInputError, match="examples"):
        evaluate_explanations(planted_adapter, explanations, data=data[:3])


def test_bad_arguments(planted_adapter) -> None:
    with pytest.raises(UnknownMethodError, match="saliency"):
        leaderboard(planted_adapter, ["a day"], ["salience"])
    with pytest.raises(UnknownMethodError, match="Unknown method 'salience'"):  # not 's'
        leaderboard(planted_adapter, ["a day"], "salience")
    with pytest.raises(InvalidParameterError, match="not among the chosen"):
        leaderboard(planted_adapter, ["a day"], ["saliency"], params={"lime": {"budget": 8}})
    with pytest.raises(InvalidParameterError, match="budget"):
        leaderboard(planted_adapter, ["a day"], ["lime"], params={"lime": {"budget": 0}})
    with pytest.raises(InvalidParameterError, match="no parameter 'n_step'"):
        leaderboard(
            planted_adapter,
            ["a day"],
            ["integrated_gradients"],
            params={"integrated_gradients": {"n_step": 8}},
        )
    with pytest.raises(InvalidInputError, match="single string"):
        leaderboard(planted_adapter, "a day", ["saliency"])


@pytest.mark.slow
def test_demo_leaderboard_with_every_registered_method() -> None:
    """The demo model, every registered method (cheap settings), a few held-out tweets."""
    import torch

    from textlens.demo.build import build_sentiment_model
    from textlens.model import ModelAdapter

    torch.set_num_threads(1)
    info = build_sentiment_model(progress=False)
    model = ModelAdapter.from_pretrained(info.path)
    tweets = [{"text": e.text, "label": e.label} for e in info.heldout[:4]]
    cheap = {
        "integrated_gradients": {"n_steps": 16},
        "lime": {"budget": 64},
        "shap": {"budget": 64},
        "information": {"max_steps": 20, "n_samples": 2},
    }
    params = {k: v for k, v in cheap.items() if k in REGISTRY}
    board = leaderboard(
        model,
        tweets,
        params=params,
        budget_ms=1000,
        stability_texts=2,
        sanity_texts=2,
        sanity_steps=2,
    )
    assert not board.failed, board.failed
    assert board.methods == [*REGISTRY, "random"]
    for method in REGISTRY:
        for metric in (
            "comprehensiveness_aopc",
            "sufficiency_aopc",
            "deletion_area",
            "insertion_area",
            "seconds_per_text",
        ):
            assert math.isfinite(board.value(method, metric)), (method, metric)
    assert board.recommendation.most_faithful in REGISTRY
    json.dumps(board.to_dict(), allow_nan=False)
    assert "<svg" in board.to_html()


def test_labels_that_are_none_of_the_models_are_said_to_be_left_out(planted_adapter) -> None:
    from textlens.report.evaluation import render_evaluation_html

    rows = [
        {"text": "the movie was wonderful", "label": planted_adapter.labels[0]},
        {"text": "an awful plot", "label": "pos"},
        {"text": "a friend of the team"},
    ]
    small = leaderboard(planted_adapter, rows, ["saliency"], sanity_texts=0, stability_texts=0)
    assert small.settings["labelled_texts"] == 1 and small.settings["unknown_labels"] == ["pos"]
    assert small.settings["accuracy"] in (0.0, 1.0)  # over the one text it could use
    page = render_evaluation_html(small)
    assert "of 1 labelled" in page and "none of the model&#39;s: &#39;pos&#39;" in page
