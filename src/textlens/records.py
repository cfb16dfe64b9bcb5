"""Structured records (e.g. security alerts) rendered to text, with per-field spans.

A model that classifies records (JSON objects such as
``{"rule": ..., "process": ..., "user": ...}``) sees them as text. A
:class:`RecordTemplate` says how a record becomes that text, and because the model was
trained on exactly that rendering, the template is part of the model's textlens
configuration: it is stored as ``textlens.json`` in the model folder
(:func:`save_template`, :func:`read_template`).

The default rendering writes one ``key: value`` pair per line, in a fixed order::

    rule: Credential Dumping Detected
    process: backup.exe
    user: svc_backup

Every rendered field keeps its character span, so after any explanation method has
scored the tokens, each token of a value knows its field and the scores add up per field
(:func:`with_fields`; :meth:`textlens.Explanation.aggregate` with ``level="field"``). The
template's own text (keys, ``": "``, line breaks) is the same in every record and
belongs to no field: a field's score is what its value contributed.

Template options (all stored in ``textlens.json`` under ``"record_template"``):

``fields``
    The field order. Listed fields come first, in this order; with the default
    ``unknown="error"`` a record with any other key is refused (the model never saw
    it). Empty (the default) means "every key of the record, sorted by name".
``pair``
    How one field is written: a format string with ``{key}`` and ``{value}``, default
    ``"{key}: {value}"``.
``separator``
    Between fields, default a line break.
``missing``
    A listed field absent from the record: ``"skip"`` it (default), render it with an
    ``"empty"`` value, or raise an ``"error"``.
``unknown``
    A key not in ``fields``: ``"error"`` (default), ``"append"`` it (sorted by name,
    after the listed fields) or ``"drop"`` it.

Values are written as follows: strings as they are, with line breaks and tabs turned
into spaces; ``true``/``false``/``null`` and numbers as in JSON; lists and objects as
compact JSON. The mark that joins the two texts of a pair (U+241E, see
:mod:`textlens.pairs`) becomes a space too, so a value holding it cannot turn a record
into a pair; a field name holding it is refused.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError, InvalidParameterError, ModelLoadError
from .explanation import Explanation, Field
from .pairs import PAIR_MARK

if TYPE_CHECKING:
    from .model import ModelAdapter

__all__ = [
    "CONFIG_FILENAME",
    "RecordTemplate",
    "RenderedField",
    "RenderedRecord",
    "check_record",
    "explain_records",
    "read_template",
    "render_records",
    "save_template",
    "template_for_model",
    "with_fields",
]

#: Name of the textlens configuration file inside a model folder.
CONFIG_FILENAME = "textlens.json"
_CONFIG_KEY = "record_template"
_MISSING = ("skip", "empty", "error")
_UNKNOWN = ("error", "append", "drop")
_CONTROL_TO_SPACE = str.maketrans(
    {"\n": " ", "\r": " ", "\t": " ", "\v": " ", "\f": " ", PAIR_MARK: " "}
)


@dataclass(frozen=True)
class RenderedField:
    """Where one field of a record lies in the rendered text.

    Attributes
    ----------
    name, value : str
        The key and the value as written.
    start, end : int
        The whole field (key included): ``text[start:end]``.
    value_start, value_end : int
        The value alone: ``text[value_start:value_end] == value``.
    """

    name: str
    value: str
    start: int
    end: int
    value_start: int
    value_end: int


@dataclass(frozen=True)
class RenderedRecord:
    """A record as the model sees it: the text and the span of each field."""

    text: str
    fields: tuple[RenderedField, ...]


@dataclass(frozen=True)
class RecordTemplate:
    """How a record is rendered to text for the model (see the module docstring).

    Parameters
    ----------
    fields : tuple of str
        Field order; empty means every key, sorted by name.
    pair : str
        Format of one field, with ``{key}`` and ``{value}``.
    separator : str
        Text between two fields.
    missing : {'skip', 'empty', 'error'}
        What to do with a listed field the record lacks.
    unknown : {'error', 'append', 'drop'}
        What to do with a key that ``fields`` does not list.
    """

    fields: tuple[str, ...] = ()
    pair: str = "{key}: {value}"
    separator: str = "\n"
    missing: str = "skip"
    unknown: str = "error"
    _parts: tuple[str, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if any(not isinstance(f, str) or not f for f in self.fields):
            raise InvalidParameterError(
                f"The 'fields' of a RecordTemplate must be non-empty strings. Got {self.fields!r}."
            )
        if len(set(self.fields)) != len(self.fields):
            raise InvalidParameterError(
                f"The 'fields' of a RecordTemplate repeat a name: {self.fields!r}."
            )
        if self.missing not in _MISSING:
            raise InvalidParameterError(
                f"The 'missing' parameter of RecordTemplate must be one of {_MISSING}. "
                f"Got {self.missing!r}."
            )
        if self.unknown not in _UNKNOWN:
            raise InvalidParameterError(
                f"The 'unknown' parameter of RecordTemplate must be one of {_UNKNOWN}. "
                f"Got {self.unknown!r}."
            )
        if not isinstance(self.separator, str) or not self.separator:
            raise InvalidParameterError(
                "The 'separator' of a RecordTemplate must be a non-empty string."
            )
        if PAIR_MARK in self.separator or PAIR_MARK in str(self.pair):
            raise InvalidParameterError(
                f"The 'separator' and 'pair' of a RecordTemplate may not contain {PAIR_MARK!r} "
                "(U+241E): textlens reserves it to join the two texts of a pair."
            )
        object.__setattr__(self, "_parts", _split_pair(self.pair))

    # ------------------------------------------------------------------ rendering
    def render(self, record: Mapping[str, Any]) -> RenderedRecord:
        """Render one record; raises :class:`InvalidInputError` for a record it cannot use."""
        record = check_record(record)
        before, middle, after = self._parts
        text_parts: list[str] = []
        fields: list[RenderedField] = []
        position = 0
        for name in self._order(record):
            value = format_value(record.get(name, ""))
            if fields:
                text_parts.append(self.separator)
                position += len(self.separator)
            piece = f"{before}{name}{middle}{value}{after}"
            value_start = position + len(before) + len(name) + len(middle)
            fields.append(
                RenderedField(
                    name,
                    value,
                    position,
                    position + len(piece),
                    value_start,
                    value_start + len(value),
                )
            )
            text_parts.append(piece)
            position += len(piece)
        text = "".join(text_parts)
        if not text.strip():
            raise InvalidInputError(
                "The record renders to an empty text; give at least one non-empty value."
            )
        return RenderedRecord(text, tuple(fields))

    def _order(self, record: Mapping[str, Any]) -> list[str]:
        if not self.fields:
            return sorted(record)
        listed = set(self.fields)
        extra = sorted(k for k in record if k not in listed)
        if extra and self.unknown == "error":
            raise InvalidInputError(
                f"The record has field(s) {', '.join(map(repr, extra))} that the model's template "
                f"does not list; the model knows: {', '.join(self.fields)}. Remove them, or set "
                "unknown='append' or 'drop' in the template."
            )
        order = []
        for name in self.fields:
            if name in record or self.missing == "empty":
                order.append(name)
            elif self.missing == "error":
                raise InvalidInputError(
                    f"The record lacks the field {name!r}; the model's template needs: "
                    f"{', '.join(self.fields)}."
                )
        if self.unknown == "append":
            order.extend(extra)
        return order

    # ------------------------------------------------------------------ configuration
    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``textlens.json``."""
        return {
            "fields": list(self.fields),
            "pair": self.pair,
            "separator": self.separator,
            "missing": self.missing,
            "unknown": self.unknown,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordTemplate:
        """Read :meth:`to_dict` output; unknown keys are an error (typos would be silent)."""
        if not isinstance(data, Mapping):
            raise InvalidParameterError(
                f"A record template must be a JSON object. Got {type(data).__name__}."
            )
        known = {"fields", "pair", "separator", "missing", "unknown"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParameterError(
                f"Unknown record template key(s) {', '.join(map(repr, unknown))}; "
                f"the keys are: {', '.join(sorted(known))}."
            )
        fields = data.get("fields", ())
        if not isinstance(fields, (list, tuple)):
            raise InvalidParameterError(
                f"The template's 'fields' must be a list of names. Got {fields!r}."
            )
        return cls(
            fields=tuple(fields),
            pair=data.get("pair", "{key}: {value}"),
            separator=data.get("separator", "\n"),
            missing=data.get("missing", "skip"),
            unknown=data.get("unknown", "error"),
        )


def _split_pair(pair: Any) -> tuple[str, str, str]:
    """Split ``pair`` into the text before ``{key}``, between, and after ``{value}``."""
    problem = None
    if not isinstance(pair, str):
        problem = f"a string, got {type(pair).__name__}"
    elif pair.count("{key}") != 1 or pair.count("{value}") != 1:
        problem = "exactly one '{key}' and one '{value}'"
    elif pair.index("{key}") > pair.index("{value}"):
        problem = "'{key}' before '{value}'"
    if problem:
        raise InvalidParameterError(
            f"The 'pair' format of a RecordTemplate must contain {problem}. Got {pair!r}; "
            "the default is '{key}: {value}'."
        )
    before, rest = pair.split("{key}")
    middle, after = rest.split("{value}")
    return before, middle, after


def format_value(value: Any) -> str:
    """A record value as written in the rendered text (see the module docstring)."""
    if isinstance(value, str):
        return value.translate(_CONTROL_TO_SPACE)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"Record values must be finite numbers. Got {value!r}.")
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": ")).replace(PAIR_MARK, " ")


def check_record(record: Any, index: int | None = None) -> dict[str, Any]:
    """Validate a record: a non-empty JSON object with non-empty string keys and JSON values."""
    where = "The record" if index is None else f"Record {index}"
    if not isinstance(record, Mapping):
        raise InvalidInputError(
            f"{where} is of type {type(record).__name__}; expected a JSON object of fields."
        )
    if not record:
        raise InvalidInputError(f"{where} has no fields; give at least one 'key: value'.")
    for key, value in record.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidInputError(
                f"{where} has a field name {key!r}; names must be non-empty strings."
            )
        if any(c in key for c in "\n\r"):
            raise InvalidInputError(f"{where} has a field name with a line break: {key!r}.")
        if PAIR_MARK in key:
            raise InvalidInputError(
                f"{where} has a field name with {PAIR_MARK!r} (U+241E), which textlens reserves "
                f"to join the two texts of a pair: {key!r}. Rename the field."
            )
        if not _is_json_value(value):
            raise InvalidInputError(
                f"{where}: field {key!r} {_what_is_wrong(value)}; values must be strings, "
                "finite numbers, booleans, null, or lists/objects of those."
            )
    return dict(record)


def _what_is_wrong(value: Any, depth: int = 0) -> str:
    """Why ``value`` (not a JSON value) is refused: its type, a non-finite number, nesting."""
    if depth > 8:
        return "is nested more than 8 levels deep"
    if isinstance(value, float) and not math.isfinite(value):
        return f"holds the non-finite number {value!r}"
    items: Any = ()
    if isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, Mapping):
        bad_key = next((k for k in value if not isinstance(k, str)), None)
        if bad_key is not None:
            return f"holds an object with a key of type {type(bad_key).__name__} ({bad_key!r})"
        items = value.values()
    else:
        return f"holds a value of type {type(value).__name__}"
    for item in items:
        if not _is_json_value(item, depth + 1):
            return _what_is_wrong(item, depth + 1)
    return f"holds a value of type {type(value).__name__}"  # not reached: an item is why


def _is_json_value(value: Any, depth: int = 0) -> bool:
    if depth > 8:
        return False
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_is_json_value(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_json_value(v, depth + 1) for k, v in value.items())
    return False


def render_records(
    records: Sequence[Mapping[str, Any]], template: RecordTemplate | None = None
) -> list[RenderedRecord]:
    """Render a batch of records; errors name the record's index."""
    if isinstance(records, Mapping):
        raise InvalidInputError(
            "Expected a list of records, got a single record. Wrap it in a list: [record]."
        )
    template = template or RecordTemplate()
    rendered = []
    for i, record in enumerate(records):
        try:
            rendered.append(template.render(check_record(record, i)))
        except InvalidInputError as exc:
            message = str(exc)
            if not message.startswith(f"Record {i}"):
                message = f"Record {i}: {message}"
            raise InvalidInputError(message) from None
    if not rendered:
        raise InvalidInputError("No records were given; pass at least one record.")
    return rendered


# ---------------------------------------------------------------------------- fields of tokens
def field_spans(
    rendered: RenderedRecord, offsets: Sequence[tuple[int, int]], special: Sequence[bool]
) -> tuple[Field, ...]:
    """The :class:`~textlens.explanation.Field` of each rendered field, with its tokens.

    A field's tokens are those of its **value**: a token belongs to the field whose value
    its characters overlap most (ties: the first). The template's own text (keys, ``": "``,
    separators) is the same in every record, says nothing about this one, and belongs to
    no field; nor do special tokens. A field whose value tokens were all truncated away
    (or whose value is empty) keeps its span with no tokens, and scores 0.
    """
    members: list[list[int]] = [[] for _ in rendered.fields]
    for index, ((a, b), is_special) in enumerate(zip(offsets, special, strict=True)):
        if is_special or b <= a:
            continue
        best, best_overlap = -1, 0
        for f, spec in enumerate(rendered.fields):
            overlap = min(b, spec.value_end) - max(a, spec.value_start)
            if overlap > best_overlap:
                best, best_overlap = f, overlap
        if best >= 0:
            members[best].append(index)
    return tuple(
        Field(f.value, f.value_start, f.value_end, tuple(tokens), name=f.name, value=f.value)
        for f, tokens in zip(rendered.fields, members, strict=True)
    )


def with_fields(explanation: Explanation, rendered: RenderedRecord) -> Explanation:
    """``explanation`` of ``rendered.text``, now carrying the record's fields.

    Field scores are then sums over each field's tokens:
    ``explanation.aggregate("field")``.
    """
    if explanation.text != rendered.text:
        raise InvalidInputError(
            "The explanation is not of this record's text; explain rendered.text and pass "
            "that explanation."
        )
    return replace(
        explanation, fields=field_spans(rendered, explanation.offsets, explanation.special)
    )


def explain_records(
    model: ModelAdapter,
    records: Sequence[Mapping[str, Any]],
    method: str = "integrated_gradients",
    *,
    template: RecordTemplate | None = None,
    target: int | str | None = None,
    **params: Any,
) -> list[Explanation]:
    """Explain records with ``method``; every explanation carries field-level scores.

    Parameters
    ----------
    model : ModelAdapter
        The classifier.
    records : list of dict
        The records (JSON objects).
    method : str
        A registered method name (``textlens.methods()``).
    template : RecordTemplate, optional
        Defaults to the model's own (:func:`template_for_model`).
    target : int, str or None
        Class to explain; None explains each record's predicted class.
    **params
        The method's parameters.

    Returns
    -------
    list of Explanation
        One per record; ``e.aggregate("field")`` gives the field scores.
    """
    from .explainers import make_explainer

    template = template or template_for_model(model)
    rendered = render_records(records, template)
    explainer = make_explainer(method, model, **params)
    explanations = explainer.explain([r.text for r in rendered], target=target)
    return [with_fields(e, r) for e, r in zip(explanations, rendered, strict=True)]


# ---------------------------------------------------------------------------- configuration file
def read_template(folder: str | Path) -> RecordTemplate | None:
    """The record template stored in ``folder/textlens.json``, or None if there is none."""
    path = Path(folder) / CONFIG_FILENAME
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"Could not read {path}: {exc}. Fix or delete the file.") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} must hold a JSON object.")
    if _CONFIG_KEY not in config:
        return None
    try:
        return RecordTemplate.from_dict(config[_CONFIG_KEY])
    except InvalidParameterError as exc:
        raise ModelLoadError(f"The record template in {path} is invalid: {exc}") from exc


def save_template(folder: str | Path, template: RecordTemplate) -> Path:
    """Store ``template`` in ``folder/textlens.json`` (other keys of the file are kept)."""
    path = Path(folder) / CONFIG_FILENAME
    config: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"Could not read {path}: {exc}. Fix or delete the file.") from exc
        if isinstance(loaded, dict):
            config = loaded
    config[_CONFIG_KEY] = template.to_dict()
    handle, tmp = tempfile.mkstemp(prefix=".textlens-", suffix=".json", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(config, out, indent=2, ensure_ascii=False)
    os.replace(tmp, path)
    return path


def template_for_model(model: ModelAdapter) -> RecordTemplate:
    """The template of a model loaded from a folder (``textlens.json``), else the default."""
    folder = Path(model.model_id)
    template = read_template(folder) if folder.is_dir() else None
    return template or RecordTemplate()
