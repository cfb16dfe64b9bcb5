"""HTML for the layer sweep: a layers x words heatmap of the information method's sigma."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _environment


def render_layers_html(
    sweeps: Sequence[Any],
    *,
    png: bytes | None = None,
    title: str = "textlens: information through the layers",
) -> str:
    """One heatmap table per text (rows = layers, columns = words), plus an optional PNG."""
    from .. import __version__
    from ..layers import heatmap_table

    tables = []
    for sweep in sweeps:
        table = heatmap_table(sweep)
        table["cells"] = [
            [
                {"sigma": sigma, "color": f"rgb({255 - 190 * kept:.0f},{255 - 130 * kept:.0f},255)"}
                for sigma, kept in zip(sigma_row, kept_row, strict=True)
            ]
            for sigma_row, kept_row in zip(table["sigma"], table["kept"], strict=True)
        ]
        tables.append(table)
    image = None if png is None else base64.b64encode(png).decode("ascii")
    return (
        _environment()
        .get_template("layers.html.j2")
        .render(
            title=title,
            tables=tables,
            image=image,
            version=__version__,
            model=sweeps[0].model_id if sweeps else "",
            params=sweeps[0].params if sweeps else {},
        )
    )


def write_layers_html(path: str | Path, sweeps: Sequence[Any], **kwargs: Any) -> Path:
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_layers_html(sweeps, **kwargs), encoding="utf-8")
    return target
