"""The one result object every explainer returns.

An :class:`Explanation` is pure data: the text, its tokens with character offsets, one
score per token, the prediction, the explained target, the method and its parameters,
and quality figures such as the integrated-gradients completeness delta. Scores can be
aggregated to words (from the tokenizer's word ids, so WordPiece, BPE and SentencePiece
all work) or, for a text rendered from a structured record, to the record's fields
(see :mod:`textlens.records`), and the whole object round-trips through JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidParameterError
from .pairs import split_pair

__all__ = ["Explanation", "Field", "Span"]

Level = Literal["token", "word", "field"]
LEVELS: tuple[str, ...] = ("token", "word", "field")
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Span:
    """A unit of text made of one or more tokens: a word, a field, a sentence.

    Attributes
    ----------
    text : str
        The characters of the original text the span covers.
    start, end : int
        Character offsets into the original text (``text[start:end]``).
    tokens : tuple of int
        Indices of the tokens that make up the span.
    """

    text: str
    start: int
    end: int
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class Field(Span):
    """A field of a structured record, as rendered into the explained text.

    A :class:`Span` over the field's value (``text[start:end] == value``; ``tokens`` are
    the value's tokens; the key and separators of the record template belong to no
    field) that also knows the field's name.

    Attributes
    ----------
    name : str
        The record's key, e.g. ``"process"``.
    value : str
        The value as rendered, e.g. ``"backup.exe"``.
    """

    name: str = ""
    value: str = ""


@dataclass(frozen=True)
class Explanation:
    """Scores that say how much each token of ``text`` mattered to ``target``.

    Attributes
    ----------
    text : str
        The explained text (after nothing but truncation: see ``truncated_tokens``); a
        pair of texts is one string with ``" ␞ "`` between them (see :attr:`pair`).
    tokens : tuple of str
        The model's tokens, special tokens included.
    offsets : tuple of (int, int)
        Character span of each token in ``text``; ``(0, 0)`` for special tokens.
    special : tuple of bool
        Whether each token is a special token ([CLS], [SEP], <s>...).
    word_ids : tuple of int or None
        The word each token belongs to (None for special tokens).
    scores : tuple of float
        One score per token. Sign convention: positive supports ``target``.
    method : str
        Registered name of the method that produced the scores.
    params : dict
        The method's parameters, enough to reproduce the result.
    target : int
        Index of the explained class.
    labels : tuple of str
        Names of all classes, in index order.
    probabilities : tuple of float
        The model's class probabilities for ``text``.
    model_id : str
        Where the model came from (a folder, or a name given by the caller).
    quality : dict
        Method-specific quality figures, e.g. ``delta`` and ``relative_delta`` for
        integrated gradients.
    truncated_tokens : int
        How many tokens were dropped because the text exceeded the model's maximum length.
    uncertainty : tuple of float or None
        Per-token standard error for sampled methods, else None.
    fields : tuple of Field or None
        The record fields the text was rendered from (see :mod:`textlens.records`),
        else None for plain text.
    """

    text: str
    tokens: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...]
    special: tuple[bool, ...]
    word_ids: tuple[int | None, ...]
    scores: tuple[float, ...]
    method: str
    params: dict[str, Any]
    target: int
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    model_id: str
    quality: dict[str, Any] = field(default_factory=dict)
    truncated_tokens: int = 0
    uncertainty: tuple[float, ...] | None = None
    fields: tuple[Field, ...] | None = None

    @property
    def pair(self) -> tuple[str, str] | None:
        """The two texts, if ``text`` is a pair (see :mod:`textlens.pairs`), else None."""
        return split_pair(self.text)

    # ------------------------------------------------------------------ prediction
    @property
    def target_label(self) -> str:
        """Name of the explained class."""
        return self.labels[self.target]

    @property
    def predicted(self) -> int:
        """Index of the most probable class."""
        return max(range(len(self.probabilities)), key=self.probabilities.__getitem__)

    @property
    def predicted_label(self) -> str:
        """Name of the most probable class."""
        return self.labels[self.predicted]

    @property
    def delta(self) -> float | None:
        """Completeness delta, sum(attributions) - (f(x) - f(baseline)), if the method has one."""
        value = self.quality.get("delta")
        return None if value is None else float(value)

    # ------------------------------------------------------------------ aggregation
    @property
    def words(self) -> tuple[Span, ...]:
        """The words of the text, from the tokenizer's word ids (special tokens excluded).

        Spans are trimmed of whitespace (SentencePiece's '▁' tokens cover the space before
        a word), and a group of tokens that covers only whitespace (a lone '▁' or 'Ġ' for a
        double space) joins the next word, so every non-special token is in one word.
        """
        groups: dict[int, list[int]] = {}
        for index, word in enumerate(self.word_ids):
            if word is not None and not self.special[index]:
                groups.setdefault(word, []).append(index)
        words: list[list[int]] = []
        blank: list[int] = []
        for _, indices in sorted(groups.items()):
            if self._span(indices).text:
                words.append(blank + indices)
                blank = []
            else:
                blank += indices
        if blank and words:
            words[-1] += blank
        elif blank:
            words.append(blank)
        return tuple(self._span(indices) for indices in words)

    @property
    def word_scores(self) -> tuple[float, ...]:
        """Scores summed over each word's tokens."""
        return self.aggregate_spans(self.words)

    @property
    def field_scores(self) -> tuple[float, ...]:
        """Scores summed over each record field's tokens (see :meth:`aggregate`)."""
        return self.aggregate_spans(self._require_fields())

    def _require_fields(self) -> tuple[Field, ...]:
        if self.fields is None:
            raise InvalidParameterError(
                "This explanation has no fields: it was made from plain text. Explain a "
                "record (textlens.records.explain_records) to get field scores, or use "
                "level='word'."
            )
        return self.fields

    def aggregate_spans(self, spans: Sequence[Span]) -> tuple[float, ...]:
        """Sum token scores over each span (attributions are additive)."""
        return tuple(math.fsum(self.scores[i] for i in span.tokens) for span in spans)

    def aggregate(self, level: str = "word") -> tuple[tuple[str, ...], tuple[float, ...]]:
        """Return ``(units, scores)`` at ``level`` ('token', 'word' or 'field').

        At token level the special tokens are kept; at word level they are dropped and
        sub-word scores are summed; at field level (records only) the units are the field
        names and each score is the sum over the field's tokens.
        """
        if level == "token":
            return self.tokens, self.scores
        if level == "word":
            words = self.words
            return tuple(w.text for w in words), self.aggregate_spans(words)
        if level == "field":
            fields = self._require_fields()
            return tuple(f.name for f in fields), self.aggregate_spans(fields)
        raise InvalidParameterError(
            f"The 'level' parameter must be one of {', '.join(map(repr, LEVELS))}. Got {level!r}."
        )

    def top(self, k: int = 5, level: str = "word") -> list[tuple[str, float]]:
        """The ``k`` units with the largest absolute score, largest first."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InvalidParameterError(f"top() takes a number of units k >= 0; got {k!r}.")
        units, scores = self.aggregate(level)
        order = sorted(range(len(scores)), key=lambda i: -abs(scores[i]))
        return [(units[i], scores[i]) for i in order[:k]]

    def _span(self, indices: Sequence[int]) -> Span:
        start = min(self.offsets[i][0] for i in indices)
        end = max(self.offsets[i][1] for i in indices)
        while start < end and self.text[start].isspace():
            start += 1
        while end > start and self.text[end - 1].isspace():
            end -= 1
        return Span(self.text[start:end], start, end, tuple(indices))

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` restores an equal object."""
        words = self.words
        return {
            "schema": SCHEMA_VERSION,
            "text": self.text,
            "method": self.method,
            "params": dict(self.params),
            "model_id": self.model_id,
            "target": self.target,
            "target_label": self.target_label,
            "labels": list(self.labels),
            "probabilities": list(self.probabilities),
            "prediction": {
                "label": self.predicted_label,
                "index": self.predicted,
                "probabilities": dict(zip(self.labels, self.probabilities, strict=True)),
            },
            "tokens": list(self.tokens),
            "offsets": [list(o) for o in self.offsets],
            "special": list(self.special),
            "word_ids": list(self.word_ids),
            "scores": list(self.scores),
            "uncertainty": None if self.uncertainty is None else list(self.uncertainty),
            "words": [w.text for w in words],
            "word_spans": [[w.start, w.end] for w in words],
            "word_scores": list(self.aggregate_spans(words)),
            "delta": self.delta,
            "quality": dict(self.quality),
            "truncated_tokens": self.truncated_tokens,
            "fields": None
            if self.fields is None
            else [
                {
                    "name": f.name,
                    "value": f.value,
                    "start": f.start,
                    "end": f.end,
                    "tokens": list(f.tokens),
                    "score": score,
                }
                for f, score in zip(self.fields, self.aggregate_spans(self.fields), strict=True)
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Explanation:
        """Rebuild an explanation from :meth:`to_dict` output.

        Raises :class:`~textlens.errors.InvalidInputError` for anything else (a missing
        field, a field of the wrong type, per-token lists of different lengths), saying
        which.
        """
        from .errors import InvalidInputError

        if not isinstance(data, Mapping):
            raise InvalidInputError(
                f"An explanation dict (from Explanation.to_dict()) is a JSON object; got a "
                f"{type(data).__name__}."
            )
        if "explanations" in data and "tokens" not in data:
            raise InvalidInputError(
                "This is a row of `textlens explain --format json` (or of its --output), "
                "which holds one explanation per method: rebuild each of row['explanations']."
            )
        try:
            explanation = cls._from_dict(data)
        except KeyError as exc:
            raise InvalidInputError(
                f"The explanation dict has no {exc.args[0]!r} field; give what "
                "Explanation.to_dict() wrote."
            ) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(
                f"The explanation dict has a field of the wrong kind ({exc}); give what "
                "Explanation.to_dict() wrote."
            ) from None
        n = len(explanation.tokens)
        lengths = {
            "offsets": len(explanation.offsets),
            "special": len(explanation.special),
            "word_ids": len(explanation.word_ids),
            "scores": len(explanation.scores),
        }
        if explanation.uncertainty is not None:
            lengths["uncertainty"] = len(explanation.uncertainty)
        wrong = {k: v for k, v in lengths.items() if v != n}
        if wrong:
            listed = ", ".join(f"{k} {v}" for k, v in wrong.items())
            raise InvalidInputError(
                f"The explanation dict has {n} tokens but {listed}: every per-token list "
                "must have one entry per token."
            )
        if len(explanation.probabilities) != len(explanation.labels) or not (
            0 <= explanation.target < max(1, len(explanation.labels))
        ):
            raise InvalidInputError(
                f"The explanation dict has {len(explanation.labels)} labels, "
                f"{len(explanation.probabilities)} probabilities and target "
                f"{explanation.target}: give one probability per label and a target index "
                "among them."
            )
        return explanation

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> Explanation:
        uncertainty = data.get("uncertainty")
        fields = data.get("fields")
        text = data["text"]
        return cls(
            text=data["text"],
            tokens=tuple(data["tokens"]),
            offsets=tuple((int(a), int(b)) for a, b in data["offsets"]),
            special=tuple(bool(s) for s in data["special"]),
            word_ids=tuple(None if w is None else int(w) for w in data["word_ids"]),
            scores=tuple(float(s) for s in data["scores"]),
            method=data["method"],
            params=dict(data["params"]),
            target=int(data["target"]),
            labels=tuple(data["labels"]),
            probabilities=tuple(float(p) for p in data["probabilities"]),
            model_id=data["model_id"],
            quality=dict(data.get("quality", {})),
            truncated_tokens=int(data.get("truncated_tokens", 0)),
            uncertainty=None if uncertainty is None else tuple(float(u) for u in uncertainty),
            fields=None
            if fields is None
            else tuple(
                Field(
                    text[int(f["start"]) : int(f["end"])],
                    int(f["start"]),
                    int(f["end"]),
                    tuple(int(t) for t in f["tokens"]),
                    name=f["name"],
                    value=f["value"],
                )
                for f in fields
            ),
        )

    def to_html(self) -> str:
        """A self-contained HTML page showing this explanation (see :mod:`textlens.report`)."""
        from .report import render_html

        return render_html([self])
