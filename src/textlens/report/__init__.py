"""Self-contained HTML reports: one section per text, a heatmap per method side by side.

Rendered from a Jinja2 template with autoescaping, so any text (``<script>`` included)
shows literally. No CDN: styles and the few lines of script are inline.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError
from ..explanation import Explanation
from ..pairs import PAIR_MARK

#: Shown where the second text of a pair starts (fonts often lack the U+241E glyph).
PAIR_LABEL = "second text ▸"

__all__ = ["render_html", "score_color", "write_html"]


def score_color(score: float, scale: float, signed: bool) -> str:
    """CSS background for ``score``: blue supports the target, red opposes it, white is 0."""
    if not math.isfinite(score) or scale <= 0:
        return "rgb(255,255,255)"
    strength = min(abs(score) / scale, 1.0)
    r: float
    g: float
    b: float
    if score >= 0 or not signed:
        r, g, b = 255 - 190 * strength, 255 - 130 * strength, 255
    else:
        r, g, b = 255, 255 - 175 * strength, 255 - 175 * strength
    return f"rgb({r:.0f},{g:.0f},{b:.0f})"


def _units(explanation: Explanation, level: str) -> list[dict[str, Any]]:
    units, scores = explanation.aggregate(level)
    signed = any(s < 0 for s in explanation.scores)
    scale = max((abs(s) for s in scores), default=0.0)
    out = [
        {"text": unit, "score": score, "color": score_color(score, scale, signed)}
        for unit, score in zip(units, scores, strict=True)
    ]
    if level == "word" and explanation.pair:  # mark where the second text starts
        mark = explanation.text.index(PAIR_MARK)
        second = next((i for i, w in enumerate(explanation.words) if w.start > mark), None)
        if second is not None:
            out[second]["pair_start"] = PAIR_LABEL
    return out


def _method_view(explanation: Explanation) -> dict[str, Any]:
    quality = explanation.quality
    return {
        "method": explanation.method,
        "target": explanation.target_label,
        "params": ", ".join(f"{k}={v}" for k, v in explanation.params.items()),
        "signed": any(s < 0 for s in explanation.scores),
        "words": _units(explanation, "word"),
        "tokens": _units(explanation, "token"),
        "delta": explanation.delta,
        "relative_delta": quality.get("relative_delta"),
        "n_steps": quality.get("n_steps"),
        "converged": quality.get("converged"),
        "target_independent": bool(quality.get("target_independent")),
        "read_from": quality.get("read_from"),
        "uninformative": bool(quality.get("uninformative")),
        "low_confidence": _low_confidence_units(explanation),
        "top": explanation.top(3),
    }


def _low_confidence_units(explanation: Explanation) -> list[str]:
    """Words whose score is within two standard errors of zero (sampled methods only)."""
    if explanation.uncertainty is None:
        return []
    out = []
    for word in explanation.words:
        score = sum(explanation.scores[i] for i in word.tokens)
        stderr = math.sqrt(sum(explanation.uncertainty[i] ** 2 for i in word.tokens))
        if stderr > 0 and abs(score) < 2 * stderr:
            out.append(word.text)
    return out


def _group_by_text(explanations: Sequence[Explanation]) -> list[list[Explanation]]:
    groups: dict[str, list[Explanation]] = {}
    for explanation in explanations:
        groups.setdefault(explanation.text, []).append(explanation)
    return list(groups.values())


def _environment() -> Any:
    """The Jinja2 environment for textlens templates (autoescaped)."""
    try:
        import jinja2
    except ImportError as exc:  # pragma: no cover - jinja2 is a core dependency
        raise MissingDependencyError("HTML reports need jinja2: pip install jinja2") from exc
    return jinja2.Environment(
        loader=jinja2.PackageLoader("textlens", "report/templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(
    explanations: Sequence[Explanation],
    *,
    title: str = "textlens report",
    summary: Sequence[str] = (),
) -> str:
    """Render explanations to one self-contained HTML page.

    Explanations of the same text (e.g. by several methods) share one section, in order
    of first appearance. ``summary`` lines are shown at the top.
    """
    from .. import __version__

    env = _environment()
    env.filters["num"] = lambda v, d=3: (
        "–" if v is None else f"{v:+.{d}g}" if isinstance(v, float) else v
    )
    sections = []
    for group in _group_by_text(explanations):
        first = group[0]
        sections.append(
            {
                "text": first.text,
                "prediction": first.predicted_label,
                "probabilities": list(zip(first.labels, first.probabilities, strict=True)),
                "truncated": first.truncated_tokens,
                "pair": first.pair is not None,
                "methods": [_method_view(e) for e in group],
            }
        )
    models = sorted({e.model_id for e in explanations})
    return env.get_template("report.html.j2").render(
        title=title,
        summary=list(summary),
        sections=sections,
        models=models,
        version=__version__,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_html(path: str | Path, explanations: Sequence[Explanation], **kwargs: Any) -> Path:
    """Render and write a report; returns the absolute path written."""
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(explanations, **kwargs), encoding="utf-8")
    return target


def escape(text: str) -> str:
    """HTML-escape ``text`` (for callers building snippets outside the template)."""
    return html.escape(text)
