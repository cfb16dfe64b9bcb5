"""HTML report: self-contained, escaped, one section per text with every method."""

from __future__ import annotations

import re

import textlens as tl
from textlens.report import render_html, score_color


def test_report_sections_methods_and_escaping(planted_adapter) -> None:
    texts = ["the movie was wonderful", "<script>alert('x')</script> awful"]
    explanations = []
    for method in ("integrated_gradients", "saliency"):
        explanations += (
            tl.explain(planted_adapter, texts, method=method, n_steps=8)
            if method == "integrated_gradients"
            else tl.explain(planted_adapter, texts, method=method)
        )
    page = render_html(explanations, title="t <b>", summary=["line <i>"])
    assert page.count("<section>") == 2
    assert page.count("integrated_gradients") >= 2 and page.count("saliency") >= 2
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert "t &lt;b&gt;" in page and "line &lt;i&gt;" in page
    assert "completeness delta" in page
    # self-contained: no external resources
    assert not re.search(r"""(src|href)=["']https?://""", page)
    # hover shows the exact score
    assert re.search(r'title="wonderful: [+-]\d', page)


def test_to_html_single_explanation(planted_adapter) -> None:
    [e] = tl.explain(planted_adapter, ["a wonderful day"], method="grad_x_input")
    page = e.to_html()
    assert page.startswith("<!DOCTYPE html>") and "grad_x_input" in page


def test_score_color_diverges() -> None:
    assert score_color(0.0, 1.0, True) == "rgb(255,255,255)"
    r, _g, b = map(int, score_color(1.0, 1.0, True)[4:-1].split(","))
    assert b > r  # positive: blue
    r, _g, b = map(int, score_color(-1.0, 1.0, True)[4:-1].split(","))
    assert r > b  # negative: red
    assert score_color(float("nan"), 1.0, True) == "rgb(255,255,255)"


def test_a_report_of_no_explanations_says_so() -> None:
    page = render_html([])
    assert "No text was explained" in page and "<section>" not in page
