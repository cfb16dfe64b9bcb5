"""The web page in headless Chromium (Debian's ``chromium`` + Playwright), against a real server.

Type an alert, get the prediction, the word heatmap, the field bars and the key-reasons
sentence; a screenshot is saved under ``$TEXTLENS_TEST_ARTIFACTS`` (default
``build/test-artifacts``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import textlens as tl
from textlens.errors import TruncationWarning
from textlens.model import ModelAdapter
from textlens.records import save_template

playwright_api = pytest.importorskip("playwright.sync_api")

from test_server import running_server  # noqa: E402  (shared helper: real uvicorn on loopback)

from textlens.demo.alerts import ALERT_FIELDS, ALERT_TEMPLATE  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("TEXTLENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ALERT = {
    "rule": "Credential Dumping Detected",
    "severity": "critical",
    "host": "fin-ws-042",
    "user": "j.doe",
    "process": "procdump.exe <img src=x onerror=window.__xss=1>",
    "parent_process": "cmd.exe",
    "dst_ip": "203.0.113.7",
    "dst_port": 4444,
}


def artifacts_dir() -> Path:
    folder = Path(
        os.environ.get(
            "TEXTLENS_TEST_ARTIFACTS",
            Path(__file__).resolve().parents[1] / "build" / "test-artifacts",
        )
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def alert_model_dir(
    tmp_path_factory: pytest.TempPathFactory, planted_adapter: ModelAdapter
) -> Path:
    """The tiny planted model, reading alerts (its answers mean nothing: the page is tested)."""
    folder = tmp_path_factory.mktemp("alert-model")
    planted_adapter.model.save_pretrained(folder)
    planted_adapter.tokenizer.save_pretrained(folder)
    save_template(folder, ALERT_TEMPLATE)
    return folder


def explain_alert_in_page(browser: Any, base: str, screenshot: str) -> dict[str, Any]:
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    console_errors: list[str] = []
    page.on(
        "console",
        lambda message: console_errors.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: console_errors.append(str(error)))
    page.goto(base + "/")
    page.wait_for_selector("input[name=method][value=integrated_gradients]")
    page.check("input[name=method][value=integrated_gradients]")
    page.fill("#input", json.dumps(ALERT, indent=2))
    page.click("#explain")
    page.wait_for_selector(
        "#results:not([hidden]) .method[data-method=integrated_gradients] .field-bars",
        timeout=120_000,
    )
    found = page.evaluate(
        """() => ({
            label: document.getElementById('prediction-label').textContent,
            latency: document.getElementById('latency').textContent,
            methods: [...document.querySelectorAll('.method')].map(m => m.dataset.method),
            reasons: [...document.querySelectorAll('.method .reasons')].map(r => r.textContent),
            words: document.querySelectorAll('.method .heatmap .word').length,
            coloured: [...document.querySelectorAll('.method .heatmap .word')]
                .filter(w => w.style.background).length,
            bars: [...document.querySelectorAll('.method')]
                .map(m => m.querySelectorAll('.field-bars rect.bar').length),
            barLabels: document.querySelector('.method')
                .querySelectorAll('.field-bars text[text-anchor=end]').length,
            heatmapText: document.querySelector('.method .heatmap').textContent,
            injected: document.querySelectorAll('#results img').length,
            xss: window.__xss === undefined ? null : window.__xss,
        })"""
    )
    page.screenshot(path=str(artifacts_dir() / screenshot), full_page=True)
    found["console_errors"] = console_errors
    page.fill("#input", '{"rule": ')
    page.click("#explain")
    found["bad_json_status"] = page.text_content("#status")
    page.close()
    return found


def test_page_explains_an_alert(
    browser: Any, alert_model_dir: Path, planted_adapter: ModelAdapter
) -> None:
    with running_server(alert_model_dir) as (base, _):
        found = explain_alert_in_page(browser, base, "web-alert-tiny-model.png")
    assert found["label"] in planted_adapter.labels
    assert found["methods"] == ["grad_x_input", "integrated_gradients"]
    assert all(r.startswith(found["label"] + " (") for r in found["reasons"])
    assert found["words"] > 20 and found["coloured"] == found["words"]
    assert found["bars"] == [len(ALERT_FIELDS)] * 2
    assert found["barLabels"] >= len(ALERT_FIELDS)
    assert "<img src=x onerror=window.__xss=1>" in found["heatmapText"]  # shown as text...
    assert found["injected"] == 0 and found["xss"] is None  # ...never as markup
    assert "ms round trip" in found["latency"]
    assert found["console_errors"] == []  # no script error, no CSP violation
    assert "does not parse" in found["bad_json_status"]
    assert (artifacts_dir() / "web-alert-tiny-model.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.heavy
def test_page_with_the_alert_demo_model(browser: Any) -> None:
    from textlens.demo.alerts import build_alerts_model

    info = build_alerts_model(progress=False)
    with running_server(info.path) as (base, _):
        found = explain_alert_in_page(browser, base, "web-alert-demo-model.png")
    assert found["label"] in ("true_threat", "false_positive")
    assert found["bars"] == [len(ALERT_FIELDS)] * 2
    assert found["console_errors"] == []


def test_page_explains_a_pair_and_says_what_was_cut(
    browser: Any, alert_model_dir: Path, planted_adapter: ModelAdapter
) -> None:
    first, second = "the movie was wonderful", " ".join(["the city at night"] * 30)
    with running_server(alert_model_dir) as (base, _):
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(base + "/")
        page.wait_for_selector("input[name=method][value=integrated_gradients]")
        page.check("input[name=method][value=integrated_gradients]")
        page.fill("#input", first)
        page.click("#pair-box summary")
        page.fill("#second", second)
        page.click("#explain")
        page.wait_for_selector(
            "#results:not([hidden]) .method[data-method=integrated_gradients] .heatmap",
            timeout=120_000,
        )
        found = page.evaluate(
            """() => ({
                marks: [...document.querySelectorAll('.method .heatmap .pair-mark')].length,
                heatmap: document.querySelector('.method .heatmap').textContent,
                truncatedHidden: document.getElementById('truncated').hidden,
                truncated: document.getElementById('truncated').textContent,
                quality: [...document.querySelectorAll('.method')]
                    .map(m => (m.querySelector('.quality') || {}).textContent || null),
            })"""
        )
        page.screenshot(path=str(artifacts_dir() / "web-pair.png"), full_page=True)
        page.fill("#input", '{"story": "the movie"}')
        page.click("#explain")
        found["record_with_second_text"] = page.text_content("#status")
        page.close()
    assert errors == []
    assert found["marks"] == 2  # one per method's heatmap
    assert found["heatmap"].startswith(first + " second text \u25b8 the city")
    assert not found["truncatedHidden"]
    with pytest.warns(TruncationWarning):
        [want] = tl.explain(planted_adapter, [(first, second)], method="saliency")
    assert (
        f"{want.truncated_tokens} tokens were cut from the end of the longer text"
        in (found["truncated"])
    )
    assert f"maximum of {planted_adapter.max_length} tokens" in found["truncated"]
    grad, ig = found["quality"]
    assert grad is None and ig.startswith("Completeness delta") and "steps" in ig
    assert "takes no second text" in found["record_with_second_text"]
