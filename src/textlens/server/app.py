"""The FastAPI app: routes, error answers, the request guard and the web page.

Everything an app needs lives in the :class:`~textlens.server.service.Service` that
:func:`create_app` builds; nothing is kept at module level, so several apps (with
different models or settings) can live in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from importlib import resources
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import (
    ExplanationError,
    InvalidInputError,
    InvalidParameterError,
    InvalidTargetError,
    TextlensError,
    UnknownMethodError,
)
from ..explainers import REGISTRY
from ..model import ModelAdapter
from ..records import RecordTemplate, template_for_model
from .schemas import (
    ErrorResponse,
    ExplainRequest,
    ExplainResponse,
    HealthResponse,
    MethodsResponse,
    ModelResponse,
    PredictRequest,
    PredictResponse,
)
from .service import ApiError, Limits, Service, check_methods_config, json_safe

__all__ = ["API_KEY_HEADER", "create_app"]

API_KEY_HEADER = "X-API-Key"
_KNOWN_PATHS = frozenset(
    [
        "/",
        "/v1/predict",
        "/v1/explain",
        "/v1/methods",
        "/v1/model",
        "/healthz",
        "/metrics",
        "/openapi.json",
    ]
)
_STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "The body is not JSON, or not UTF-8 (code invalid_json).",
    },
    401: {"model": ErrorResponse, "description": "Missing or wrong API key (code unauthorized)."},
    413: {
        "model": ErrorResponse,
        "description": "The body is larger than the server accepts (code body_too_large).",
    },
    422: {
        "model": ErrorResponse,
        "description": "A well-formed request the server cannot do: invalid_request (wrong "
        "types, unknown keys), no_texts, too_many_texts, empty_text, text_too_long, "
        "invalid_text, invalid_record, unknown_method, unknown_target, invalid_parameter, "
        "invalid_level.",
    },
    503: {
        "model": ErrorResponse,
        "description": "time_budget_exceeded or overloaded: retry later (Retry-After header).",
    },
}
_GET_ERRORS: dict[int | str, dict[str, Any]] = {401: _ERROR_RESPONSES[401]}


class JSONResponse(Response):
    """JSON that is always valid: ASCII-escaped (lone surrogates cannot break it), no NaN."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        except ValueError:
            text = json.dumps(
                json_safe(content), ensure_ascii=True, allow_nan=False, separators=(",", ":")
            )
        return text.encode("ascii")


class _BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"The body is larger than {limit} bytes; send fewer or shorter texts."
        )


def create_app(
    model: ModelAdapter,
    *,
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    max_texts: int = 32,
    max_chars: int = 4000,
    time_budget_s: float = 10.0,
    api_key: str | None = None,
    batching: bool = True,
    max_batch: int = 32,
    max_wait_ms: float = 2.0,
    template: RecordTemplate | None = None,
    max_pending: int = 1024,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """Build the HTTP app that predicts and explains with ``model``.

    Parameters
    ----------
    model : ModelAdapter
        The classifier (loaded once, shared by all requests).
    methods : list of str, or dict of {name: params}, optional
        Methods the server offers (default: every registered method), optionally with
        server-side parameters, e.g. ``{"integrated_gradients": {"n_steps": 16}}``.
        Requests name methods from these; without a name they get ``grad_x_input`` (if
        offered) or the first one.
    max_texts : int
        Most texts (or records) per request.
    max_chars : int
        Most characters per text (for records: per rendered record).
    time_budget_s : float
        A request not answered within this many seconds gets 503 ``time_budget_exceeded``;
        its queued work is dropped, and a model call already running for it stops at its
        next model pass unless another request still waits for it (so does the work of a
        request whose client disconnects).
    api_key : str, optional
        If set, every ``/v1/*`` and ``/metrics`` request must send it in the
        ``X-API-Key`` header (``/``, ``/healthz`` stay open; the web page asks for it).
    batching : bool
        Micro-batch concurrent requests (True), or run each request alone.
    max_batch : int
        Most texts in one model call.
    max_wait_ms : float
        Longest time a queued request waits for others to join its batch.
    template : RecordTemplate, optional
        How records are rendered; default: the model folder's ``textlens.json``, else
        ``key: value`` lines.
    max_pending : int
        Most texts waiting for the model; more gets 503 ``overloaded``.
    max_body_bytes : int, optional
        Largest request body; default ``6 * max_texts * max_chars + 64 KiB``.

    Returns
    -------
    fastapi.FastAPI
        Serve it with uvicorn (see :func:`textlens.server.serve`).
    """
    limits = _check_limits(
        max_texts,
        max_chars,
        time_budget_s,
        batching,
        max_batch,
        max_wait_ms,
        max_pending,
        max_body_bytes,
    )
    if api_key is not None and (not isinstance(api_key, str) or len(api_key) < 8):
        raise InvalidParameterError("The API key must be a string of at least 8 characters.")
    if api_key is not None and not (api_key.isascii() and api_key.isprintable()):
        raise InvalidParameterError(
            "The API key must be printable ASCII: HTTP headers carry Latin-1, and clients "
            "send other characters in ways that would never match."
        )
    offered = check_methods_config(methods)
    unusable = {
        name: reason
        for name in offered
        if (reason := REGISTRY[name].unsupported_reason(model)) is not None
    }
    if unusable and methods is not None:
        raise InvalidParameterError(next(iter(unusable.values())))
    offered = {name: params for name, params in offered.items() if name not in unusable}
    service = Service(
        model,
        methods=offered,
        template=template or template_for_model(model),
        limits=limits,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await service.close()

    app = FastAPI(
        title="textlens",
        version=__version__,
        summary="Predictions of a text classifier, each with the reasons for it.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    _add_error_handlers(app, service)
    app.add_middleware(_Guard, service=service)  # type: ignore[arg-type]
    secured = [Depends(_api_key_check(api_key))] if api_key else []
    _add_api_routes(app, service, secured)
    _add_page_routes(app)
    return app


def _check_limits(
    max_texts: int,
    max_chars: int,
    time_budget_s: float,
    batching: bool,
    max_batch: int,
    max_wait_ms: float,
    max_pending: int,
    max_body_bytes: int | None,
) -> Limits:
    for name, value in (
        ("max_texts", max_texts),
        ("max_chars", max_chars),
        ("max_batch", max_batch),
        ("max_pending", max_pending),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidParameterError(
                f"The {name!r} parameter of create_app must be an int >= 1. Got {value!r}."
            )
    for name, number in (("time_budget_s", time_budget_s), ("max_wait_ms", max_wait_ms)):
        if (
            isinstance(number, bool)
            or not isinstance(number, (int, float))
            or number < 0
            or (name == "time_budget_s" and number == 0)
        ):
            raise InvalidParameterError(
                f"The {name!r} parameter of create_app must be a number > 0. Got {number!r}."
            )
    body = max_body_bytes if max_body_bytes is not None else 6 * max_texts * max_chars + 65536
    if isinstance(body, bool) or not isinstance(body, int) or body < 1024:
        raise InvalidParameterError(
            f"The 'max_body_bytes' parameter of create_app must be an int >= 1024. Got {body!r}."
        )
    return Limits(
        max_texts=max_texts,
        max_chars=max_chars,
        time_budget_s=float(time_budget_s),
        max_body_bytes=body,
        max_batch=max_batch,
        max_wait_ms=float(max_wait_ms),
        max_pending=max_pending,
        batching=bool(batching),
    )


# ---------------------------------------------------------------------------- routes
def _add_api_routes(app: FastAPI, service: Service, secured: list[Any]) -> None:
    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        responses=_ERROR_RESPONSES,
        dependencies=secured,
        summary="Classify texts or records",
        tags=["model"],
    )
    async def predict(body: PredictRequest) -> Response:
        started = time.perf_counter()
        inputs = service.check_inputs(body.texts, body.records)
        return JSONResponse(await service.predict(inputs, started))

    @app.post(
        "/v1/explain",
        response_model=ExplainResponse,
        responses=_ERROR_RESPONSES,
        dependencies=secured,
        summary="Classify and explain texts or records, with key reasons",
        tags=["model"],
    )
    async def explain(body: ExplainRequest) -> Response:
        started = time.perf_counter()
        inputs = service.check_inputs(body.texts, body.records)
        methods = service.check_methods(body.methods)
        params = service.check_params(methods, body.params)
        targets = service.check_target(body.target, len(inputs.texts))
        result = await service.explain(
            inputs, methods, params, targets, body.level, body.top_k, started
        )
        return JSONResponse(result)

    @app.get(
        "/v1/methods",
        response_model=MethodsResponse,
        responses=_GET_ERRORS,
        dependencies=secured,
        summary="The explanation methods this server offers",
        tags=["info"],
    )
    async def methods() -> Response:
        return JSONResponse(service.describe_methods())

    @app.get(
        "/v1/model",
        response_model=ModelResponse,
        responses=_GET_ERRORS,
        dependencies=secured,
        summary="Labels, maximum length, record template and limits",
        tags=["info"],
    )
    async def model_info() -> Response:
        return JSONResponse(service.describe_model())

    @app.get("/healthz", response_model=HealthResponse, summary="Liveness", tags=["info"])
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.head("/healthz", include_in_schema=False)  # uptime checks often send HEAD
    async def healthz_head() -> Response:
        return Response(status_code=200)

    @app.get(
        "/metrics",
        responses={
            200: {
                "content": {_METRICS_TYPE: {"schema": {"type": "string"}}},
                "description": "Prometheus text format",
            },
            **_GET_ERRORS,
        },
        response_class=Response,
        dependencies=secured,
        summary="Prometheus metrics",
        tags=["info"],
    )
    async def metrics() -> Response:
        return Response(service.registry.render(), media_type=_METRICS_TYPE)


def _add_page_routes(app: FastAPI) -> None:
    static = resources.files("textlens.server") / "static"
    page = (static / "index.html").read_bytes()
    assets = {name: (static / name).read_bytes() for name in _STATIC}

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in assets:
            raise ApiError(404, "not_found", f"No static file {name!r}.")
        return Response(assets[name], media_type=_STATIC[name], headers=_PAGE_HEADERS)


def _api_key_check(expected: str) -> Any:
    header = APIKeyHeader(
        name=API_KEY_HEADER,
        auto_error=False,
        description="Required when the server was started with an API key.",
    )
    expected_bytes = expected.encode("utf-8")

    async def check(key: str | None = Depends(header)) -> None:
        if key is None or not hmac.compare_digest(
            key.encode("utf-8", "surrogateescape"), expected_bytes
        ):
            raise ApiError(
                401,
                "unauthorized",
                f"Send the server's API key in the {API_KEY_HEADER} header.",
                {"WWW-Authenticate": API_KEY_HEADER},
            )

    return check


# ---------------------------------------------------------------------------- errors
_TEXTLENS_ERRORS: tuple[tuple[type[TextlensError], int, str], ...] = (
    (UnknownMethodError, 422, "unknown_method"),
    (InvalidTargetError, 422, "unknown_target"),
    (InvalidParameterError, 422, "invalid_parameter"),
    (InvalidInputError, 422, "invalid_input"),
    (ExplanationError, 500, "model_error"),
    (TextlensError, 500, "internal_error"),
)
_HTTP_CODES = {
    400: "invalid_json",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


def _error(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = JSONResponse({"error": body}, status_code=status, headers=dict(headers or {}))
    response.headers["x-textlens-error"] = code
    return response


def _add_error_handlers(app: FastAPI, service: Service) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(TextlensError)
    async def textlens_error(request: Request, exc: TextlensError) -> Response:
        for kind, status, code in _TEXTLENS_ERRORS:
            if isinstance(exc, kind):
                return _error(status, code, str(exc))
        return _error(500, "internal_error", str(exc))  # pragma: no cover (TextlensError is last)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(
                400,
                "invalid_json",
                'The body is not valid JSON; send a JSON object such as {"texts": ["..."]}.',
            )
        details = [
            {
                "loc": [str(part)[:100] for part in e.get("loc", ())],
                "msg": str(e.get("msg", ""))[:300],
                "type": str(e.get("type", "")),
            }
            for e in errors[:20]
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid"}
        where = ".".join(first["loc"]) or "body"
        message = (
            _text_item_message(errors) or _target_message(errors) or f"{where}: {first['msg']}"
        )
        content_type = request.headers.get("content-type", "")
        if first["loc"] == ["body"] and "json" not in content_type.lower():
            message += (
                f" (the request's Content-Type is {content_type or 'missing'}: send the JSON "
                "object with Content-Type: application/json)"
            )
        return _error(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 400:
            message = (
                "The body could not be read as JSON: send one JSON object, UTF-8 encoded, "
                "with numbers of ordinary size and at most a few levels of nesting."
            )
        elif exc.status_code == 404:
            message = f"No such path {request.url.path!r}; see /openapi.json."
        return _error(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        return _error(
            500, "internal_error", "The server failed on this request; the error is in its log."
        )


def _json_kind(value: Any) -> str:
    """``value``'s kind as JSON names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return f"a {type(value).__name__}"


def _text_item_message(errors: Sequence[Mapping[str, Any]]) -> str | None:
    """One message for a ``texts`` item that is neither a text nor a pair.

    pydantic reports a union member by member ("should be a valid string", then what is
    wrong with it as a list), which reads as if only strings were allowed.
    """
    if not errors:
        return None
    loc = tuple(errors[0].get("loc", ()))
    if len(loc) != 4 or loc[:2] != ("body", "texts") or loc[3] != "str":
        return None
    where = f"body.texts.{loc[2]}"
    value = errors[0].get("input")
    if isinstance(value, list) and len(value) == 2:  # a pair with a non-text in it
        for e in errors[1:]:
            inner = tuple(e.get("loc", ()))
            if inner[:3] == loc[:3] and len(inner) == 5:
                return (
                    f"{where}.{inner[4]}: each text of a pair must be a string; got "
                    f"{_json_kind(e.get('input'))}."
                )
    return (
        f"{where}: each item must be a text (a string) or a pair of two texts "
        f'["first text", "second text"]; got {_json_kind(value)}.'
    )


def _target_message(errors: Sequence[Mapping[str, Any]]) -> str | None:
    """One message for a ``target`` that is none of a label, an index or a list of them."""
    if not errors or tuple(errors[0].get("loc", ()))[:3] != ("body", "target", "int"):
        return None
    value = errors[0].get("input")
    if isinstance(value, list):
        for i, item in enumerate(value):
            if item is not None and (isinstance(item, bool) or not isinstance(item, (int, str))):
                return (
                    f"body.target.{i}: each target of the list is a label name, a label "
                    f"index or null (the predicted class); got {_json_kind(item)}."
                )
    shown = f" ({value!r})" if isinstance(value, (int, float)) else ""
    return (
        "body.target: the target is a label name, a label index, or a list with one of "
        f"those (or null) per text; got {_json_kind(value)}{shown}. GET /v1/model lists "
        "the labels."
    )


# ---------------------------------------------------------------------------- guard
#: What /metrics records for a request whose client left before its answer (nginx's
#: "client closed request"; nothing is sent).
CLIENT_GONE_STATUS = 499
CLIENT_GONE_CODE = "client_disconnected"


class _Guard:
    """Pure ASGI middleware: body size limit, request counts, errors and latency, and
    requests whose client left.

    Once a request's body is read, the guard listens for the client going away; if it
    goes before the answer starts, the request is cancelled (its model work is dropped,
    see :mod:`textlens.server.batcher`) and counted as status 499
    ``client_disconnected``, not as the answer nobody received.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        self.limit = service.limits.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = (
            path
            if path in _KNOWN_PATHS
            else ("/static" if path.startswith("/static/") else "other")
        )
        started = time.perf_counter()
        exchange = _Exchange(receive, send, self.limit)
        try:
            length = _content_length(scope)
            if length is not None and length > self.limit:
                response = _error(
                    413,
                    "body_too_large",
                    f"The body has {length} bytes; this server takes at most {self.limit}.",
                )
                await response(scope, receive, exchange.send)
                return
            await exchange.run(self.app, scope)
        finally:
            if exchange.client_left:
                status, code = CLIENT_GONE_STATUS, CLIENT_GONE_CODE
            else:
                # No response started: an exception is on its way to Starlette's outermost
                # handler, which answers 500 internal_error.
                status = exchange.status or 500
                code = exchange.code or ("internal_error" if not exchange.status else str(status))
            self.service.requests.inc(endpoint, str(status))
            if status >= 400:
                self.service.errors.inc(endpoint, code)
            self.service.latency.observe(time.perf_counter() - started, endpoint)


class _Exchange:
    """One request as the guard sees it: the answer's status and error code, the body
    size, and whether the client left before the answer started."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.received = 0
        self.status = 0
        self.code = ""
        self.client_left = False
        self._body_read = asyncio.Event()
        self._after_body: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        """Run ``app``; cancel it if the client leaves before the answer starts."""
        with anyio.CancelScope() as cancel:
            watcher = asyncio.ensure_future(self._watch(cancel))
            try:
                await app(scope, self.receive, self.send)
            finally:
                watcher.cancel()

    async def _watch(self, cancel: anyio.CancelScope) -> None:
        # After the body, the server's next message is http.disconnect: at once when the
        # client has gone, otherwise once the response is complete (uvicorn, and the
        # in-process transports alike).
        await self._body_read.wait()
        message = await self._receive()
        self._after_body.set_result(message)
        if message["type"] == "http.disconnect" and not self.status:
            self.client_left = True
            cancel.cancel()

    async def receive(self) -> Message:
        if self._body_read.is_set():  # the watcher reads the next message: share it
            return await asyncio.shield(self._after_body)
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise _BodyTooLarge(self.limit)
            if not message.get("more_body", False):
                self._body_read.set()
        elif message["type"] == "http.disconnect" and not self.status:
            self.client_left = True  # gone while sending its body
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for name, value in message.get("headers", []):
                if name == b"x-textlens-error":
                    self.code = value.decode("latin-1")
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
