"""Every evaluation metric on tiny examples whose values are computed by hand.

The fake model's target probability is a known sum over the words present in its input
(a masked or deleted word is absent), so every comprehensiveness, sufficiency, curve and
area below is arithmetic; agreement and rationale metrics are checked on hand-written
scores (and against scipy / scikit-learn where those are installed).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import FILLER, NEGATIVE, POSITIVE, SUBWORDS, tiny_bert, wordpiece_tokenizer

from textlens.errors import InvalidInputError, InvalidParameterError
from textlens.evaluation import (
    METRICS,
    agreement,
    auprc,
    faithfulness,
    get_metric,
    hit_rates,
    kendall_tau,
    load_evaluation_data,
    marked_explanations,
    plausibility,
    random_explanations,
    rationale_mask,
    spearman,
    top_k_overlap,
)
from textlens.evaluation.metrics import metric_result
from textlens.explainers.perturbation import Engine
from textlens.explanation import Explanation
from textlens.model import Encoding, ModelAdapter

TEXT = "the movie was wonderful"
# p(positive) = 0.1 + the weights of the words present: full text 0.9, empty 0.1.
WEIGHTS = {"wonderful": 0.5, "movie": 0.2, "the": 0.1, "was": 0.0}


class AdditiveModel(ModelAdapter):
    """A 2-class 'model' whose positive probability is 0.1 + sum of WEIGHTS of present words."""

    def __init__(self) -> None:
        tokenizer = wordpiece_tokenizer(FILLER + POSITIVE + NEGATIVE + SUBWORDS)
        super().__init__(tiny_bert(len(tokenizer), seed=0), tokenizer, model_id="additive")
        self.weight_of = {tokenizer.convert_tokens_to_ids(w): v for w, v in WEIGHTS.items()}

    def logits(self, batch: Encoding, **kwargs: object) -> torch.Tensor:
        rows = []
        for ids, mask in zip(batch.input_ids.tolist(), batch.attention_mask.tolist(), strict=True):
            present = {i for i, m in zip(ids, mask, strict=True) if m}
            p = 0.1 + sum(v for i, v in self.weight_of.items() if i in present)
            rows.append([0.0, math.log(p / (1 - p))])
        return torch.tensor(rows, dtype=torch.float64)


@pytest.fixture(scope="module")
def additive() -> AdditiveModel:
    return AdditiveModel()


def explanation(
    model: ModelAdapter,
    text: str,
    word_scores: dict[str, float],
    target: int = 1,
    method: str = "hand",
) -> Explanation:
    """An explanation of ``text`` whose word scores are ``word_scores`` (0 for other words)."""
    enc = model.encode([text])
    probs = model.predict_proba(enc)[0]
    base = Explanation(
        text=text,
        tokens=tuple(enc.tokens[0]),
        offsets=tuple(enc.offsets[0]),
        special=tuple(enc.special[0]),
        word_ids=tuple(enc.word_ids[0]),
        scores=tuple(0.0 for _ in enc.tokens[0]),
        method=method,
        params={},
        target=target,
        labels=tuple(model.labels),
        probabilities=tuple(float(p) for p in probs),
        model_id=model.model_id,
    )
    scores = [0.0] * len(base.tokens)
    for word in base.words:
        for t in word.tokens:
            scores[t] = word_scores.get(word.text, 0.0) / len(word.tokens)
    return dataclasses.replace(base, scores=tuple(scores))


# ---------------------------------------------------------------------- faithfulness
PERFECT = {"wonderful": 4.0, "movie": 3.0, "the": 2.0, "was": 1.0}


@pytest.mark.parametrize("masking", ["mask", "delete"])
def test_faithfulness_equals_hand_values(additive: AdditiveModel, masking: str) -> None:
    result = faithfulness(additive, [explanation(additive, TEXT, PERFECT)], masking=masking)
    # 4 words; fractions 1, 5, 10, 20, 50% remove ceil(f * 4) = 1, 1, 1, 1, 2 words.
    # deletion (wonderful, movie, the, was removed in turn): .9 .4 .2 .1 .1
    # insertion: .1 .6 .8 .9 .9
    assert result.comprehensiveness.value == pytest.approx((4 * 0.5 + 0.7) / 5, abs=1e-6)
    assert result.sufficiency.value == pytest.approx((4 * 0.3 + 0.1) / 5, abs=1e-6)
    assert result.comprehensiveness.details["at"] == pytest.approx(
        [0.5, 0.5, 0.5, 0.5, 0.7], abs=1e-6
    )
    assert result.deletion.value == pytest.approx(0.25 * (0.65 + 0.3 + 0.15 + 0.1), abs=1e-6)
    assert result.insertion.value == pytest.approx(0.25 * (0.35 + 0.7 + 0.85 + 0.9), abs=1e-6)
    assert result.log_odds is not None
    assert result.log_odds.value == pytest.approx(math.log(0.9 / 0.4), abs=1e-6)
    [curves] = result.curves
    assert curves.deletion == pytest.approx((0.9, 0.4, 0.2, 0.1, 0.1), abs=1e-6)
    assert curves.insertion == pytest.approx((0.1, 0.6, 0.8, 0.9, 0.9), abs=1e-6)
    # The averaged curve for plots passes through the same points.
    grid = np.asarray(result.curve_grid)
    assert np.interp(0.25, grid, result.deletion_curve) == pytest.approx(0.4, abs=1e-6)


def test_worse_ranking_scores_worse_and_absolute_ranking(additive: AdditiveModel) -> None:
    good = faithfulness(additive, [explanation(additive, TEXT, PERFECT)])
    reversed_scores = {w: -s for w, s in PERFECT.items()}
    bad = faithfulness(additive, [explanation(additive, TEXT, reversed_scores)])
    assert bad.comprehensiveness.value < good.comprehensiveness.value
    assert bad.deletion.value > good.deletion.value
    # Ranked by |score|, the reversed explanation is the perfect one again.
    absolute = faithfulness(
        additive, [explanation(additive, TEXT, reversed_scores)], ranking="absolute"
    )
    assert absolute.comprehensiveness.value == pytest.approx(good.comprehensiveness.value)


def test_curve_steps_bound_the_points(additive: AdditiveModel) -> None:
    result = faithfulness(additive, [explanation(additive, TEXT, PERFECT)], curve_steps=2)
    [curves] = result.curves
    # k = 0, 2, 4 from the curve, plus 1 (the 1-20% fractions) and 2 (50%).
    assert curves.deletion_k == (0, 1, 2, 4)
    assert result.deletion.value == pytest.approx(0.25 * 0.65 + 0.25 * 0.3 + 0.5 * 0.15, abs=1e-6)
    alone = faithfulness(additive, explanation(additive, TEXT, PERFECT), curve_steps=2)
    assert alone.deletion.value == result.deletion.value  # one explanation is a list of one


def test_shared_engine_reuses_outputs(additive: AdditiveModel) -> None:
    engine = Engine(additive, masking="mask")
    items = [explanation(additive, TEXT, PERFECT)]
    first = faithfulness(additive, items, engine=engine)
    again = faithfulness(additive, items, engine=engine)
    assert first.evaluations == 8  # 5 deletion + 5 insertion points; full and empty text shared
    assert again.evaluations == 0
    assert again.comprehensiveness.value == first.comprehensiveness.value
    with pytest.raises(InvalidParameterError, match="masking='delete'"):
        faithfulness(additive, items, engine=engine, masking="delete")


def test_token_level_and_logit_output(additive: AdditiveModel) -> None:
    items = [explanation(additive, TEXT, PERFECT)]
    token = faithfulness(additive, items, level="token")
    word = faithfulness(additive, items)
    assert token.comprehensiveness.value == pytest.approx(
        word.comprehensiveness.value
    )  # 1 token per word
    logit = faithfulness(additive, items, output="logit")
    assert logit.log_odds is None
    assert logit.comprehensiveness.metric.range == (-math.inf, math.inf)
    full, without = math.log(0.9 / 0.1), math.log(0.4 / 0.6)
    assert logit.comprehensiveness.details["at"][0] == pytest.approx(full - without, abs=1e-5)


def test_faithfulness_errors(additive: AdditiveModel, tiny_adapter: ModelAdapter) -> None:
    items = [explanation(additive, TEXT, PERFECT)]
    with pytest.raises(
        InvalidParameterError, match=r"The 'masking' parameter of faithfulness must be one of"
    ):
        faithfulness(additive, items, masking="blank")
    with pytest.raises(InvalidParameterError, match="fractions"):
        faithfulness(additive, items, fractions=[0.0])
    with pytest.raises(InvalidParameterError, match="curve_steps"):
        faithfulness(additive, items, curve_steps=0)
    with pytest.raises(InvalidInputError, match="No explanations"):
        faithfulness(additive, [])
    other = dataclasses.replace(items[0], tokens=("[CLS]", "x", "y", "z", "w", "[SEP]"))
    with pytest.raises(InvalidInputError, match="other tokens"):
        faithfulness(additive, [other])


# ---------------------------------------------------------------------- agreement
def test_rank_correlations_by_hand() -> None:
    assert spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(kendall_tau([2, 2], [1, 2]))
    assert top_k_overlap([4, 3, 2, 1], [4, 1, 3, 2], 2) == 0.5
    assert top_k_overlap([1, 2], [2, 1], 5) == 1.0  # k capped at the number of units


def test_rank_correlations_match_scipy_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 4, size=9).astype(float)
        b = rng.normal(size=9)
        b[:3] = b[0]
        if len(set(a)) > 1:
            assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
            assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)


def test_agreement_matrix_per_text_and_dataset(additive: AdditiveModel) -> None:
    text2 = "a wonderful movie with an awful plot"
    a = [
        explanation(additive, TEXT, PERFECT),
        explanation(additive, text2, {"wonderful": 1, "awful": 2}),
    ]
    b = [
        explanation(additive, TEXT, {"wonderful": 4, "movie": 3, "the": 1, "was": 2}),
        explanation(additive, text2, {"wonderful": 2, "awful": 1}),
    ]
    result = agreement({"a": a, "b": b}, k=2)
    assert result.methods == ("a", "b")
    rho_text1 = 0.8  # one swap among 4
    rho_text2 = spearman([0, 1, 0, 0, 0, 2, 0], [0, 2, 0, 0, 0, 1, 0])
    assert result.per_text["spearman"][0, 1, 0] == pytest.approx(rho_text1)
    assert result.matrices["spearman"][0, 1] == pytest.approx((rho_text1 + rho_text2) / 2)
    assert result.matrices["spearman"][1, 0] == result.matrices["spearman"][0, 1]
    assert result.matrices["kendall"][0, 0] == 1.0
    assert result.per_text["top_k_overlap"][0, 1, 0] == 1.0  # {wonderful, movie} both
    assert result.pair("a", "b")["spearman"].n == 2
    json.dumps(result.to_dict(per_text=True), allow_nan=False)
    with pytest.raises(InvalidInputError, match="same texts"):
        agreement({"a": a, "b": b[:1]})


# ---------------------------------------------------------------------- plausibility
RATIONALE_TEXT = "a wonderful movie with an awful plot"
# words: a(0) wonderful(1) movie(2) with(3) an(4) awful(5) plot(6)
RATIONALE_SPANS = [[2, 17], [26, 31]]  # "wonderful movie", "awful"
RATIONALE_SCORES = {"wonderful": 0.9, "with": 0.8, "awful": 0.7, "movie": 0.1}


def test_rationale_metrics_equal_hand_values(additive: AdditiveModel) -> None:
    e = explanation(additive, RATIONALE_TEXT, RATIONALE_SCORES)
    assert rationale_mask(e, RATIONALE_SPANS).tolist() == [
        False,
        True,
        True,
        False,
        False,
        True,
        False,
    ]
    result = plausibility([e], [RATIONALE_SPANS])
    # k = 3 (mean rationale length): predicted {wonderful, with, awful}; 2 of 3 right.
    assert result["token_f1"].value == pytest.approx(2 / 3)
    # predicted spans {wonderful} (IOU 1/2 with "wonderful movie"), {with}, {awful} (IOU 1):
    # precision 2/3, recall 2/2.
    assert result["iou_f1"].value == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))
    # PR points (recall, precision): (1/3, 1) (1/3, 1/2) (2/3, 2/3) (1, 3/4) (1, 3/7).
    assert result["auprc"].value == pytest.approx(55 / 72)
    words = plausibility([e], [["wonderful", "movie", "awful"]])
    assert {k: v.value for k, v in words.items()} == pytest.approx(
        {k: v.value for k, v in result.items()}
    )
    mixed = plausibility([e], [[RATIONALE_SPANS[0], "awful"]])  # words and spans together
    assert {k: v.value for k, v in mixed.items()} == pytest.approx(
        {k: v.value for k, v in result.items()}
    )
    fixed = plausibility([e], [RATIONALE_SPANS], k=1)
    assert fixed["token_f1"].value == pytest.approx(0.5)
    assert fixed["iou_f1"].value == pytest.approx(2 * 1 * 0.5 / 1.5)


def test_texts_without_rationale_are_left_out(additive: AdditiveModel) -> None:
    e = explanation(additive, RATIONALE_TEXT, RATIONALE_SCORES)
    other = explanation(additive, TEXT, PERFECT)
    result = plausibility([e, other], [RATIONALE_SPANS, None])
    assert result["token_f1"].n == 1
    assert result["token_f1"].value == pytest.approx(2 / 3)
    assert math.isnan(result["auprc"].per_text[1])
    with pytest.raises(InvalidInputError, match="rationale"):
        plausibility([e], [[[5, 2]]])
    with pytest.raises(InvalidInputError, match="one rationale"):
        plausibility([e], [])


def test_auprc_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(20):
        truth = rng.random(12) < 0.3
        truth[0] = True
        scores = np.round(rng.normal(size=12), 1)  # with ties
        precision, recall, _ = metrics.precision_recall_curve(truth.astype(int), scores)
        assert auprc(scores, truth) == pytest.approx(metrics.auc(recall, precision))


def test_hit_rates_by_hand(additive: AdditiveModel) -> None:
    first = explanation(additive, RATIONALE_TEXT, RATIONALE_SCORES)  # awful ranks 3rd
    second = explanation(additive, TEXT, PERFECT)  # wonderful ranks 1st
    result = hit_rates([first, second, second], ["awful", "wonderful", None], k=3)
    assert result["hit_at_1"].value == 0.5
    assert result["hit_at_k"].value == 1.0
    assert result["hit_at_k"].n == 2
    spans = hit_rates([first], [[[26, 31]]], k=2)
    assert spans["hit_at_k"].value == 0.0


# ---------------------------------------------------------------------- baselines, metadata, data
def test_baselines(additive: AdditiveModel) -> None:
    template = [explanation(additive, RATIONALE_TEXT, RATIONALE_SCORES)]
    [marked] = marked_explanations(template, [["awful"]], method="planted")
    assert marked.method == "planted"
    assert marked.word_scores == (0, 0, 0, 0, 0, 1, 0)
    a, b = random_explanations(template, seed=3), random_explanations(template, seed=3)
    assert a[0].scores == b[0].scores and len(set(a[0].word_scores)) == 7
    assert random_explanations(template, seed=4)[0].scores != a[0].scores


def test_metric_metadata_and_results() -> None:
    for name, metric in METRICS.items():
        assert metric.name == name and metric.short_name and metric.description
        assert metric.range[0] < metric.range[1]
    assert get_metric("sufficiency_aopc").higher_is_better is False
    assert get_metric("comprehensiveness_aopc").arrow == "↑"
    assert get_metric("comprehensiveness_aopc").better(0.5, 0.2)
    assert not get_metric("deletion_area").better(0.5, 0.2)
    with pytest.raises(InvalidParameterError, match="Known metrics"):
        get_metric("accuracy")
    result = metric_result("token_f1", [1.0, math.nan, 0.5])
    assert result.value == 0.75 and result.n == 2
    assert result.stderr == pytest.approx(0.25)
    data = result.to_dict()
    assert data["per_text"] == [1.0, None, 0.5]
    json.dumps(data, allow_nan=False)
    json.dumps(get_metric("log_odds_drop").to_dict(), allow_nan=False)


def test_load_evaluation_data(tmp_path) -> None:
    path = tmp_path / "data.jsonl"
    lines = [
        {"text": "a wonderful movie", "label": "positive", "rationale": [[2, 11]]},
        {"text": "awful plot", "planted": "awful"},
        {"text": "bad spans", "rationale": [[0, 99]]},
        {"text": ""},
        {"text": "the movie", "rationale": ["movie"]},
        {"text": "the movie", "planted": "moive"},  # a typo would match nothing
        {"text": "the movie", "rationale": ["the", "flim"]},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    data = load_evaluation_data(path)
    assert [e.text for e in data.examples] == ["a wonderful movie", "awful plot", "the movie"]
    assert data.examples[0].rationale == [[2, 11]] and data.examples[1].planted == "awful"
    assert len(data.problems) == 4 and "line 3" in data.problems[0]
    assert data.problems[2] == "line 6: the 'planted' word 'moive' does not occur in the text"
    assert data.problems[3] == "line 7: the 'rationale' word 'flim' does not occur in the text"
    assert len(load_evaluation_data(path, limit=1).examples) == 1
