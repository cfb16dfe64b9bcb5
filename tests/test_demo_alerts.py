"""The alert-triage demo: the generator's rule and (slow) the fine-tuned model's explanations."""

from __future__ import annotations

import collections
import io
import json

import pytest

from textlens.demo.alerts import (
    ALERT_FIELDS,
    ALERT_LABELS,
    ALERT_TEMPLATE,
    DECIDING_FIELDS,
    PROCESS_POINTS,
    USER_POINTS,
    alert_label,
    generate_alerts,
    risk_points,
)


def points_of(table: dict[int, tuple[str, ...]], value: str) -> int:
    [points] = [k for k, names in table.items() if value in names]
    return points


def test_labels_follow_the_documented_rule() -> None:
    alerts = generate_alerts(600, seed=3)
    cells = collections.Counter()
    for alert in alerts:
        risk = points_of(PROCESS_POINTS, alert.record["process"]) + points_of(
            USER_POINTS, alert.record["user"]
        )
        assert risk == risk_points(alert.record)
        assert alert.label == ("true_threat" if risk > 0 else "false_positive")
        assert alert.label == alert_label(alert.record)
        assert tuple(alert.record) == ALERT_FIELDS
        cells[risk > 0] += 1
    assert cells[True] == cells[False] == 300


def test_both_deciding_fields_always_carry_points() -> None:
    """Every process and every user is worth +-1 or +-2: neither field is ever neutral."""
    for table in (PROCESS_POINTS, USER_POINTS):
        assert set(table) == {-2, -1, 1, 2}
        names = [n for group in table.values() for n in group]
        assert len(names) == len(set(names))
    for alert in generate_alerts(200, seed=4):
        # some value of each deciding field flips the label, unless the other field is at -2
        # (an IT administrator, or a maintenance binary, clears any alert)
        for field, table, other, other_table in (
            ("process", PROCESS_POINTS, "user", USER_POINTS),
            ("user", USER_POINTS, "process", PROCESS_POINTS),
        ):
            labels = {alert_label({**alert.record, field: group[0]}) for group in table.values()}
            other_points = points_of(other_table, alert.record[other])
            assert labels == set(ALERT_LABELS) or other_points == -2


def test_generator_is_reproducible_and_seeded() -> None:
    assert generate_alerts(20, seed=1) == generate_alerts(20, seed=1)
    assert generate_alerts(20, seed=1) != generate_alerts(20, seed=2)
    with pytest.raises(ValueError):
        generate_alerts(0)


@pytest.mark.parametrize("field", [f for f in ALERT_FIELDS if f not in DECIDING_FIELDS])
def test_distractors_do_not_depend_on_the_label(field: str) -> None:
    """Each distractor value is about as frequent among threats as among false positives."""
    alerts = generate_alerts(4000, seed=5)
    by_label = {label: collections.Counter() for label in ALERT_LABELS}
    for alert in alerts:
        value = alert.record[field]
        key = (
            value if field not in ("host", "dst_ip") else str(value).rsplit("-", 1)[0].split(".")[0]
        )
        by_label[alert.label][key] += 1
    for value in set(by_label["true_threat"]) | set(by_label["false_positive"]):
        a, b = by_label["true_threat"][value] / 2000, by_label["false_positive"][value] / 2000
        assert abs(a - b) < 0.05, (field, value, a, b)


def test_alerts_render_with_the_model_template() -> None:
    alert = generate_alerts(1, seed=0)[0]
    rendered = ALERT_TEMPLATE.render(alert.record)
    assert rendered.text == alert.text
    assert [f.name for f in rendered.fields] == list(ALERT_FIELDS)
    assert rendered.text.splitlines()[0].startswith("rule: ")


@pytest.fixture(scope="module")
def deciding_field_agreement() -> dict[str, float]:
    """On 60 held-out alerts: how often each method's top-2 fields are the rule's two fields."""
    import torch

    from textlens import load
    from textlens.demo.alerts import build_alerts_model, deciding_fields_agreement
    from textlens.records import read_template

    torch.set_num_threads(1)
    info = build_alerts_model(progress=False)
    assert info.accuracy >= 0.95
    assert read_template(info.path) == ALERT_TEMPLATE
    model = load(info.path)
    heldout = info.heldout[:60]
    return {
        method: deciding_fields_agreement(model, heldout, method)
        for method in ("grad_x_input", "integrated_gradients")
    }


@pytest.mark.slow
@pytest.mark.heavy
def test_demo_model_explanations_find_the_deciding_fields(
    deciding_field_agreement: dict[str, float],
) -> None:
    """Regression floor: well above chance (1 in 28 pairs of fields), as measured."""
    assert deciding_field_agreement["grad_x_input"] >= 0.45
    assert deciding_field_agreement["integrated_gradients"] >= 0.65


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.xfail(
    strict=False,
    reason="issue 6 goal not reached yet: top-2 fields = the deciding fields on ~58% "
    "(grad_x_input) and ~80% (integrated_gradients) of held-out alerts, not 90%",
)
def test_demo_model_meets_the_issue_goal(deciding_field_agreement: dict[str, float]) -> None:
    """The issue's check: >= 90% of held-out alerts for both methods."""
    assert deciding_field_agreement["grad_x_input"] >= 0.9
    assert deciding_field_agreement["integrated_gradients"] >= 0.9


@pytest.mark.slow
@pytest.mark.heavy
def test_demo_alerts_run_prints_reasons() -> None:
    from textlens.demo.alerts import run_alerts_demo

    out = io.StringIO()
    assert run_alerts_demo(n_alerts=2, out=out, progress=False) == 0
    text = out.getvalue()
    assert "Held-out accuracy" in text
    assert text.count("grad_x_input: ") == 2 and text.count("integrated_gradients: ") == 2
    first_alert = json.loads(text.split("\n\n")[1].splitlines()[0])
    assert set(first_alert) == set(ALERT_FIELDS)


def test_training_alerts_may_lack_distractors_but_never_deciding_fields() -> None:
    alerts = generate_alerts(300, seed=6, drop_distractors=0.3)
    sizes = collections.Counter(len(a.record) for a in alerts)
    assert min(sizes) < len(ALERT_FIELDS) and max(sizes) == len(ALERT_FIELDS)
    for alert in alerts:
        assert set(DECIDING_FIELDS) <= set(alert.record)
        rendered = ALERT_TEMPLATE.render(alert.record)
        assert [f.name for f in rendered.fields] == [f for f in ALERT_FIELDS if f in alert.record]
    with pytest.raises(ValueError):
        generate_alerts(3, drop_distractors=1.0)
