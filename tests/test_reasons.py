"""Key reasons: top-k units for and against, shares, a summary made of explanation facts only."""

from __future__ import annotations

import re

import pytest

from textlens.errors import InvalidParameterError
from textlens.explanation import Explanation
from textlens.model import ModelAdapter
from textlens.reasons import MAX_REASONS, format_score, key_reasons
from textlens.records import RecordTemplate, explain_records, with_fields

ALERT = {
    "process": "backup.exe",
    "rule": "scheduled scan",
    "src_ip": "203.0.113.7",
    "user": "svc",
    "host": "h1",
}
TEMPLATE = RecordTemplate(fields=("process", "rule", "src_ip", "user", "host"))
FIELD_SCORES = {"process": 0.41, "rule": 0.22, "src_ip": -0.08, "user": 0.01, "host": -0.004}


def alert_explanation(
    field_scores: dict[str, float] = FIELD_SCORES,
    probabilities=(0.93, 0.07),
    method: str = "grad_x_input",
) -> Explanation:
    """An explanation whose tokens are the words of the rendered alert.

    Each field's score sits on the first word of its value; keys score 1.0 (template
    text, which no field counts).
    """
    rendered = TEMPLATE.render(ALERT)
    text = rendered.text
    tokens, offsets, scores = ["[CLS]"], [(0, 0)], [0.0]
    for field in rendered.fields:
        first_value_word = True
        for match in re.finditer(r"\S+", text[field.start : field.end]):
            start = field.start + match.start()
            tokens.append(match.group())
            offsets.append((start, field.start + match.end()))
            if start < field.value_start:
                scores.append(1.0)
            else:
                scores.append(field_scores[field.name] if first_value_word else 0.0)
                first_value_word = False
    tokens.append("[SEP]")
    offsets.append((0, 0))
    scores.append(0.0)
    n = len(tokens)
    explanation = Explanation(
        text=text,
        tokens=tuple(tokens),
        offsets=tuple(offsets),
        special=tuple(i in (0, n - 1) for i in range(n)),
        word_ids=tuple(None if i in (0, n - 1) else i - 1 for i in range(n)),
        scores=tuple(scores),
        method=method,
        params={},
        target=0,
        labels=("false_positive", "true_threat"),
        probabilities=tuple(probabilities),
        model_id="hand-made",
    )
    return with_fields(explanation, rendered)


def test_summary_matches_the_issue_example() -> None:
    reasons = key_reasons(alert_explanation(), k=3)
    assert reasons.summary == (
        'false_positive (0.93): mostly because process="backup.exe" (+0.41) and '
        'rule="scheduled scan" (+0.22); against: src_ip="203.0.113.7" (\u22120.08)'
    )
    assert [r.name for r in reasons.supporting] == ["process", "rule"]
    assert [r.name for r in reasons.opposing] == ["src_ip"]
    assert reasons.level == "field" and reasons.signed


def test_shares_are_fractions_of_total_absolute_score() -> None:
    reasons = key_reasons(alert_explanation())
    total = sum(abs(v) for v in FIELD_SCORES.values())
    for r in (*reasons.supporting, *reasons.opposing):
        assert r.share == pytest.approx(abs(FIELD_SCORES[r.name]) / total)
        assert r.score == pytest.approx(FIELD_SCORES[r.name])
        assert r.value == ALERT[r.name]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_at_most_k_reasons_largest_first(k: int) -> None:
    reasons = key_reasons(alert_explanation(), k=k)
    chosen = [*reasons.supporting, *reasons.opposing]
    assert len(chosen) == min(k, len(FIELD_SCORES))
    expected = sorted(FIELD_SCORES, key=lambda n: -abs(FIELD_SCORES[n]))[:k]
    assert {r.name for r in chosen} == set(expected)
    assert list(reasons.supporting) == sorted(reasons.supporting, key=lambda r: -abs(r.score))


@pytest.mark.parametrize("k", [0, 6, 2.0, True])
def test_k_is_bounded(k: object) -> None:
    with pytest.raises(InvalidParameterError, match=r"\[1, 5\]"):
        key_reasons(alert_explanation(), k=k)  # type: ignore[arg-type]
    assert MAX_REASONS == 5


def test_summary_holds_only_names_values_and_numbers_of_the_explanation() -> None:
    e = alert_explanation()
    reasons = key_reasons(e)
    summary = reasons.summary
    quoted = re.findall(r'(\w+)="([^"]*)"', summary)
    assert quoted and all(ALERT[name] == value for name, value in quoted)
    rest = summary
    for name, value in quoted:
        rest = rest.replace(f'{name}="{value}"', "")
    numbers = [float(x.replace("\u2212", "-")) for x in re.findall(r"[+\u2212]?\d+\.\d+", rest)]
    assert len(numbers) == 1 + len(quoted)
    allowed = (
        {round(e.probabilities[e.target], 2)}
        | {round(v, 2) for v in FIELD_SCORES.values()}
        | {float(f"{v:+.2g}") for v in FIELD_SCORES.values()}
    )
    assert all(round(n, 4) in {round(a, 4) for a in allowed} for n in numbers), (numbers, allowed)
    # what is left once names, values, numbers and the label are removed: only the fixed connectives
    rest = re.sub(r"[+\u2212]?\d+\.\d+(e-?\d+)?", "", rest).replace("false_positive", "")
    assert set(re.findall(r"[a-z]+", rest)) <= {"mostly", "because", "and", "against"}


def test_only_opposing_or_nothing() -> None:
    reasons = key_reasons(alert_explanation({k: -abs(v) for k, v in FIELD_SCORES.items()}), k=2)
    assert reasons.supporting == ()
    assert reasons.summary.startswith(
        "false_positive (0.93): no field speaks for it; against: process="
    )
    zero = key_reasons(alert_explanation({k: 0.0 for k in FIELD_SCORES}))
    assert zero.supporting == zero.opposing == ()
    assert zero.summary == "false_positive (0.93): no field speaks for it"
    unsigned = key_reasons(alert_explanation({k: 0.0 for k in FIELD_SCORES}, method="attention"))
    assert unsigned.summary == "false_positive (0.93): no field carries any weight"
    positive = key_reasons(alert_explanation({k: abs(v) for k, v in FIELD_SCORES.items()}), k=1)
    assert positive.signed and positive.summary.startswith("false_positive (0.93): mostly because")


def test_unsigned_methods_list_weight_not_direction() -> None:
    unsigned = {k: abs(v) for k, v in FIELD_SCORES.items()}
    reasons = key_reasons(alert_explanation(unsigned, method="saliency"), k=2)
    assert not reasons.signed
    assert (
        reasons.summary == 'false_positive (0.93): most weight on process="backup.exe" (0.41) and '
        'rule="scheduled scan" (0.22)'
    )


def test_long_values_are_cut_with_an_ellipsis() -> None:
    long_value = "x" * 100
    alert = {**ALERT, "process": long_value}
    e = alert_explanation()
    rendered = TEMPLATE.render(alert)
    from dataclasses import replace

    # rebuild with the long value (same scores on the first word of each field)
    e = replace(e, text=rendered.text, offsets=tuple(_shift(e, rendered)), fields=None)
    e = with_fields(e, rendered)
    summary = key_reasons(e, k=1).summary
    assert 'process="' + "x" * 39 + '…"' in summary


def _shift(e: Explanation, rendered) -> list[tuple[int, int]]:
    offsets = []
    for (a, b), special in zip(e.offsets, e.special, strict=True):
        if special:
            offsets.append((0, 0))
            continue
        word = e.text[a:b]
        start = rendered.text.find(
            word if word != "backup.exe" else "x" * 100,
            offsets[-1][1] if offsets and offsets[-1] != (0, 0) else 0,
        )
        offsets.append((start, start + (len(word) if word != "backup.exe" else 100)))
    return offsets


def test_word_level_for_plain_text(planted_adapter: ModelAdapter) -> None:
    from textlens.explainers import REGISTRY

    [e] = REGISTRY["grad_x_input"](planted_adapter).explain(["the movie was wonderful in the city"])
    reasons = key_reasons(e, k=2)
    assert reasons.level == "word"
    assert reasons.supporting[0].name == "wonderful"
    assert reasons.summary.startswith("positive (") and '"wonderful" (+' in reasons.summary
    tokens = key_reasons(e, k=2, level="token")
    assert tokens.level == "token" and tokens.supporting[0].name == "wonderful"
    with pytest.raises(InvalidParameterError, match="no fields"):
        key_reasons(e, level="field")
    with pytest.raises(InvalidParameterError, match="'level'"):
        key_reasons(e, level="sentence")


def test_reasons_of_a_record_on_a_real_model(planted_adapter: ModelAdapter) -> None:
    template = RecordTemplate(fields=("story", "place"))
    [e] = explain_records(
        planted_adapter,
        [{"story": "an awful plot", "place": "the city"}],
        "integrated_gradients",
        template=template,
    )
    reasons = key_reasons(e)
    assert reasons.label == "negative"
    assert reasons.supporting[0].name == "story"
    data = reasons.to_dict()
    assert data["supporting"][0]["value"] == "an awful plot"
    assert set(data) == {
        "method",
        "label",
        "probability",
        "predicted_label",
        "level",
        "signed",
        "supporting",
        "opposing",
        "summary",
    }


@pytest.mark.parametrize(
    ("score", "text"),
    [
        (0.41, "+0.41"),
        (-0.08, "\u22120.08"),
        (0.0012, "+0.0012"),
        (1234.5, "+1.2e+03"),
        (0.0, "+0"),
    ],
)
def test_score_format(score: float, text: str) -> None:
    assert format_score(score) == text
