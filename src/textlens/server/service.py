"""What the server does without HTTP: check a request, batch it, shape the answer.

One :class:`Service` per app holds the model, its record template, the enabled methods
with their server-side parameters, the limits, the metrics and the micro-batcher. Every
check that can fail on user input happens here, before a job is queued, so a bad
request never reaches a model call shared with others.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import warnings
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import (
    InvalidInputError,
    InvalidParameterError,
    TruncationWarning,
    UnknownMethodError,
)
from ..explainers import REGISTRY, Explainer, make_explainer
from ..explanation import Explanation
from ..model import ModelAdapter, cancellable
from ..pairs import pair_text, split_pair
from ..reasons import MAX_REASONS, key_reasons
from ..records import RecordTemplate, RenderedRecord, render_records, with_fields
from .batcher import BatchMetrics, MicroBatcher, OverloadedError
from .metrics import LATENCY_BUCKETS, Counter, Gauge, Histogram, Registry

__all__ = ["ApiError", "ExplainKey", "Limits", "Service", "check_methods_config", "json_safe"]

#: Parameters that set how much work a method does; requests may not raise them past this.
WORK_PARAMETERS = ("n_steps", "max_steps", "n_samples", "budget")
MAX_WORK_PARAMETER = 256
#: Parameters a request may never set: they belong to the server (memory per pass, the
#: server's files and its log).
SERVER_ONLY_PARAMETERS = ("max_batch_tokens", "cache_dir", "use_cache", "progress")
_PREDICT = ("predict",)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ApiError(Exception):
    """An error answered with ``status`` and ``{"error": {"code", "message"}}``."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class ExplainKey:
    """What an explain job computes; jobs with equal keys share model calls."""

    method: str
    params: tuple[tuple[str, Any], ...]
    target: int | None


@dataclass(frozen=True)
class Limits:
    """Per-request limits (also shown by ``GET /v1/model``)."""

    max_texts: int
    max_chars: int
    time_budget_s: float
    max_body_bytes: int
    max_batch: int
    max_wait_ms: float
    max_pending: int
    batching: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Inputs:
    texts: list[str]
    records: list[dict[str, Any]] | None
    rendered: list[RenderedRecord] | None


class Service:
    """The model behind the HTTP API (see the module docstring)."""

    def __init__(
        self,
        model: ModelAdapter,
        *,
        methods: Mapping[str, Mapping[str, Any]],
        template: RecordTemplate,
        limits: Limits,
    ) -> None:
        self.model = model
        self.methods = {name: dict(params) for name, params in methods.items()}
        self.default_method = (
            "grad_x_input" if "grad_x_input" in self.methods else next(iter(self.methods))
        )
        self.template = template
        self.limits = limits
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="textlens-model")
        self.registry = Registry()
        self._init_metrics()
        self.batcher = MicroBatcher(
            self._run,
            self.executor,
            max_batch=limits.max_batch,
            max_wait_s=limits.max_wait_ms / 1000,
            max_pending=limits.max_pending,
            enabled=limits.batching,
            kind_of=_kind,
            metrics=self.batch_metrics,
        )

    def _init_metrics(self) -> None:
        r = self.registry
        self.requests = r.add(
            Counter("textlens_requests_total", "HTTP requests answered.", ("endpoint", "status"))
        )
        self.errors = r.add(
            Counter(
                "textlens_errors_total",
                "Requests answered with an error, by error code.",
                ("endpoint", "code"),
            )
        )
        self.latency = r.add(
            Histogram(
                "textlens_request_duration_seconds",
                "Time to answer a request.",
                LATENCY_BUCKETS,
                ("endpoint",),
            )
        )
        self.texts = r.add(
            Counter("textlens_texts_total", "Texts predicted or explained, by method.", ("method",))
        )
        self.batch_metrics = BatchMetrics(
            calls=r.add(
                Counter(
                    "textlens_model_calls_total",
                    "Model calls (one per micro-batch), by method.",
                    ("method",),
                )
            ),
            batch_texts=r.add(
                Histogram(
                    "textlens_batch_texts", "Texts per model call.", _BATCH_BUCKETS, ("method",)
                )
            ),
            batch_jobs=r.add(
                Histogram(
                    "textlens_batch_requests",
                    "Requests sharing one model call.",
                    _BATCH_BUCKETS,
                    ("method",),
                )
            ),
            call_seconds=r.add(
                Histogram(
                    "textlens_model_call_seconds",
                    "Duration of one model call.",
                    LATENCY_BUCKETS,
                    ("method",),
                )
            ),
            queue_seconds=r.add(
                Histogram(
                    "textlens_queue_seconds",
                    "Time a request waited for its model call.",
                    LATENCY_BUCKETS,
                    ("method",),
                )
            ),
            stopped=r.add(
                Counter(
                    "textlens_model_calls_stopped_total",
                    "Model calls stopped before the end because every request waiting for "
                    "them gave up (time budget, client gone), by method.",
                    ("method",),
                )
            ),
        )
        r.add(
            Gauge(
                "textlens_queue_texts",
                "Texts waiting for a model call.",
                lambda: self.batcher.pending_texts,
            )
        )

    # ------------------------------------------------------------------ model thread
    def _run(self, key: Hashable, texts: list[str], stop: threading.Event) -> Sequence[Any]:
        """One model call over ``texts`` (runs in the model thread).

        Once ``stop`` is set (every request waiting for it gave up), the work raises
        :class:`~textlens.errors.Cancelled` at its next model pass.
        """
        with warnings.catch_warnings(), cancellable(stop.is_set):
            warnings.simplefilter(
                "ignore", TruncationWarning
            )  # reported per text as truncated_tokens
            encoding = self.model.encode(texts)
            if key == _PREDICT:
                return list(self.model.predict_proba(encoding))
            assert isinstance(key, ExplainKey)
            explainer = make_explainer(key.method, self.model, **dict(key.params))
            return explainer.explain_encoding(encoding, key.target)

    async def _submit_all(
        self, jobs: Sequence[tuple[Hashable, list[str]]], started: float
    ) -> list[list[Any]]:
        """Run every ``(key, texts)`` job within the time budget; results in job order."""
        tasks = [asyncio.ensure_future(self.batcher.submit(key, texts)) for key, texts in jobs]
        remaining = self.limits.time_budget_s - (time.perf_counter() - started)
        try:
            _, pending = await asyncio.wait(tasks, timeout=max(remaining, 0.0))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        if pending:
            for task in tasks:
                task.cancel()
            raise ApiError(
                503,
                "time_budget_exceeded",
                f"The request did not finish within the server's time budget of "
                f"{self.limits.time_budget_s:g} s; send fewer texts or methods, or retry when the "
                "server is less busy.",
                {"Retry-After": "1"},
            )
        for task in tasks:
            error = task.exception()
            if error is not None:
                for other in tasks:
                    other.cancel()
                if isinstance(error, OverloadedError):
                    raise ApiError(503, "overloaded", str(error), {"Retry-After": "1"})
                raise error
        return [task.result() for task in tasks]

    # ------------------------------------------------------------------ checking requests
    def check_inputs(
        self, texts: Sequence[str | Sequence[str]] | None, records: list[dict[str, Any]] | None
    ) -> Inputs:
        """Texts (or pairs of texts) or records, within limits; records rendered with the
        model's template and pairs joined into their one-string form."""
        if (texts is None) == (records is None):
            raise ApiError(
                422,
                "invalid_request",
                "Give either 'texts' (a list of strings) or 'records' (a list of JSON "
                "objects), not both or neither.",
            )
        items: Sequence[Any] = texts if texts is not None else records  # type: ignore[assignment]
        if not items:
            raise ApiError(422, "no_texts", "The list is empty; give at least one text or record.")
        if len(items) > self.limits.max_texts:
            raise ApiError(
                422,
                "too_many_texts",
                f"{len(items)} texts were sent; this server takes at most "
                f"{self.limits.max_texts} per request. Split them over several requests.",
            )
        rendered = None
        if records is not None:
            try:
                rendered = render_records(records, self.template)
            except InvalidInputError as exc:
                raise ApiError(422, "invalid_record", str(exc)) from None
            texts = [r.text for r in rendered]
        assert texts is not None
        joined = []
        for i, item in enumerate(texts):
            if isinstance(item, str):
                text = item
                self._check_text(i, text, "Record" if records is not None else "Text")
            else:  # the limit is on what the client sent: both texts, not the joiner
                text = self._join_pair(i, item)
                self._check_text(i, text, "Pair", chars=sum(len(part) for part in item))
            joined.append(text)
        return Inputs(joined, records, rendered)

    @staticmethod
    def _join_pair(i: int, pair: Sequence[str]) -> str:
        for name, part in zip(("first", "second"), pair, strict=True):
            if not part.strip():
                raise ApiError(
                    422,
                    "empty_text",
                    f"The {name} text of pair {i} is empty or only whitespace; give both texts.",
                )
        try:
            return pair_text(*pair, index=i)
        except InvalidInputError as exc:
            raise ApiError(422, "invalid_text", str(exc)) from None

    def _check_text(self, i: int, text: str, what: str, chars: int | None = None) -> None:
        if not text.strip():
            raise ApiError(
                422,
                "empty_text",
                f"{what} {i} is empty or only whitespace; there is nothing to explain.",
            )
        chars = len(text) if chars is None else chars
        if chars > self.limits.max_chars:
            both = " (its two texts together)" if what == "Pair" else ""
            raise ApiError(
                422,
                "text_too_long",
                f"{what} {i} has {chars} characters{both}; this server takes at most "
                f"{self.limits.max_chars}. Shorten or split it.",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(
                422,
                "invalid_text",
                f"{what} {i} holds an unpaired surrogate (\\ud800-\\udfff); send valid Unicode.",
            ) from None
        try:
            split_pair(text, index=i)
        except InvalidInputError as exc:
            raise ApiError(422, "invalid_text", str(exc)) from None

    def check_methods(self, names: list[str] | None) -> list[str]:
        if names is None:
            return [self.default_method]
        if not names:
            raise ApiError(
                422,
                "invalid_request",
                "'methods' is empty; name at least one method or leave it out.",
            )
        for name in names:
            if name not in self.methods:
                raise UnknownMethodError(
                    f"Unknown method {name!r}. This server offers: "
                    f"{', '.join(self.methods)} (GET /v1/methods)."
                )
        return list(dict.fromkeys(names))

    def check_params(
        self, methods: list[str], params: dict[str, dict[str, Any]] | None
    ) -> dict[str, dict[str, Any]]:
        """Server defaults overridden by the request's parameters, checked as the explainers do."""
        params = params or {}
        stray = sorted(set(params) - set(methods))
        if stray:
            raise ApiError(
                422,
                "invalid_parameter",
                f"'params' names method(s) {', '.join(map(repr, stray))} that the request "
                "does not use; add them to 'methods'.",
            )
        merged = {}
        for method in methods:
            asked = params.get(method, {})
            cls = REGISTRY[method]
            known = set(cls._all_constraints()) - set(SERVER_ONLY_PARAMETERS)
            unknown = sorted(set(asked) - known)
            if unknown:
                raise InvalidParameterError(
                    f"{method} has no request parameter {', '.join(map(repr, unknown))}; "
                    f"it takes: {', '.join(sorted(known)) or 'none'}."
                )
            for name, value in asked.items():
                if value is not None and not isinstance(value, (str, int, float, bool)):
                    raise InvalidParameterError(
                        f"The {name!r} parameter of {method} must be a number, string, "
                        f"boolean or null. Got {type(value).__name__}."
                    )
                if (
                    name in WORK_PARAMETERS
                    and isinstance(value, (int, float))
                    and value > MAX_WORK_PARAMETER
                ):
                    raise InvalidParameterError(
                        f"The {name!r} parameter of {method} is capped at "
                        f"{MAX_WORK_PARAMETER} on this server. Got {value!r}."
                    )
            cls.check_parameters(**asked)
            merged[method] = {**self.methods[method], **asked}
        return merged

    def check_target(
        self, target: int | str | Sequence[int | str | None] | None, n_texts: int
    ) -> list[int | None]:
        """One class index (or None: the predicted class) per text.

        ``target`` is one label name or index for every text, or a list with one per text.
        """
        return self.model.resolve_targets(target, n_texts)

    # ------------------------------------------------------------------ the two verbs
    async def predict(self, inputs: Inputs, started: float) -> dict[str, Any]:
        [probabilities] = await self._submit_all([(_PREDICT, inputs.texts)], started)
        self.texts.inc("predict", amount=len(inputs.texts))
        results = []
        for i, p in enumerate(probabilities):
            result = _result_head(inputs, i)
            result["prediction"] = {
                "label": self.model.labels[int(p.argmax())],
                "probabilities": {
                    label: float(v) for label, v in zip(self.model.labels, p, strict=True)
                },
            }
            results.append(result)
        return {"results": results, "elapsed_ms": 1000 * (time.perf_counter() - started)}

    async def explain(
        self,
        inputs: Inputs,
        methods: list[str],
        params: dict[str, dict[str, Any]],
        targets: list[int | None],
        level: str | None,
        top_k: int,
        started: float,
    ) -> dict[str, Any]:
        if level is None:
            level = "field" if inputs.rendered is not None else "word"
        if level == "field" and inputs.rendered is None:
            raise ApiError(
                422,
                "invalid_level",
                "level 'field' needs 'records'; for 'texts' use 'word' or 'token'.",
            )
        if not 1 <= top_k <= MAX_REASONS:
            raise ApiError(
                422, "invalid_request", f"'top_k' must be in [1, {MAX_REASONS}]. Got {top_k}."
            )
        # Texts with the same target share a job (and, across requests, model calls).
        by_target: dict[int | None, list[int]] = {}
        for i, t in enumerate(targets):
            by_target.setdefault(t, []).append(i)
        jobs, places = [], []
        for m, method in enumerate(methods):
            settings = tuple(sorted(params[method].items()))
            for t, rows in by_target.items():
                jobs.append((ExplainKey(method, settings, t), [inputs.texts[i] for i in rows]))
                places.append((m, rows))
        done = await self._submit_all(jobs, started)
        per_method: list[list[Explanation | None]] = [[None] * len(targets) for _ in methods]
        for (m, rows), group in zip(places, done, strict=True):
            for i, e in zip(rows, group, strict=True):
                per_method[m][i] = e
        for method in methods:
            self.texts.inc(method, amount=len(inputs.texts))
        results = []
        for i in range(len(inputs.texts)):
            explanations = [e for e in (group[i] for group in per_method) if e is not None]
            if inputs.rendered is not None:
                explanations = [with_fields(e, inputs.rendered[i]) for e in explanations]
            first = explanations[0]
            result = _result_head(inputs, i)
            result["prediction"] = {
                "label": first.predicted_label,
                "probabilities": dict(zip(first.labels, first.probabilities, strict=True)),
            }
            result["explanations"] = [e.to_dict() for e in explanations]
            result["reasons"] = [
                key_reasons(e, k=top_k, level=level).to_dict() for e in explanations
            ]
            results.append(result)
        return {"results": results, "elapsed_ms": 1000 * (time.perf_counter() - started)}

    # ------------------------------------------------------------------ descriptions
    def describe_methods(self) -> dict[str, Any]:
        return {
            "methods": [
                {
                    "name": name,
                    "description": REGISTRY[name].description,
                    "reference": REGISTRY[name].reference,
                    "parameters": _defaults(REGISTRY[name], params),
                    "default": name == self.default_method,
                }
                for name, params in self.methods.items()
            ]
        }

    def describe_model(self) -> dict[str, Any]:
        return {
            "model_id": self.model.model_id,
            "labels": list(self.model.labels),
            "max_length": int(self.model.max_length),
            "template": self.template.to_dict(),
            "limits": self.limits.to_dict(),
        }

    async def close(self) -> None:
        await self.batcher.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def _result_head(inputs: Inputs, i: int) -> dict[str, Any]:
    """A result's ``text`` with its ``pair`` or ``record``."""
    text = inputs.texts[i]
    result: dict[str, Any] = {"text": text}
    pair = split_pair(text, index=i) if inputs.records is None else None
    if pair is not None:
        result["pair"] = list(pair)
    if inputs.records is not None:
        result["record"] = inputs.records[i]
    return result


def _kind(key: Hashable) -> str:
    return key.method if isinstance(key, ExplainKey) else "predict"


def _defaults(cls: type[Explainer], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The method's effective parameters on this server (its signature defaults + overrides)."""
    import inspect

    values = {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in SERVER_ONLY_PARAMETERS
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is None or isinstance(v, (str, int, float, bool))}


def check_methods_config(
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict[str, Any]]:
    """The server's ``methods`` argument as ``{name: params}``, validated."""
    if methods is None:
        return {name: {} for name in REGISTRY}
    if isinstance(methods, str):
        raise InvalidParameterError(
            "'methods' must be a list of method names, not a single string; wrap it in a list."
        )
    config = (
        {name: {} for name in methods}
        if not isinstance(methods, Mapping)
        else {k: dict(v) for k, v in methods.items()}
    )
    if not config:
        raise InvalidParameterError("'methods' is empty; enable at least one method.")
    for name, params in config.items():
        cls = REGISTRY.get(name)
        if cls is None:
            raise UnknownMethodError(
                f"Unknown method {name!r}. Choose from: {', '.join(sorted(REGISTRY))}."
            )
        unknown = sorted(set(params) - set(cls._all_constraints()))
        if unknown:
            raise InvalidParameterError(
                f"{cls.__name__} has no parameter {', '.join(map(repr, unknown))}."
            )
        cls.check_parameters(**params)
    return config


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
