"""Online explanations over HTTP: ``create_app(model, ...)`` and ``serve(...)``.

Endpoints (JSON unless said otherwise; the OpenAPI schema is at ``/openapi.json``):

- ``POST /v1/predict``: ``{"texts": [...]}`` or ``{"records": [...]}`` -> labels and probabilities.
- ``POST /v1/explain``: the same plus optional ``methods``, ``target`` (a label, or a list
  with one per text), ``level`` (token|word|field), ``top_k`` (<= 5) and ``params`` -> per
  text the prediction, every
  method's explanation (the JSON of ``textlens explain --format json``) and its key reasons.
- ``GET /v1/methods``, ``GET /v1/model``, ``GET /healthz``, ``GET /metrics`` (Prometheus text).
- ``GET /``: the web page.

Concurrent requests are micro-batched (see :mod:`textlens.server.batcher`). Needs the
``server`` extra: ``pip install 'textlens[server]'``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidParameterError, MissingDependencyError

if TYPE_CHECKING:
    from ..model import ModelAdapter

__all__ = ["API_KEY_ENV", "create_app", "is_loopback", "serve"]

#: Environment variable read by :func:`serve` when no ``api_key`` is given.
API_KEY_ENV = "TEXTLENS_API_KEY"


def _require_server_packages() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"The textlens server needs FastAPI and uvicorn ({exc.name} is missing): "
            "pip install 'textlens[server]'"
        ) from exc


_require_server_packages()

from .app import create_app  # noqa: E402  (after the friendly check above)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    model: str | Path | ModelAdapter,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    api_key: str | None = None,
    device: str = "cpu",
    output_function: str | None = None,
    trust_remote_code: bool = False,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Load ``model`` once and serve it with uvicorn until interrupted.

    Parameters
    ----------
    model : str, Path or ModelAdapter
        A model folder, ``"demo"`` (sentiment), ``"demo-alerts"`` (alert triage), or a
        loaded adapter.
    host : str
        Interface to bind; loopback (127.0.0.1) by default. Binding any other address
        requires an API key (``api_key`` or ``$TEXTLENS_API_KEY``).
    port : int
        TCP port (0 picks a free one).
    methods, **options
        Passed to :func:`create_app` (``max_texts``, ``max_chars``, ``time_budget_s``,
        ``batching``, ``max_batch``, ``max_wait_ms``...).
    api_key : str, optional
        Required ``X-API-Key`` header value; defaults to ``$TEXTLENS_API_KEY``.
    device : str
        Where the model runs when loaded here.
    output_function : {'softmax', 'sigmoid', 'none'}, optional
        How the model's logits become probabilities when loaded here (default: from
        its config).
    trust_remote_code : bool
        Let a model folder's own code run when loaded here (see :func:`textlens.load`).
    log_level : str
        uvicorn's log level.
    """
    import uvicorn

    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback(host) and not api_key:
        raise InvalidParameterError(
            f"Binding to {host!r} exposes the model to other machines; set an API key "
            f"(--api-key or ${API_KEY_ENV}) or bind to 127.0.0.1."
        )
    adapter = load_served_model(
        model,
        device=device,
        output_function=output_function,
        trust_remote_code=trust_remote_code,
    )
    app = create_app(adapter, methods=methods, api_key=api_key, **options)
    uvicorn.run(app, host=host.strip("[]"), port=port, log_level=log_level, access_log=False)


def load_served_model(
    model: str | Path | ModelAdapter,
    *,
    device: str = "cpu",
    output_function: str | None = None,
    trust_remote_code: bool = False,
) -> ModelAdapter:
    """A model adapter from a folder, ``"demo"``, ``"demo-alerts"`` or an adapter."""
    from .. import api
    from ..model import ModelAdapter

    if isinstance(model, ModelAdapter):
        return model
    if str(model) == "demo-alerts":
        from ..demo.alerts import build_alerts_model

        model = build_alerts_model().path
    return api.load(
        model,
        device=device,
        output_function=output_function,
        trust_remote_code=trust_remote_code,
    )
