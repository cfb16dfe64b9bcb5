"""The HTML report of an evaluation leaderboard: table, curves, agreement, checks, advice.

Rendered from ``templates/evaluation.html.j2`` with Jinja2 autoescaping, so method
names, model ids and texts show literally. Plots are inline SVG drawn from numbers
computed here (no CDN, no script): deletion and insertion curves, comprehensiveness
and sufficiency at each removal fraction, and the sanity check's cascade.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError
from . import score_color

if TYPE_CHECKING:  # pragma: no cover
    from ..evaluation.leaderboard import Leaderboard

__all__ = ["render_evaluation_html", "write_evaluation_html"]

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79",
)  # fmt: skip
BASELINE_COLOR = "#888888"

_WIDTH, _HEIGHT = 430, 270
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 12, 14, 46


def render_evaluation_html(
    board: Leaderboard, *, title: str = "textlens: which explanation to trust"
) -> str:
    """Render ``board`` to one self-contained HTML page."""
    try:
        import jinja2
    except ImportError as exc:  # pragma: no cover - jinja2 is a core dependency
        raise MissingDependencyError("HTML reports need jinja2: pip install jinja2") from exc
    from .. import __version__

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("textlens", "report/templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    colors = _colors(board)
    return env.get_template("evaluation.html.j2").render(
        title=title,
        version=__version__,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        caption=board._caption(),
        settings=_settings(board),
        recommendation=list(board.recommendation.lines),
        table=_table(board),
        glossary=[
            {
                "name": f"{m.short_name} {m.arrow}".strip(),
                "description": m.description,
                "reference": m.reference,
            }
            for m in board.columns
        ],
        charts=_charts(board, colors),
        legend=[
            {"name": m, "color": colors[m], "baseline": m in board.baselines} for m in board.methods
        ],
        agreement=_agreement(board),
        sanity=_sanity(board),
        failed=sorted(board.failed.items()),
    )


def write_evaluation_html(path: str | Path, board: Leaderboard, **kwargs: Any) -> Path:
    """Render and write the report; returns the absolute path written."""
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_evaluation_html(board, **kwargs), encoding="utf-8")
    return target


# ---------------------------------------------------------------------- views
def _colors(board: Leaderboard) -> dict[str, str]:
    colors, i = {}, 0
    for method in board.methods:
        if method in board.baselines:
            colors[method] = BASELINE_COLOR
        else:
            colors[method] = PALETTE[i % len(PALETTE)]
            i += 1
    return colors


def _settings(board: Leaderboard) -> list[tuple[str, str]]:
    s = board.settings
    rows = [
        ("model", str(s.get("model_id"))),
        ("texts", str(s.get("n_texts"))),
        ("units / masking", f"{s.get('level')} / {s.get('masking')}"),
        ("explained output", f"target class {s.get('output')}"),
        ("removal fractions", ", ".join(f"{100 * f:g}%" for f in s.get("fractions", []))),
        ("torch threads", str(s.get("threads"))),
    ]
    if s.get("accuracy") is not None:
        rows.append(
            (
                "model accuracy on these texts",
                f"{100 * s['accuracy']:.1f}% (of {s.get('labelled_texts')} labelled)",
            )
        )
    if s.get("unknown_labels"):
        rows.append(
            (
                "labels left out of the accuracy",
                "none of the model's: " + ", ".join(map(repr, s["unknown_labels"])),
            )
        )
    for name, params in (s.get("params") or {}).items():
        if params:
            rows.append((f"{name} parameters", ", ".join(f"{k}={v}" for k, v in params.items())))
    return rows


def _table(board: Leaderboard) -> dict[str, Any]:
    header, cells, bold = board.table()
    columns = [{"text": header[0], "title": ""}] + [
        {"text": text, "title": m.description}
        for text, m in zip(header[1:], board.columns, strict=True)
    ]
    rows = []
    for method, row, marks in zip(board.methods, cells, bold, strict=True):
        rows.append(
            {
                "baseline": method in board.baselines,
                "cells": [
                    {"text": c, "bold": b and c != "–"} for c, b in zip(row, marks, strict=True)
                ],
            }
        )
    return {"columns": columns, "rows": rows}


def _charts(board: Leaderboard, colors: dict[str, str]) -> list[dict[str, Any]]:
    faith = board.faithfulness
    charts = []
    for key, title, ylabel in (
        (
            "deletion_curve",
            "Deletion: most important words removed first (lower is better)",
            f"target {board.settings.get('output', 'probability')}",
        ),
        (
            "insertion_curve",
            "Insertion: most important words put back first (higher is better)",
            f"target {board.settings.get('output', 'probability')}",
        ),
    ):
        series = [
            _series(m, colors[m], faith[m].curve_grid, getattr(faith[m], key), m in board.baselines)
            for m in board.methods
            if m in faith
        ]
        charts.append(
            _line_chart(
                title,
                "fraction of words",
                ylabel,
                series,
                y_range=(0.0, 1.0),
                x_range=(0.0, 1.0),
                percent_x=True,
            )
        )
    for key, title, ylabel in (
        (
            "comprehensiveness",
            "Comprehensiveness at each removal fraction (higher is better)",
            "p(x) - p(x without top k%)",
        ),
        (
            "sufficiency",
            "Sufficiency at each removal fraction (lower is better)",
            "p(x) - p(only top k%)",
        ),
    ):
        series = []
        for m in board.methods:
            if m not in faith:
                continue
            result = getattr(faith[m], key)
            at = (result.details or {}).get("at", [])
            series.append(_series(m, colors[m], list(faith[m].fractions), at, m in board.baselines))
        charts.append(_line_chart(title, "fraction of words (k%)", ylabel, series, percent_x=True))
    return charts


def _series(
    name: str, color: str, xs: Sequence[float], ys: Sequence[float], baseline: bool
) -> dict[str, Any]:
    return {"name": name, "color": color, "xs": list(xs), "ys": list(ys), "dashed": baseline}


def _agreement(board: Leaderboard) -> list[dict[str, Any]]:
    result = board.agreement
    if result is None or len(result.methods) < 2:
        return []
    from ..evaluation.metrics import get_metric

    out = []
    for name in ("spearman", "kendall", "top_k_overlap"):
        matrix = result.matrices[name]
        rows = []
        for i, method in enumerate(result.methods):
            cells = []
            for j in range(len(result.methods)):
                value = float(matrix[i, j])
                finite = math.isfinite(value)
                cells.append(
                    {
                        "text": f"{value:.2f}" if finite else "–",
                        "color": score_color(value, 1.0, True) if finite else "#fff",
                    }
                )
            rows.append({"method": method, "cells": cells})
        title = get_metric(name).short_name + (
            f" (k = {result.k})" if name == "top_k_overlap" else ""
        )
        out.append({"title": title, "methods": list(result.methods), "rows": rows})
    return out


def _sanity(board: Leaderboard) -> dict[str, Any] | None:
    if not board.sanity:
        return None
    colors = _colors(board)
    results = list(board.sanity.values())
    stages = list(results[0].stages)
    series = []
    rows = []
    for result in results:
        values = [r.value for r in result.similarity]
        if list(result.stages) == stages:
            series.append(
                _series(
                    result.method,
                    colors.get(result.method, BASELINE_COLOR),
                    list(range(len(stages))),
                    values,
                    False,
                )
            )
        rows.append(
            {
                "method": result.method,
                "cells": [f"{v:.2f}" if math.isfinite(v) else "–" for v in values],
                "flagged": result.flagged,
                "message": result.message,
            }
        )
    chart = _line_chart(
        "Rank correlation with the original explanations as the model is randomised from the top",
        "randomised down to",
        "Spearman ρ of |scores|",
        series,
        y_range=(-0.2, 1.0),
        x_labels=stages,
    )
    return {"stages": stages, "rows": rows, "chart": chart, "threshold": results[0].threshold}


# ---------------------------------------------------------------------- SVG geometry
def _line_chart(
    title: str,
    xlabel: str,
    ylabel: str,
    series: list[dict[str, Any]],
    *,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    percent_x: bool = False,
    x_labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Geometry of a line chart: point strings, ticks and labels, all plain numbers/text."""
    xs = [x for s in series for x, y in zip(s["xs"], s["ys"], strict=False) if _finite(x, y)]
    ys = [y for s in series for x, y in zip(s["xs"], s["ys"], strict=False) if _finite(x, y)]
    if x_labels is not None:
        x_lo, x_hi = 0.0, float(max(len(x_labels) - 1, 1))
    else:
        x_lo, x_hi = x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    if y_range is not None:
        y_lo, y_hi = (
            min(y_range[0], min(ys, default=y_range[0])),
            max(y_range[1], max(ys, default=y_range[1])),
        )
    else:
        y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        y_lo, y_hi = min(y_lo, 0.0), max(y_hi, 0.0)
    if math.isclose(x_lo, x_hi):
        x_hi = x_lo + 1.0
    if math.isclose(y_lo, y_hi):
        y_hi = y_lo + 1.0
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return _TOP + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h

    lines = []
    for s in series:
        pts = [(px(x), py(y)) for x, y in zip(s["xs"], s["ys"], strict=False) if _finite(x, y)]
        lines.append(
            {
                "name": s["name"],
                "color": s["color"],
                "dashed": s["dashed"],
                "points": " ".join(f"{a:.1f},{b:.1f}" for a, b in pts),
                "markers": [{"x": round(a, 1), "y": round(b, 1)} for a, b in pts]
                if len(pts) <= 25
                else [],
            }
        )
    if x_labels is not None:
        x_ticks = [{"x": round(px(i), 1), "label": label} for i, label in enumerate(x_labels)]
    else:
        x_ticks = [
            {"x": round(px(v), 1), "label": f"{100 * v:g}%" if percent_x else f"{v:g}"}
            for v in _nice_ticks(x_lo, x_hi)
        ]
    y_ticks = [{"y": round(py(v), 1), "label": f"{v:g}"} for v in _nice_ticks(y_lo, y_hi)]
    zero = py(0.0) if y_lo < 0 < y_hi else None
    return {
        "title": title,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "width": _WIDTH,
        "height": _HEIGHT,
        "left": _LEFT,
        "top": _TOP,
        "right": _WIDTH - _RIGHT,
        "bottom": _HEIGHT - _BOTTOM,
        "plot_w": plot_w,
        "plot_h": plot_h,
        "mid_x": round(_LEFT + plot_w / 2, 1),
        "mid_y": round(_TOP + plot_h / 2, 1),
        "lines": lines,
        "x_ticks": x_ticks,
        "y_ticks": y_ticks,
        "zero": None if zero is None else round(zero, 1),
        "rotate_x": x_labels is not None,
    }


def _finite(x: float, y: float) -> bool:
    return (
        isinstance(x, (int, float))
        and isinstance(y, (int, float))
        and math.isfinite(x)
        and math.isfinite(y)
    )


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = hi - lo
    raw = span / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = start
    while value <= hi + 1e-9 * span:
        ticks.append(round(value, 10))
        value += step
    return ticks
