"""The HTTP server: in-process (TestClient, httpx ASGITransport) and as a real uvicorn process.

Every endpoint and every documented error; every response checked against the app's
own OpenAPI schema; micro-batching (fewer model calls than requests, same answers as
one at a time); a bounded fault/abuse run against the real process (loopback only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import psutil
import pytest
import torch
from conftest import PassCounter
from fastapi.testclient import TestClient

from textlens.errors import InvalidParameterError, UnknownMethodError
from textlens.explainers import REGISTRY, make_explainer
from textlens.model import ModelAdapter
from textlens.records import RecordTemplate, explain_records, save_template
from textlens.server import create_app, is_loopback, serve
from textlens.server.batcher import MicroBatcher, OverloadedError

TEMPLATE = RecordTemplate(fields=("story", "place"))
TEXTS = [
    "the movie was wonderful",
    "an awful plot with a dreadful actor in the city",
    "a superb song for the team",
    "the road to the house was horrid",
    "a delightful book by the window",
    "the game of the year was awful",
    "music of the night with a friend",
    "the story of a place in the city",
]
RECORDS = [
    {"story": "the movie was wonderful", "place": "the city"},
    {"story": "an awful plot", "place": "the house"},
]
API_KEY = "test-key-0123456789"


# ---------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, planted_adapter: ModelAdapter) -> Path:
    folder = tmp_path_factory.mktemp("served-model")
    planted_adapter.model.save_pretrained(folder)
    planted_adapter.tokenizer.save_pretrained(folder)
    save_template(folder, TEMPLATE)
    return folder


@pytest.fixture(scope="module")
def served(model_dir: Path, planted_adapter: ModelAdapter) -> ModelAdapter:
    """The planted model, as if loaded from its folder (so the template is found)."""
    return ModelAdapter(planted_adapter.model, planted_adapter.tokenizer, model_id=str(model_dir))


@pytest.fixture(scope="module")
def client(served: ModelAdapter) -> Iterator[TestClient]:
    with TestClient(create_app(served, max_texts=8, max_chars=2000)) as c:
        yield c


class OpenAPIChecker:
    """Validates real responses against the app's published OpenAPI document."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def check(self, method: str, path: str, response: httpx.Response) -> None:
        operation = self.spec["paths"].get(path, {}).get(method.lower())
        if operation is None:  # undocumented path: still our error format
            assert response.status_code in (404, 405)
            self._validate({"$ref": "#/components/schemas/ErrorResponse"}, response.json())
            return
        documented = operation["responses"]
        assert str(response.status_code) in documented, (
            f"{method} {path} answered {response.status_code}, not in {list(documented)}"
        )
        content = documented[str(response.status_code)].get("content", {})
        media = response.headers["content-type"].split(";")[0]
        matching = [c for t, c in content.items() if t.split(";")[0] == media]
        assert matching, (
            f"{method} {path} {response.status_code}: {media} not documented ({list(content)})"
        )
        schema = matching[0]["schema"]
        body = response.text if media == "text/plain" else response.json()
        self._validate(schema, body)

    def _validate(self, schema: dict[str, Any], body: Any) -> None:
        jsonschema.Draft202012Validator({**schema, "components": self.spec["components"]}).validate(
            body
        )


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> OpenAPIChecker:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return OpenAPIChecker(response.json())


def call(
    client: Any, openapi: OpenAPIChecker, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    response = client.request(method, path, **kwargs)
    openapi.check(method, path, response)
    return response


def library_explanations(
    model: ModelAdapter, texts: list[str], method: str, **params: Any
) -> list[dict[str, Any]]:
    return [e.to_dict() for e in make_explainer(method, model, **params).explain(texts)]


def assert_same_explanation(got: dict[str, Any], want: dict[str, Any], atol: float = 1e-5) -> None:
    exact = (
        "text",
        "tokens",
        "offsets",
        "special",
        "word_ids",
        "words",
        "word_spans",
        "method",
        "params",
        "target",
        "labels",
    )
    for key in exact:
        assert got[key] == want[key], key
    for key in ("scores", "word_scores", "probabilities"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=atol, err_msg=key)


def metric(text: str, name: str, labels: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        series = line.split(" ")[0]
        if series.split("{")[0] == name and labels in series:
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------------------- endpoints
def test_health_methods_model(
    client: TestClient, openapi: OpenAPIChecker, served: ModelAdapter
) -> None:
    assert call(client, openapi, "GET", "/healthz").json() == {"status": "ok"}
    methods = call(client, openapi, "GET", "/v1/methods").json()["methods"]
    assert [m["name"] for m in methods] == list(REGISTRY)
    assert [m["name"] for m in methods if m["default"]] == ["grad_x_input"]
    ig = next(m for m in methods if m["name"] == "integrated_gradients")
    assert ig["parameters"]["n_steps"] == 50 and ig["reference"].startswith("https://")
    info = call(client, openapi, "GET", "/v1/model").json()
    assert info["labels"] == list(served.labels)
    assert info["max_length"] == served.max_length
    assert info["template"] == TEMPLATE.to_dict()
    assert info["limits"]["max_texts"] == 8 and info["limits"]["batching"] is True


def test_predict_texts_and_records(
    client: TestClient, openapi: OpenAPIChecker, served: ModelAdapter
) -> None:
    body = call(client, openapi, "POST", "/v1/predict", json={"texts": TEXTS[:3]}).json()
    expected = served.predict_proba(served.encode(TEXTS[:3]))
    for result, p in zip(body["results"], expected, strict=True):
        assert result["prediction"]["label"] == served.labels[int(p.argmax())]
        np.testing.assert_allclose(
            list(result["prediction"]["probabilities"].values()), p, rtol=1e-5
        )
    records = call(client, openapi, "POST", "/v1/predict", json={"records": RECORDS}).json()[
        "results"
    ]
    assert records[0]["text"] == "story: the movie was wonderful\nplace: the city"
    assert records[0]["record"] == RECORDS[0]
    assert [r["prediction"]["label"] for r in records] == ["positive", "negative"]


def test_explain_texts_matches_the_cli_json(
    client: TestClient, openapi: OpenAPIChecker, served: ModelAdapter
) -> None:
    from textlens.cli import _json_record

    methods = ["grad_x_input", "integrated_gradients"]
    response = call(
        client, openapi, "POST", "/v1/explain", json={"texts": TEXTS[:2], "methods": methods}
    )
    results = response.json()["results"]
    for i, result in enumerate(results):
        per_method = [make_explainer(m, served).explain([TEXTS[i]])[0] for m in methods]
        cli = _json_record(per_method)
        assert result["text"] == cli["text"]
        assert result["prediction"]["label"] == cli["prediction"]["label"]
        for got, want in zip(result["explanations"], cli["explanations"], strict=True):
            assert_same_explanation(got, want)
        assert [r["method"] for r in result["reasons"]] == methods
        assert all(r["level"] == "word" for r in result["reasons"])
    assert results[0]["reasons"][1]["supporting"][0]["name"] == "wonderful"  # integrated gradients
    assert results[1]["prediction"]["label"] == "negative"


def test_explain_records_gives_field_scores_and_reasons(
    client: TestClient, openapi: OpenAPIChecker, served: ModelAdapter
) -> None:
    body = {
        "records": RECORDS,
        "methods": ["integrated_gradients"],
        "top_k": 2,
        "target": "positive",
    }
    result = call(client, openapi, "POST", "/v1/explain", json=body).json()["results"][0]
    [want] = explain_records(served, RECORDS[:1], "integrated_gradients", target="positive")
    got = result["explanations"][0]
    assert_same_explanation(got, want.to_dict())
    assert [f["name"] for f in got["fields"]] == ["story", "place"]
    np.testing.assert_allclose(
        [f["score"] for f in got["fields"]], want.field_scores, rtol=1e-4, atol=1e-6
    )
    reasons = result["reasons"][0]
    assert reasons["level"] == "field" and reasons["label"] == "positive"
    strongest = max(reasons["supporting"] + reasons["opposing"], key=lambda r: abs(r["score"]))
    assert strongest["name"] == "story"  # the planted word's field
    assert reasons["summary"].startswith("positive (")
    assert len(reasons["supporting"]) + len(reasons["opposing"]) <= 2
    words = call(client, openapi, "POST", "/v1/explain", json={**body, "level": "word"}).json()
    assert words["results"][0]["reasons"][0]["level"] == "word"


def test_explain_pairs(client: TestClient, openapi: OpenAPIChecker, served: ModelAdapter) -> None:
    from textlens.pairs import pair_text

    pairs = [("the movie was wonderful", "an awful plot"), ("the city", "a superb song")]
    body = {"texts": [list(pairs[0]), pair_text(*pairs[1]), TEXTS[2]], "methods": ["saliency"]}
    results = call(client, openapi, "POST", "/v1/explain", json=body).json()["results"]
    want = library_explanations(served, [*pairs, TEXTS[2]], "saliency")
    for result, expected, pair in zip(results, want, [*pairs, None], strict=True):
        assert result["text"] == expected["text"]
        assert result.get("pair") == (list(pair) if pair else None)
        assert_same_explanation(result["explanations"][0], expected)
    predicted = call(client, openapi, "POST", "/v1/predict", json={"texts": [list(pairs[0])]})
    [result] = predicted.json()["results"]
    assert result["pair"] == list(pairs[0])
    p = served.predict_proba(served.encode([pairs[0]]))[0]
    np.testing.assert_allclose(list(result["prediction"]["probabilities"].values()), p, rtol=1e-5)


def test_a_record_value_with_the_pair_mark_stays_one_text(
    client: TestClient, openapi: OpenAPIChecker
) -> None:
    record = {"story": "the movie \u241e was wonderful", "place": "the city"}
    [result] = call(client, openapi, "POST", "/v1/predict", json={"records": [record]}).json()[
        "results"
    ]
    assert result["text"] == "story: the movie   was wonderful\nplace: the city"
    assert "pair" not in result and result["record"] == record


def test_explain_with_request_parameters(
    client: TestClient, openapi: OpenAPIChecker, served: ModelAdapter
) -> None:
    body = {
        "texts": TEXTS[:1],
        "methods": ["integrated_gradients"],
        "params": {"integrated_gradients": {"n_steps": 8, "baseline": "mask"}},
    }
    got = call(client, openapi, "POST", "/v1/explain", json=body).json()["results"][0][
        "explanations"
    ][0]
    assert got["params"]["n_steps"] == 8 and got["params"]["baseline"] == "mask"
    [want] = library_explanations(
        served, TEXTS[:1], "integrated_gradients", n_steps=8, baseline="mask"
    )
    assert_same_explanation(got, want)


def test_page_and_static_assets(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in page.text and "cdn" not in page.text.lower()
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "textContent" in script.text
    assert "innerHTML" not in script.text.replace("never innerHTML", "")
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/secret.txt").status_code == 404


def test_openapi_documents_every_api_route(client: TestClient, openapi: OpenAPIChecker) -> None:
    paths = openapi.spec["paths"]
    assert set(paths) == {
        "/v1/predict",
        "/v1/explain",
        "/v1/methods",
        "/v1/model",
        "/healthz",
        "/metrics",
    }
    for path in ("/v1/predict", "/v1/explain"):
        assert {"200", "400", "413", "422", "503"} <= set(paths[path]["post"]["responses"])
    request = openapi.spec["components"]["schemas"]["ExplainRequest"]
    assert set(request["properties"]) == {
        "texts",
        "records",
        "methods",
        "target",
        "level",
        "top_k",
        "params",
    }
    assert request["additionalProperties"] is False


# ---------------------------------------------------------------------------- documented errors
LONG = "the movie " * 10_000  # 100 KB
ERRORS: list[tuple[str, Any, int, str]] = [
    ("not json", b"{", 400, "invalid_json"),
    ("not utf-8", b'{"texts": ["caf\xe9"]}', 400, "invalid_json"),
    ("not an object", [1, 2], 422, "invalid_request"),
    ("text not a string", {"texts": [1]}, 422, "invalid_request"),
    ("texts a string", {"texts": "the movie"}, 422, "invalid_request"),
    ("record not an object", {"records": ["the movie"]}, 422, "invalid_request"),
    ("top_k as string", {"texts": ["the movie"], "top_k": "3"}, 422, "invalid_request"),
    ("target a bool", {"texts": ["the movie"], "target": True}, 422, "invalid_request"),
    ("unknown key", {"texts": ["the movie"], "method": "saliency"}, 422, "invalid_request"),
    ("both texts and records", {"texts": ["a"], "records": RECORDS}, 422, "invalid_request"),
    ("neither", {"methods": ["saliency"]}, 422, "invalid_request"),
    ("empty list", {"texts": []}, 422, "no_texts"),
    ("too many texts", {"texts": ["the movie"] * 9}, 422, "too_many_texts"),
    ("text too long", {"texts": ["a" * 2001]}, 422, "text_too_long"),
    ("100 KB text", {"texts": [LONG]}, 422, "text_too_long"),
    ("empty text", {"texts": [""]}, 422, "empty_text"),
    ("blank text", {"texts": ["the movie", " \n "]}, 422, "empty_text"),
    ("lone surrogate", b'{"texts": ["the \\ud800 movie"]}', 422, "invalid_text"),
    ("pair of one text", {"texts": [["the movie"]]}, 422, "invalid_request"),
    ("pair of three texts", {"texts": [["a", "b", "c"]]}, 422, "invalid_request"),
    ("pair with a number", {"texts": [["a", 3]]}, 422, "invalid_request"),
    ("pair with an empty side", {"texts": [["the movie", " "]]}, 422, "empty_text"),
    ("pair holding the mark", {"texts": [["a \u241e b", "c"]]}, 422, "invalid_text"),
    ("joined pair, mark twice", {"texts": ["a \u241e b \u241e c"]}, 422, "invalid_text"),
    ("joined pair, empty side", {"texts": ["the movie \u241e "]}, 422, "invalid_text"),
    ("bad record", {"records": [{}]}, 422, "invalid_record"),
    ("record key with the pair mark", {"records": [{"story \u241e": "a"}]}, 422, "invalid_record"),
    (
        "record with unknown field",
        {"records": [{"story": "a", "plot": "b"}]},
        422,
        "invalid_record",
    ),
    ("unknown method", {"texts": ["the movie"], "methods": ["lime2"]}, 422, "unknown_method"),
    ("empty methods", {"texts": ["the movie"], "methods": []}, 422, "invalid_request"),
    ("unknown label", {"texts": ["the movie"], "target": "great"}, 422, "unknown_target"),
    ("label index out of range", {"texts": ["the movie"], "target": 7}, 422, "unknown_target"),
    ("a target per text, too few", {"texts": ["a", "b"], "target": [0]}, 422, "unknown_target"),
    ("an unknown label in the list", {"texts": ["a"], "target": ["nope"]}, 422, "unknown_target"),
    ("a bool in the list", {"texts": ["a"], "target": [True]}, 422, "invalid_request"),
    ("unknown level", {"texts": ["the movie"], "level": "sentence"}, 422, "invalid_request"),
    ("field level for texts", {"texts": ["the movie"], "level": "field"}, 422, "invalid_level"),
    ("top_k 0", {"texts": ["the movie"], "top_k": 0}, 422, "invalid_request"),
    ("top_k 6", {"texts": ["the movie"], "top_k": 6}, 422, "invalid_request"),
    (
        "unknown parameter",
        {"texts": ["a"], "methods": ["saliency"], "params": {"saliency": {"n_steps": 3}}},
        422,
        "invalid_parameter",
    ),
    (
        "bad parameter",
        {
            "texts": ["a"],
            "methods": ["integrated_gradients"],
            "params": {"integrated_gradients": {"n_steps": 0}},
        },
        422,
        "invalid_parameter",
    ),
    (
        "work cap",
        {
            "texts": ["a"],
            "methods": ["integrated_gradients"],
            "params": {"integrated_gradients": {"n_steps": 100_000}},
        },
        422,
        "invalid_parameter",
    ),
    (
        "server-only parameter",
        {"texts": ["a"], "methods": ["saliency"], "params": {"saliency": {"max_batch_tokens": 9}}},
        422,
        "invalid_parameter",
    ),
    *(
        (
            f"server-only {name}",
            {"texts": ["a"], "methods": [method], "params": {method: {name: value}}},
            422,
            "invalid_parameter",
        )
        for method, name, value in [
            ("information", "cache_dir", "/tmp/somewhere"),  # files on the server
            ("information", "use_cache", False),  # recompute the statistics every time
            ("occlusion", "progress", True),  # progress bars in the server's log
        ]
    ),
    (
        "text with no tokens",  # the tokenizer drops a zero-width space
        {"texts": ["\u200b"], "methods": ["saliency"]},
        422,
        "invalid_input",
    ),
    (
        "integer past 64 bits",  # JSON has no size limit, tensors do
        {"texts": ["a"], "methods": ["information"], "params": {"information": {"lam": 10**20}}},
        422,
        "invalid_parameter",
    ),
    (
        "parameter of an unused method",
        {"texts": ["a"], "params": {"saliency": {}}},
        422,
        "invalid_parameter",
    ),
]


@pytest.mark.parametrize(("name", "body", "status", "code"), ERRORS, ids=[e[0] for e in ERRORS])
def test_documented_errors(
    client: TestClient, openapi: OpenAPIChecker, name: str, body: Any, status: int, code: str
) -> None:
    kwargs: dict[str, Any] = (
        {"content": body, "headers": {"content-type": "application/json"}}
        if isinstance(body, bytes)
        else {"json": body}
    )
    response = call(client, openapi, "POST", "/v1/explain", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert len(error["message"]) > 10
    if name in ("not json", "text not a string", "100 KB text"):  # /v1/predict checks the same way
        assert call(client, openapi, "POST", "/v1/predict", **kwargs).status_code == status


def test_error_messages_say_how_to_fix(client: TestClient) -> None:
    unknown = client.post("/v1/explain", json={"texts": ["a"], "methods": ["lime2"]}).json()[
        "error"
    ]["message"]
    assert "grad_x_input" in unknown and "GET /v1/methods" in unknown
    label = client.post("/v1/explain", json={"texts": ["a"], "target": "great"}).json()["error"][
        "message"
    ]
    assert "'positive'" in label
    many = client.post("/v1/explain", json={"texts": ["a"] * 9}).json()["error"]["message"]
    assert "at most 8" in many
    for texts, message in [  # not "should be a valid string" for an item that may be a pair
        ([["a", "b", "c"]], "body.texts.0: each item must be a text (a string) or a pair"),
        (["ok", ["a"]], "body.texts.1: each item must be a text"),
        ([5], "got a number."),
        ([["a", "b", "c"]], "got a list of 3 items."),
        ([["a", None]], "body.texts.0.1: each text of a pair must be a string; got null."),
    ]:
        got = client.post("/v1/explain", json={"texts": texts}).json()["error"]["message"]
        assert message in got, got
    for target, message in [
        (1.5, "body.target: the target is a label name, a label index, or a list"),
        (1.5, "got a number (1.5)"),
        (True, "got a boolean (True)"),
        ({"label": 1}, "got an object."),
        (["positive", 2.5], "body.target.1: each target of the list is a label name"),
    ]:
        body = {"texts": ["a", "b"], "target": target}
        got = client.post("/v1/explain", json=body).json()["error"]["message"]
        assert message in got, got
    words = "the movie was fine " * 50  # 950 characters
    at_limit = [[words + "x" * 50, words + "y" * 50]]  # 2,000 characters, the limit
    assert client.post("/v1/predict", json={"texts": at_limit}).status_code == 200
    over = client.post("/v1/predict", json={"texts": [[at_limit[0][0] + "!", at_limit[0][1]]]})
    assert over.json()["error"]["message"].startswith(
        "Pair 0 has 2001 characters (its two texts together); this server takes at most 2000"
    )


def test_http_level_errors(client: TestClient, openapi: OpenAPIChecker) -> None:
    assert call(client, openapi, "GET", "/nope").json()["error"]["code"] == "not_found"
    assert (
        call(client, openapi, "GET", "/v1/explain").json()["error"]["code"] == "method_not_allowed"
    )
    huge = b'{"texts": ["' + b"a" * 200_000 + b'"]}'
    response = call(
        client,
        openapi,
        "POST",
        "/v1/explain",
        content=huge,
        headers={"content-type": "application/json"},
    )
    assert (response.status_code, response.json()["error"]["code"]) == (413, "body_too_large")
    for path in ("/healthz", "/"):  # uptime checks often send HEAD
        head = client.head(path)
        assert head.status_code == 200 and head.content == b""
    as_text = client.post(
        "/v1/explain", content=b'{"texts": ["a"]}', headers={"content-type": "text/plain"}
    )
    assert as_text.status_code == 422
    assert "Content-Type: application/json" in as_text.json()["error"]["message"]
    nested = client.post(
        "/v1/explain",
        content=b"[" * 5000 + b"]" * 5000,
        headers={"content-type": "application/json"},
    )
    assert nested.status_code == 400 and "is it valid UTF-8" not in nested.text


def test_chunked_body_over_the_limit_is_refused(served: ModelAdapter) -> None:
    app = create_app(served, max_body_bytes=2048)

    def chunks() -> Iterator[bytes]:
        yield b'{"texts": ["'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"]}'

    with TestClient(app) as c:
        response = c.post(
            "/v1/explain", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
        assert c.post("/v1/explain", json={"texts": ["the movie"]}).status_code == 200


def test_time_budget(served: ModelAdapter) -> None:
    with TestClient(create_app(served, time_budget_s=0.001)) as c:
        response = c.post("/v1/explain", json={"texts": TEXTS, "methods": ["integrated_gradients"]})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "time_budget_exceeded"
        assert response.headers["retry-after"] == "1"
        assert c.get("/healthz").status_code == 200


def test_api_key(served: ModelAdapter) -> None:
    with TestClient(create_app(served, api_key=API_KEY)) as c:
        spec = c.get("/openapi.json").json()
        checker = OpenAPIChecker(spec)
        assert "APIKeyHeader" in spec["components"]["securitySchemes"]
        for path in ("/v1/model", "/v1/methods", "/metrics"):
            assert call(c, checker, "GET", path).status_code == 401
            assert (
                call(c, checker, "GET", path, headers={"X-API-Key": "wrong-key-xxxxx"}).status_code
                == 401
            )
            assert call(c, checker, "GET", path, headers={"X-API-Key": API_KEY}).status_code == 200
        denied = call(c, checker, "POST", "/v1/explain", json={"texts": ["a"]})
        assert denied.json()["error"]["code"] == "unauthorized"
        assert (
            call(
                c,
                checker,
                "POST",
                "/v1/explain",
                json={"texts": ["a"]},
                headers={"X-API-Key": API_KEY},
            ).status_code
            == 200
        )
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200


def test_bad_server_settings(served: ModelAdapter) -> None:
    with pytest.raises(InvalidParameterError, match="max_texts"):
        create_app(served, max_texts=0)
    with pytest.raises(InvalidParameterError, match="time_budget_s"):
        create_app(served, time_budget_s=0)
    with pytest.raises(InvalidParameterError, match="at least 8"):
        create_app(served, api_key="short")
    with pytest.raises(InvalidParameterError, match="printable ASCII"):
        create_app(served, api_key="schlüssel-1234")  # a client sends it in UTF-8: no match
    with pytest.raises(UnknownMethodError, match="lime2"):
        create_app(served, methods=["lime2"])
    with pytest.raises(InvalidParameterError, match="n_step"):
        create_app(served, methods={"integrated_gradients": {"n_step": 4}})
    with pytest.raises(InvalidParameterError, match=r"Binding to '0\.0\.0\.0'"):
        serve(served, host="0.0.0.0", port=1)  # refused before anything is bound
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_server_side_method_parameters(served: ModelAdapter) -> None:
    app = create_app(served, methods={"integrated_gradients": {"n_steps": 16}, "saliency": {}})
    with TestClient(app) as c:
        methods = c.get("/v1/methods").json()["methods"]
        assert [m["name"] for m in methods] == ["integrated_gradients", "saliency"]
        assert methods[0]["default"] and methods[0]["parameters"]["n_steps"] == 16
        got = c.post("/v1/explain", json={"texts": TEXTS[:1]}).json()["results"][0]["explanations"][
            0
        ]
        assert got["method"] == "integrated_gradients" and got["params"]["n_steps"] == 16
        assert (
            c.post("/v1/explain", json={"texts": ["a"], "methods": ["grad_x_input"]}).json()[
                "error"
            ]["code"]
            == "unknown_method"
        )


def test_metrics_are_prometheus_text(served: ModelAdapter) -> None:
    with TestClient(create_app(served)) as c:
        c.post("/v1/explain", json={"texts": TEXTS[:2]})
        c.post("/v1/explain", json={"texts": [1]})
        c.post("/v1/predict", json={"texts": TEXTS[:1]})
        response = c.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    for name in (
        "textlens_requests_total",
        "textlens_errors_total",
        "textlens_request_duration_seconds",
        "textlens_model_calls_total",
        "textlens_batch_texts",
        "textlens_queue_texts",
    ):
        assert f"# TYPE {name} " in text
    assert metric(text, "textlens_requests_total", 'endpoint="/v1/explain",status="200"') == 1
    assert metric(text, "textlens_errors_total", 'code="invalid_request"') == 1
    assert metric(text, "textlens_request_duration_seconds_count", 'endpoint="/v1/explain"') == 2
    assert metric(text, "textlens_batch_texts_sum", 'method="grad_x_input"') == 2
    assert metric(text, "textlens_model_calls_total", 'method="predict"') == 1
    assert 'textlens_request_duration_seconds_bucket{endpoint="/v1/explain",le="+Inf"} 2' in text
    for line in text.splitlines():  # every sample line: name{labels} number
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


# ---------------------------------------------------------------------------- micro-batching
async def _concurrent(app: Any, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
        responses = await asyncio.gather(*(c.post("/v1/explain", json=b) for b in bodies))
        metrics = await c.get("/metrics")
    await app.state.service.close()
    return [*responses, metrics]


@pytest.mark.parametrize("method", ["grad_x_input", "integrated_gradients"])
def test_micro_batching_fewer_calls_same_answers(served: ModelAdapter, method: str) -> None:
    app = create_app(served, max_wait_ms=300, max_batch=32)
    bodies = [{"texts": [t], "methods": [method]} for t in TEXTS]
    *responses, metrics = asyncio.run(_concurrent(app, bodies))
    calls = metric(metrics.text, "textlens_model_calls_total", f'method="{method}"')
    assert 1 <= calls < len(bodies)
    assert metric(metrics.text, "textlens_batch_requests_sum", f'method="{method}"') == len(bodies)
    one_at_a_time = [library_explanations(served, [t], method)[0] for t in TEXTS]
    for response, want in zip(responses, one_at_a_time, strict=True):
        assert response.status_code == 200
        assert_same_explanation(response.json()["results"][0]["explanations"][0], want)


def test_bad_requests_do_not_touch_the_batch(served: ModelAdapter) -> None:
    app = create_app(served, max_wait_ms=300)
    bodies: list[dict[str, Any]] = [{"texts": [t]} for t in TEXTS[:4]]
    bodies[1:1] = [
        {"texts": [""]},
        {"texts": ["a"], "target": "nope"},
        {"texts": ["a"], "methods": ["x"]},
    ]
    *responses, metrics = asyncio.run(_concurrent(app, bodies))
    assert [r.status_code for r in responses] == [200, 422, 422, 422, 200, 200, 200]
    good = [r for r in responses if r.status_code == 200]
    for response, text in zip(good, TEXTS[:4], strict=True):
        assert_same_explanation(
            response.json()["results"][0]["explanations"][0],
            library_explanations(served, [text], "grad_x_input")[0],
        )
    assert metric(metrics.text, "textlens_batch_texts_sum", 'method="grad_x_input"') == 4


def test_different_targets_and_params_are_not_mixed(served: ModelAdapter) -> None:
    app = create_app(served, max_wait_ms=300)
    bodies = [
        {"texts": [TEXTS[0]], "target": "negative"},
        {"texts": [TEXTS[1]]},
        {"texts": [TEXTS[2]], "target": 0},
        {
            "texts": [TEXTS[3]],
            "methods": ["integrated_gradients"],
            "params": {"integrated_gradients": {"n_steps": 4}},
        },
        {
            "texts": [TEXTS[4]],
            "methods": ["integrated_gradients"],
            "params": {"integrated_gradients": {"n_steps": 6}},
        },
    ]
    *responses, metrics = asyncio.run(_concurrent(app, bodies))
    got = [r.json()["results"][0]["explanations"][0] for r in responses]
    assert [g["target_label"] for g in got[:3]] == ["negative", "negative", "negative"]
    assert [g["params"]["n_steps"] for g in got[3:]] == [4, 6]
    [want] = make_explainer("grad_x_input", served).explain([TEXTS[0]], target="negative")
    assert_same_explanation(got[0], want.to_dict())
    # one call for the two requests with target 0, one for the predicted target
    assert metric(metrics.text, "textlens_model_calls_total", 'method="grad_x_input"') == 2
    assert metric(metrics.text, "textlens_model_calls_total", 'method="integrated_gradients"') == 2


def test_one_target_per_text(served: ModelAdapter) -> None:
    """A list target explains each text for its own label, as the library does."""
    app = create_app(served, max_wait_ms=300)
    targets = ["negative", None, 0, "positive"]
    body = {"texts": TEXTS[:4], "target": targets, "methods": ["grad_x_input", "saliency"]}
    [response, metrics] = asyncio.run(_concurrent(app, [body]))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    for method_index, method in enumerate(["grad_x_input", "saliency"]):
        want = make_explainer(method, served).explain(TEXTS[:4], target=targets)
        for result, expected in zip(results, want, strict=True):
            assert_same_explanation(result["explanations"][method_index], expected.to_dict())
    assert [r["explanations"][0]["target_label"] for r in results][::2] == ["negative"] * 2
    # texts with the same target share one model call: three targets, three calls
    assert metric(metrics.text, "textlens_model_calls_total", 'method="grad_x_input"') == 3


class _Recorder:
    def __init__(self, fail_on: str | None = None, delay: float = 0.0) -> None:
        self.calls: list[tuple[Any, list[str]]] = []
        self.fail_on = fail_on
        self.delay = delay

    def __call__(self, key: Any, texts: list[str], stop: threading.Event) -> list[str]:
        self.calls.append((key, list(texts)))
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise ValueError("boom")
        return [f"{key}:{t}" for t in texts]


async def _submit_many(batcher: MicroBatcher, jobs: list[tuple[str, list[str]]]) -> list[Any]:
    return await asyncio.gather(*(batcher.submit(k, t) for k, t in jobs), return_exceptions=True)


def test_batcher_groups_by_key_and_bounds_batch_size() -> None:
    run = _Recorder()
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(run, pool, max_batch=4, max_wait_s=0.2, max_pending=100)
        jobs = [
            ("a", ["1"]),
            ("b", ["2"]),
            ("a", ["3", "4"]),
            ("a", ["5"]),
            ("b", ["6"]),
            ("a", ["7"]),
        ]
        results = asyncio.run(_submit_many(batcher, jobs))
    assert results == [[f"{k}:{t}" for t in texts] for k, texts in jobs]
    assert all(len(texts) <= 4 for _, texts in run.calls)
    assert all(len({k for k, _ in run.calls if k == key}) == 1 for key, _ in run.calls)
    assert len(run.calls) < len(jobs)


def test_batcher_isolates_a_failing_job() -> None:
    run = _Recorder(fail_on="bad")
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(run, pool, max_batch=8, max_wait_s=0.2, max_pending=100)
        results = asyncio.run(_submit_many(batcher, [("a", ["1"]), ("a", ["bad"]), ("a", ["3"])]))
    assert results[0] == ["a:1"] and results[2] == ["a:3"]
    assert isinstance(results[1], ValueError)


def test_batcher_off_runs_each_job_alone_and_overload_is_refused() -> None:
    run = _Recorder(delay=0.05)
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(run, pool, max_batch=8, max_wait_s=0.2, max_pending=3, enabled=False)
        results = asyncio.run(
            _submit_many(
                batcher, [("a", ["1"]), ("a", ["2"]), ("a", ["3"]), ("a", ["4", "5"]), ("a", ["6"])]
            )
        )
    assert all(len(texts) == 1 or texts == ["4", "5"] for _, texts in run.calls)
    assert any(isinstance(r, OverloadedError) for r in results)
    assert results[0] == ["a:1"]


def test_batcher_drops_jobs_whose_caller_gave_up() -> None:
    run = _Recorder(delay=0.2)

    async def scenario(batcher: MicroBatcher) -> None:
        first = asyncio.ensure_future(batcher.submit("a", ["1"]))
        await asyncio.sleep(0.05)  # "1" is running now
        second = asyncio.ensure_future(batcher.submit("a", ["2"]))
        await asyncio.sleep(0.01)
        second.cancel()
        assert await first == ["a:1"]
        assert await batcher.submit("a", ["3"]) == ["a:3"]
        await batcher.close()

    with ThreadPoolExecutor(1) as pool:
        asyncio.run(scenario(MicroBatcher(run, pool, max_batch=8, max_wait_s=0.0, max_pending=10)))
    assert [texts for _, texts in run.calls] == [["1"], ["3"]]


# ------------------------------------------------------------- giving up stops the model work
#: 42 tokens. With the servers' settings below, every LIME evaluation and every
#: information step is one model pass.
LONG_TEXT = " ".join(["the movie was wonderful and the city was awful"] * 4)
SLOW_METHODS: dict[str, dict[str, Any]] = {
    "lime": {"max_batch_tokens": 64},
    "information": {"use_cache": False},
}
SLOW_PARAMS: dict[str, dict[str, Any]] = {
    "lime": {"budget": 256},
    "information": {"max_steps": 256, "window": 256},  # no early convergence
}
PASS_SECONDS = 0.02


@contextlib.contextmanager
def slow_passes(model: ModelAdapter) -> Iterator[PassCounter]:
    """Every pass through the model sleeps ``PASS_SECONDS`` and is counted."""
    slow = PassCounter(model.model, PASS_SECONDS)
    try:
        yield slow
    finally:
        slow.remove()


@pytest.mark.parametrize("method", ["lime", "information"])
def test_time_budget_stops_the_model_work(served: ModelAdapter, method: str) -> None:
    """The work of a request past its budget stops at the next model pass: the model
    thread is free at once (unstopped, it would take another ~4 s and the prediction
    after it would get 503 too)."""
    app = create_app(served, methods=SLOW_METHODS, time_budget_s=1.0)
    body = {"texts": [LONG_TEXT], "methods": [method], "params": {method: SLOW_PARAMS[method]}}
    with TestClient(app) as c, slow_passes(served) as slow:
        response = c.post("/v1/explain", json=body)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "time_budget_exceeded"
        at_503 = slow.passes
        assert 0 < at_503 < 100  # at most 1 s of 20 ms passes: far from all 256
        predicted = c.post("/v1/predict", json={"texts": [TEXTS[0]]})
        assert predicted.status_code == 200
        assert slow.passes - at_503 <= 2  # the prediction's pass (and one in flight)
        metrics = c.get("/metrics").text
    assert metric(metrics, "textlens_model_calls_stopped_total", f'method="{method}"') == 1
    assert metric(metrics, "textlens_errors_total", 'code="time_budget_exceeded"') == 1


async def _post_and_leave(
    app: Any,
    body: dict[str, Any],
    leave_after: float | None = None,
    on_leave: Callable[[], None] = lambda: None,
) -> int | None:
    """POST /v1/explain through ASGI; the client leaves ``leave_after`` s after sending the
    body (None: it waits), calling ``on_leave``. The status answered, or None if none."""
    data = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/explain",
        "raw_path": b"/v1/explain",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"test"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    body_sent, answered = False, asyncio.Event()
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        try:
            await asyncio.wait_for(answered.wait(), leave_after)
        except asyncio.TimeoutError:
            on_leave()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    await app(scope, receive, send)
    return status[0] if status else None


def _lime_body(text: str) -> dict[str, Any]:
    return {"texts": [text], "methods": ["lime"], "params": {"lime": {"budget": 32, "seed": 0}}}


def test_a_call_runs_on_while_one_of_its_requests_waits(served: ModelAdapter) -> None:
    """Two requests share one model call; one client leaves: the other gets its answer
    (the same as alone), the leaver is not counted as a 200, and the call is not stopped."""
    [want] = library_explanations(
        served, [TEXTS[1]], "lime", budget=32, seed=0, max_batch_tokens=64
    )
    app = create_app(served, methods=SLOW_METHODS, max_wait_ms=200)

    async def scenario(slow: PassCounter) -> tuple[int | None, httpx.Response, int]:
        leaving = _post_and_leave(
            app, _lime_body(LONG_TEXT), 0.8, lambda: passes_when_leaving.append(slow.passes)
        )
        leaver = asyncio.ensure_future(leaving)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as c:
            answer = await c.post("/v1/explain", json=_lime_body(TEXTS[1]))
        left = await leaver
        await app.state.service.close()
        return left, answer, slow.passes

    passes_when_leaving: list[int] = []
    with slow_passes(served) as slow:
        left, answer, passes = asyncio.run(scenario(slow))
    assert left is None
    assert answer.status_code == 200
    assert_same_explanation(answer.json()["results"][0]["explanations"][0], want)
    assert passes - passes_when_leaving[0] >= 10  # the call went on after the client left
    metrics = app.state.service.registry.render()
    assert metric(metrics, "textlens_model_calls_total", 'method="lime"') == 1
    assert metric(metrics, "textlens_batch_requests_sum", 'method="lime"') == 2
    assert metric(metrics, "textlens_model_calls_stopped_total") == 0
    assert metric(metrics, "textlens_requests_total", 'status="200"') == 1
    assert metric(metrics, "textlens_requests_total", 'status="499"') == 1
    assert metric(metrics, "textlens_errors_total", 'code="client_disconnected"') == 1


def test_a_call_stops_when_every_client_has_left(served: ModelAdapter) -> None:
    """Both requests of one model call leave: the call stops at its next pass, is not
    re-run job by job, and neither request counts as a 200."""
    app = create_app(served, methods=SLOW_METHODS, max_wait_ms=200)
    body = {"texts": [LONG_TEXT], "methods": ["lime"], "params": {"lime": {"budget": 256}}}

    async def scenario() -> tuple[list[int | None], int, int]:
        statuses = await asyncio.gather(
            _post_and_leave(app, body, 0.6),
            _post_and_leave(app, {**body, "texts": [TEXTS[1]]}, 0.6),
        )
        at_leaving = slow.passes
        await asyncio.sleep(0.3)  # 15 passes' time
        after = slow.passes
        await app.state.service.close()
        return list(statuses), at_leaving, after

    with slow_passes(served) as slow:
        statuses, at_leaving, after = asyncio.run(scenario())
    assert statuses == [None, None]
    assert after - at_leaving <= 1
    assert at_leaving < 60  # of ~510 for the whole call
    metrics = app.state.service.registry.render()
    assert metric(metrics, "textlens_model_calls_stopped_total", 'method="lime"') == 1
    assert metric(metrics, "textlens_model_calls_total", 'method="lime"') == 1  # no re-runs
    assert metric(metrics, "textlens_requests_total", 'status="499"') == 2
    assert metric(metrics, "textlens_requests_total", 'status="200"') == 0


class _Passes:
    """A model call of ``n`` passes of 10 ms that stops (raises) once ``stop`` is set."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls: list[list[str]] = []
        self.passes: list[int] = []  # per call

    def __call__(self, key: Any, texts: list[str], stop: threading.Event) -> list[str]:
        self.calls.append(list(texts))
        self.passes.append(0)
        for _ in range(self.n):
            if stop.is_set():
                raise RuntimeError("stopped")
            self.passes[-1] += 1
            time.sleep(0.01)
        return [f"{key}:{t}" for t in texts]


def test_batcher_stops_a_call_only_when_every_job_is_dropped() -> None:
    run = _Passes(50)

    async def scenario(batcher: MicroBatcher) -> None:
        first = asyncio.ensure_future(batcher.submit("a", ["1"]))
        second = asyncio.ensure_future(batcher.submit("a", ["2"]))
        await asyncio.sleep(0.1)  # both run in one call now
        first.cancel()
        # the call ran on for the job still waited for
        assert await asyncio.wait_for(second, 5) == ["a:2"]
        third = asyncio.ensure_future(batcher.submit("a", ["3"]))
        fourth = asyncio.ensure_future(batcher.submit("a", ["4"]))
        await asyncio.sleep(0.2)
        third.cancel()
        fourth.cancel()
        assert await asyncio.wait_for(batcher.submit("b", ["5"]), 5) == ["b:5"]  # free again
        await batcher.close()

    with ThreadPoolExecutor(1) as pool:
        asyncio.run(scenario(MicroBatcher(run, pool, max_batch=8, max_wait_s=0.0, max_pending=9)))
    # the second call stopped soon after its last job was dropped, and was not re-run
    assert run.calls == [["1", "2"], ["3", "4"], ["5"]]
    assert run.passes[0] == run.passes[2] == 50
    assert 1 <= run.passes[1] <= 25  # cancelled after 200 ms of 10 ms passes


# ------------------------------------------------------------- a real uvicorn process on loopback
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(
    model: Path | str, *args: str, timeout: float = 180
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m textlens.server MODEL`` on a free loopback port; yields (base URL, process)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "textlens.server",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        "1",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"server exited: {process.stderr.read().decode() if process.stderr else ''}"
                )
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.3)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


@pytest.fixture(scope="module")
def live(model_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with running_server(model_dir, "--max-texts", "8", "--max-chars", "2000") as server:
        yield server


def test_real_process_serves_every_endpoint(
    live: tuple[str, subprocess.Popen[bytes]], served: ModelAdapter
) -> None:
    base, _ = live
    with httpx.Client(base_url=base, timeout=60) as c:
        checker = OpenAPIChecker(c.get("/openapi.json").json())
        assert call(c, checker, "GET", "/healthz").json() == {"status": "ok"}
        assert call(c, checker, "GET", "/v1/model").json()["template"] == TEMPLATE.to_dict()
        assert len(call(c, checker, "GET", "/v1/methods").json()["methods"]) == len(REGISTRY)
        got = call(
            c,
            checker,
            "POST",
            "/v1/explain",
            json={"texts": TEXTS[:1], "methods": ["integrated_gradients"]},
        ).json()
        assert_same_explanation(
            got["results"][0]["explanations"][0],
            library_explanations(served, TEXTS[:1], "integrated_gradients")[0],
        )
        records = call(c, checker, "POST", "/v1/explain", json={"records": RECORDS}).json()[
            "results"
        ]
        assert records[1]["reasons"][0]["summary"].startswith("negative (")
        assert (
            call(c, checker, "POST", "/v1/predict", json={"texts": TEXTS[:2]}).json()["results"][1][
                "prediction"
            ]["label"]
            == "negative"
        )
        for _, body, status, code in ERRORS:
            kwargs: dict[str, Any] = (
                {"content": body, "headers": {"content-type": "application/json"}}
                if isinstance(body, bytes)
                else {"json": body}
            )
            response = call(c, checker, "POST", "/v1/explain", **kwargs)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)
        assert call(c, checker, "GET", "/nope").status_code == 404
        assert "textlens_requests_total" in call(c, checker, "GET", "/metrics").text
        assert c.get("/").status_code == 200


# ------------------------------------------------------------- fault / abuse (loopback only)
MALFORMED: list[tuple[str, bytes, int]] = [
    ("bad json", b'{"texts": ["the movie"', 400),
    ("empty text", b'{"texts": [""]}', 422),
    ("100 KB text", json.dumps({"texts": [LONG]}).encode(), 422),
    ("unknown method", b'{"texts": ["the movie"], "methods": ["nope"]}', 422),
    ("wrong types", b'{"texts": [1, 2, 3], "top_k": "x"}', 422),
    ("half a pair", b'{"texts": [["the movie"]]}', 422),
    ("invalid utf-8", b'{"texts": ["the \xff\xfe movie"]}', 400),
]


async def _abuse(
    base: str,
    n: int,
    concurrency: int,
    malformed_share: float,
    expected: dict[str, Any],
    seed: int = 0,
) -> dict[str, Any]:
    rng = random.Random(seed)
    plan: list[tuple[str, bytes, int | None, str | None]] = []
    for _ in range(n):
        if rng.random() < malformed_share:
            name, body, status = rng.choice(MALFORMED)
            plan.append((name, body, status, None))
        else:
            text = rng.choice(TEXTS)
            endpoint = rng.choice(["explain", "explain", "predict"])
            plan.append((endpoint, json.dumps({"texts": [text]}).encode(), 200, text))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    outcomes: list[tuple[int, int | None, bool]] = [(-1, None, False)] * n
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                kind, body, status, text = plan[i]
                path = "/v1/predict" if kind == "predict" else "/v1/explain"
                response = await client.post(
                    path, content=body, headers={"content-type": "application/json"}
                )
                correct = response.status_code == status
                if correct and text is not None:
                    result = response.json()["results"][0]
                    want = expected[text]
                    correct = result["prediction"]["label"] == want["label"] and np.allclose(
                        list(result["prediction"]["probabilities"].values()),
                        want["probabilities"],
                        atol=1e-4,
                    )
                    if kind == "explain":
                        correct = correct and np.allclose(
                            result["explanations"][0]["scores"],
                            want["scores"],
                            atol=1e-4,
                            rtol=1e-3,
                        )
                outcomes[i] = (response.status_code, status, correct)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    statuses = [o[0] for o in outcomes]
    return {
        "server_errors": sum(s >= 500 for s in statuses),
        "wrong": [plan[i][0] for i, o in enumerate(outcomes) if not o[2]],
        "malformed": sum(p[3] is None for p in plan),
    }


def _abuse_run(
    model_dir: Path,
    served: ModelAdapter,
    n: int,
    concurrency: int = 32,
    malformed_share: float = 0.05,
) -> None:
    expected = {}
    for text in TEXTS:
        [e] = make_explainer("grad_x_input", served).explain([text])
        expected[text] = {
            "label": e.predicted_label,
            "probabilities": list(e.probabilities),
            "scores": list(e.scores),
        }
    with running_server(model_dir) as (base, process):
        server = psutil.Process(process.pid)
        warmup = asyncio.run(
            _abuse(base, max(n // 5, 50), concurrency, malformed_share, expected, seed=1)
        )
        assert warmup["server_errors"] == 0
        rss_before = server.memory_info().rss
        report = asyncio.run(_abuse(base, n, concurrency, malformed_share, expected, seed=2))
        rss_after = server.memory_info().rss
        assert report["server_errors"] == 0, report
        assert report["wrong"] == [], report
        assert report["malformed"] > 0
        assert process.poll() is None
        assert httpx.get(base + "/healthz", timeout=10).status_code == 200
        growth = rss_after - rss_before
        assert growth < max(40 * 2**20, 0.1 * rss_before), f"RSS grew by {growth / 2**20:.1f} MiB"
        text = httpx.get(base + "/metrics", timeout=10).text
        assert metric(text, "textlens_requests_total", 'status="500"') == 0


def test_fault_and_abuse_small(model_dir: Path, served: ModelAdapter) -> None:
    _abuse_run(model_dir, served, n=int(os.environ.get("TEXTLENS_ABUSE_REQUESTS", "200")))


@pytest.mark.slow
@pytest.mark.heavy
def test_fault_and_abuse_full_size(model_dir: Path, served: ModelAdapter) -> None:
    """The issue's size: 10,000 requests at concurrency 32, 5% malformed."""
    _abuse_run(model_dir, served, n=10_000)


def test_server_offers_only_the_methods_a_model_supports() -> None:
    """A BART-style (encoder-decoder) classifier: no attention methods."""
    from test_tokenizers import family

    torch.manual_seed(0)
    model, tokenizer = family("bart")
    adapter = ModelAdapter(model.eval(), tokenizer, model_id="tiny-bart")
    with TestClient(create_app(adapter)) as client:
        offered = [m["name"] for m in client.get("/v1/methods").json()["methods"]]
        assert offered == [
            "saliency",
            "grad_x_input",
            "integrated_gradients",
            "occlusion",
            "lime",
            "shap",
            "information",  # on the logits (the default); a layer's states are refused
        ]
        body = {"texts": [["a man", "a person"], "the movie"], "methods": ["integrated_gradients"]}
        response = client.post("/v1/explain", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["explanations"][0]["method"] == "integrated_gradients"
    with pytest.raises(InvalidParameterError, match="encoder-decoder classifier"):
        create_app(adapter, methods=["occlusion", "attention"])
