"""Records rendered to text: template, spans, textlens.json, field-level scores on explanations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from textlens.errors import InvalidInputError, InvalidParameterError, ModelLoadError
from textlens.explainers import REGISTRY
from textlens.explanation import Explanation, Field
from textlens.model import ModelAdapter
from textlens.records import (
    CONFIG_FILENAME,
    RecordTemplate,
    explain_records,
    field_spans,
    format_value,
    read_template,
    render_records,
    save_template,
    template_for_model,
    with_fields,
)

RECORD = {"story": "the movie was wonderful", "place": "the city", "day": 3}
TEMPLATE = RecordTemplate(fields=("story", "place", "day"))


def test_default_rendering_is_key_value_lines_in_template_order() -> None:
    rendered = TEMPLATE.render({"day": 3, "place": "the city", "story": "the movie was wonderful"})
    assert rendered.text == "story: the movie was wonderful\nplace: the city\nday: 3"
    assert [f.name for f in rendered.fields] == ["story", "place", "day"]
    for f in rendered.fields:
        assert rendered.text[f.start : f.end] == f"{f.name}: {f.value}"
        assert rendered.text[f.value_start : f.value_end] == f.value


def test_without_field_list_keys_are_sorted() -> None:
    rendered = RecordTemplate().render({"b": "x", "a": "y"})
    assert rendered.text == "a: y\nb: x"


def test_custom_pair_and_separator() -> None:
    template = RecordTemplate(fields=("a", "b"), pair="[{key}] = {value};", separator=" | ")
    rendered = template.render({"a": "one two", "b": True})
    assert rendered.text == "[a] = one two; | [b] = true;"
    a, b = rendered.fields
    assert rendered.text[a.start : a.end] == "[a] = one two;"
    assert rendered.text[b.value_start : b.value_end] == "true"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\nb\tc", "a b c"),
        ("a \u241e b", "a   b"),  # the pair mark: a record never becomes a pair
        (["a\u241eb"], '["a b"]'),
        (3, "3"),
        (2.5, "2.5"),
        (False, "false"),
        (None, "null"),
        ([1, "x"], '[1, "x"]'),
        ({"k": 1}, '{"k": 1}'),
    ],
)
def test_value_formatting(value: object, expected: str) -> None:
    assert format_value(value) == expected


def test_missing_and_unknown_fields() -> None:
    record = {"story": "the movie", "extra": "x"}
    with pytest.raises(InvalidInputError, match=r"'extra'.*does not list"):
        TEMPLATE.render(record)
    assert (
        RecordTemplate(fields=("story", "place"), unknown="drop").render(record).text
        == "story: the movie"
    )
    appended = RecordTemplate(fields=("story", "place"), unknown="append").render(record)
    assert appended.text == "story: the movie\nextra: x"
    assert (
        RecordTemplate(fields=("story", "place"), unknown="drop", missing="empty")
        .render(record)
        .text
        == "story: the movie\nplace: "
    )
    with pytest.raises(InvalidInputError, match="lacks the field 'place'"):
        RecordTemplate(fields=("story", "place"), unknown="drop", missing="error").render(record)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("text", "expected a JSON object"),
        ({}, "has no fields"),
        ({"": "x"}, "names must be non-empty"),
        ({"a\nb": "x"}, "line break"),
        ({"a\u241e": "x"}, "U\\+241E"),
        ({"a": object()}, "holds a value of type object; values must be"),
        ({"a": math.nan}, "holds the non-finite number nan; values must be"),
        ({"a": [1, {"b": -math.inf}]}, "holds the non-finite number -inf"),
        ({"a": {1: "x"}}, r"an object with a key of type int \(1\)"),
        ({"a": [[[[[[[[[["x"]]]]]]]]]]}, "nested more than 8 levels deep"),
    ],
)
def test_bad_records_are_refused_with_their_index(record: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        render_records([{"ok": "fine"}, record], RecordTemplate())  # type: ignore[list-item]
    assert str(info.value).startswith("Record 1")


def test_render_records_wants_a_list() -> None:
    with pytest.raises(InvalidInputError, match="Wrap it in a list"):
        render_records(RECORD)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="No records"):
        render_records([])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pair": "{value}"},
        {"pair": "{value} {key}"},
        {"pair": "{key}{key}{value}"},
        {"separator": ""},
        {"separator": " \u241e "},
        {"pair": "{key} \u241e {value}"},
        {"missing": "maybe"},
        {"unknown": "keep"},
        {"fields": ("a", "a")},
        {"fields": ("a", "")},
    ],
)
def test_bad_templates(kwargs: dict) -> None:
    with pytest.raises(InvalidParameterError):
        RecordTemplate(**kwargs)


def test_template_round_trips_through_textlens_json(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILENAME).write_text(json.dumps({"other": 1}))
    template = RecordTemplate(
        fields=("b", "a"), pair="{key}={value}", separator="; ", missing="empty", unknown="append"
    )
    save_template(tmp_path, template)
    assert read_template(tmp_path) == template
    assert json.loads((tmp_path / CONFIG_FILENAME).read_text())["other"] == 1  # other keys kept
    assert RecordTemplate.from_dict(template.to_dict()) == template


def test_read_template_absent_or_broken(tmp_path: Path) -> None:
    assert read_template(tmp_path) is None
    (tmp_path / CONFIG_FILENAME).write_text("{not json")
    with pytest.raises(ModelLoadError, match="Could not read"):
        read_template(tmp_path)
    (tmp_path / CONFIG_FILENAME).write_text(json.dumps({"record_template": {"feilds": []}}))
    with pytest.raises(ModelLoadError, match="'feilds'"):
        read_template(tmp_path)


def test_template_for_model_reads_the_model_folder(
    tmp_path: Path, tiny_adapter: ModelAdapter
) -> None:
    assert template_for_model(tiny_adapter) == RecordTemplate()  # in-memory model: default
    save_template(tmp_path, TEMPLATE)
    adapter = ModelAdapter(tiny_adapter.model, tiny_adapter.tokenizer, model_id=str(tmp_path))
    assert template_for_model(adapter) == TEMPLATE


def test_every_value_token_knows_its_field(tiny_adapter: ModelAdapter) -> None:
    rendered = TEMPLATE.render(RECORD)
    encoding = tiny_adapter.encode([rendered.text])
    fields = field_spans(rendered, encoding.offsets[0], encoding.special[0])
    owner = {t: f.name for f in fields for t in f.tokens}
    template_tokens = 0
    for index, ((a, b), special) in enumerate(
        zip(encoding.offsets[0], encoding.special[0], strict=True)
    ):
        values = [f for f in rendered.fields if f.value_start <= a and b <= f.value_end]
        if special or not values:  # [CLS], [SEP], keys and ':' are template text
            assert index not in owner
            template_tokens += not special
            continue
        assert owner[index] == values[0].name
    assert template_tokens == 6  # "story", ":", "place", ":", "day", ":"
    assert [f.tokens for f in fields] == sorted(f.tokens for f in fields)
    for f in fields:
        assert rendered.text[f.start : f.end] == f.value == f.text


@pytest.mark.parametrize("method", ["grad_x_input", "integrated_gradients", "attention"])
def test_field_scores_are_sums_over_field_tokens(
    planted_adapter: ModelAdapter, method: str
) -> None:
    [e] = explain_records(planted_adapter, [RECORD], method, template=TEMPLATE)
    assert e.fields is not None and [f.name for f in e.fields] == ["story", "place", "day"]
    names, scores = e.aggregate("field")
    assert names == ("story", "place", "day")
    for f, score in zip(e.fields, scores, strict=True):
        assert score == pytest.approx(math.fsum(e.scores[i] for i in f.tokens))
    assert e.field_scores == scores
    # the planted word makes its field the top one
    assert e.top(1, "field")[0][0] == "story"


def test_fields_round_trip_through_json(planted_adapter: ModelAdapter) -> None:
    [e] = explain_records(planted_adapter, [RECORD], "grad_x_input", template=TEMPLATE)
    data = json.loads(json.dumps(e.to_dict()))
    assert [f["name"] for f in data["fields"]] == ["story", "place", "day"]
    assert [f["score"] for f in data["fields"]] == pytest.approx(list(e.field_scores))
    back = Explanation.from_dict(data)
    assert back == e
    assert isinstance(back.fields[0], Field)  # type: ignore[index]


def test_plain_text_explanations_have_no_fields(planted_adapter: ModelAdapter) -> None:
    [e] = REGISTRY["grad_x_input"](planted_adapter).explain(["the movie was wonderful"])
    assert e.fields is None
    assert e.to_dict()["fields"] is None
    assert Explanation.from_dict(e.to_dict()) == e
    with pytest.raises(InvalidParameterError, match="no fields"):
        e.aggregate("field")
    with pytest.raises(InvalidParameterError, match="'token', 'word', 'field'"):
        e.aggregate("sentence")


def test_old_json_without_fields_still_loads(planted_adapter: ModelAdapter) -> None:
    [e] = REGISTRY["grad_x_input"](planted_adapter).explain(["the movie was wonderful"])
    data = e.to_dict()
    del data["fields"]
    assert Explanation.from_dict(data) == e


def test_with_fields_checks_the_text(planted_adapter: ModelAdapter) -> None:
    [e] = REGISTRY["grad_x_input"](planted_adapter).explain(["the movie was wonderful"])
    with pytest.raises(InvalidInputError, match="not of this record"):
        with_fields(e, TEMPLATE.render(RECORD))


def test_truncated_field_keeps_its_span_with_no_tokens(planted_adapter: ModelAdapter) -> None:
    long_record = {"story": " ".join(["the movie"] * 40), "place": "the city"}
    template = RecordTemplate(fields=("story", "place"))
    with pytest.warns(UserWarning, match="tokens were dropped"):
        [e] = explain_records(planted_adapter, [long_record], "grad_x_input", template=template)
    assert e.truncated_tokens > 0
    place = e.fields[1]  # type: ignore[index]
    assert place.name == "place" and place.tokens == ()
    assert e.aggregate("field")[1][1] == 0.0


def test_explain_records_uses_the_model_template(
    tmp_path: Path, planted_adapter: ModelAdapter
) -> None:
    save_template(tmp_path, RecordTemplate(fields=("place", "story")))
    adapter = ModelAdapter(planted_adapter.model, planted_adapter.tokenizer, model_id=str(tmp_path))
    [e] = explain_records(adapter, [{"story": "wonderful", "place": "the city"}], "saliency")
    assert e.text == "place: the city\nstory: wonderful"
    assert [f.name for f in e.fields] == ["place", "story"]  # type: ignore[union-attr]
