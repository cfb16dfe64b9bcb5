"""Request and response models of the HTTP API (they make the OpenAPI schema).

Requests are validated strictly (no type coercion, unknown keys refused). Responses
are built by the app and sent as they are; the test suite validates real responses
against the published schema, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorResponse",
    "ExplainRequest",
    "ExplainResponse",
    "HealthResponse",
    "MethodsResponse",
    "ModelResponse",
    "PredictRequest",
    "PredictResponse",
]

Level = Literal["token", "word", "field"]
#: The two texts of a pair (premise and hypothesis, question and passage).
Pair = Annotated[list[str], Field(min_length=2, max_length=2)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------------------- requests
class PredictRequest(_Request):
    """Texts, or records (JSON objects rendered with the model's template): one of the two."""

    texts: list[str | Pair] | None = Field(
        None,
        description="Texts to classify. For a pair classifier (NLI, question and passage, "
        'a cross-encoder) an item may be a pair: ["first text", "second text"].',
    )
    records: list[dict[str, Any]] | None = Field(
        None, description="Records (JSON objects) to classify; rendered with the model's template."
    )


class ExplainRequest(PredictRequest):
    """What to explain and how."""

    methods: list[str] | None = Field(
        None, description="Method names (GET /v1/methods); default: the server's default method."
    )
    target: int | str | list[int | str | None] | None = Field(
        None,
        description="Label name or index to explain, or a list with one per text (null: that "
        "text's predicted label); default: each text's predicted label.",
    )
    level: Level | None = Field(
        None,
        description="Unit of the key reasons: 'field' (default for records), 'word' "
        "(default for texts) or 'token'.",
    )
    top_k: int = Field(5, ge=1, le=5, description="How many key reasons at most (1-5).")
    params: dict[str, dict[str, Any]] | None = Field(
        None,
        description='Per-method parameters, e.g. {"integrated_gradients": {"n_steps": 16}}; '
        "work parameters (n_steps, max_steps, n_samples, budget) are capped by the server.",
    )


# ---------------------------------------------------------------------------- responses
class Prediction(_Response):
    label: str
    probabilities: dict[str, float]


class PredictResult(_Response):
    text: str = Field(
        description="The text the model saw (a record's rendering for records; for a pair, "
        "the two texts joined by ' \u241e ')."
    )
    pair: list[str] | None = Field(None, description="The two texts, when the item was a pair.")
    record: dict[str, Any] | None = None
    prediction: Prediction


class PredictResponse(_Response):
    results: list[PredictResult]
    elapsed_ms: float


class ExplanationPrediction(_Response):
    label: str
    index: int
    probabilities: dict[str, float]


class FieldScore(_Response):
    name: str
    value: str
    start: int
    end: int
    tokens: list[int]
    score: float | None


class ExplanationOut(_Response):
    """``Explanation.to_dict()``: the same JSON as ``textlens explain --format json``."""

    schema_version: int = Field(alias="schema")
    text: str
    method: str
    params: dict[str, Any]
    model_id: str
    target: int
    target_label: str
    labels: list[str]
    probabilities: list[float]
    prediction: ExplanationPrediction
    tokens: list[str]
    offsets: list[list[int]]
    special: list[bool]
    word_ids: list[int | None]
    scores: list[float | None]
    uncertainty: list[float | None] | None
    words: list[str]
    word_spans: list[list[int]]
    word_scores: list[float | None]
    delta: float | None
    quality: dict[str, Any]
    truncated_tokens: int
    fields: list[FieldScore] | None


class ReasonOut(_Response):
    name: str
    value: str | None
    score: float
    share: float
    start: int
    end: int


class ReasonsOut(_Response):
    method: str
    label: str
    probability: float
    predicted_label: str
    level: Level
    signed: bool
    supporting: list[ReasonOut]
    opposing: list[ReasonOut]
    summary: str


class ExplainResult(PredictResult):
    explanations: list[ExplanationOut]
    reasons: list[ReasonsOut] = Field(description="Key reasons, one per explanation (same order).")


class ExplainResponse(_Response):
    results: list[ExplainResult]
    elapsed_ms: float


class MethodInfo(_Response):
    name: str
    description: str
    reference: str
    parameters: dict[str, Any] = Field(
        description="Server-side defaults of the method's parameters."
    )
    default: bool = Field(description="Used when a request names no method.")


class MethodsResponse(_Response):
    methods: list[MethodInfo]


class ModelResponse(_Response):
    model_id: str
    labels: list[str]
    max_length: int
    template: dict[str, Any]
    limits: dict[str, Any]


class HealthResponse(_Response):
    status: Literal["ok"]


class ErrorBody(_Response):
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="What was wrong and how to fix it.")
    details: list[dict[str, Any]] | None = None


class ErrorResponse(_Response):
    error: ErrorBody
