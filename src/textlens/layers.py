"""Layer sweep: how much of each word's information reaches every layer of the model.

For each text, the information explainer (:class:`~textlens.explainers.information.InformationLoss`,
Guan et al., ICML 2019, https://proceedings.mlr.press/v97/guan19a.html) is fitted once
per layer, with ``Phi`` = that layer's output. The result is a layers x words table of
noise levels sigma: where a word's sigma grows towards the bound, its information has
faded from that layer.

>>> import textlens as tl
>>> from textlens.layers import layer_sweep, heatmap_png
>>> model = tl.load("demo")
>>> [sweep] = layer_sweep(model, ["the crew were wonderful"])
>>> sweep.to_dict()["word_sigma"]          # [layers][words]
>>> open("layers.png", "wb").write(heatmap_png([sweep]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidParameterError, MissingDependencyError
from .explainers.information import InformationLoss, InformationResult, check_layer
from .model import Encoding, ModelAdapter, check_model, check_texts

__all__ = ["LayerSweep", "heatmap_png", "heatmap_table", "layer_sweep"]


@dataclass(frozen=True)
class LayerSweep:
    """The noise each word can take, layer by layer, for one text.

    Attributes
    ----------
    text : str
    model_id : str
    layers : tuple of int
        The swept layers (1-based), in order: the rows of every table below.
    tokens : tuple of str
        The model's tokens (special tokens included).
    words : tuple of str
        The words of the text (special tokens excluded): the columns.
    word_tokens : tuple of tuple of int
        The token indices of each word.
    sigma : tuple of tuple of (float or None)
        ``[layers][tokens]`` fitted sigma; None for tokens that got no noise.
    word_sigma : tuple of tuple of float
        ``[layers][words]`` a word's sigma: the geometric mean over its tokens (the
        sigma of one token with the same information loss per token).
    word_scores : tuple of tuple of float
        ``[layers][words]`` information kept, ``sum over the word's tokens of
        log(scale / sigma)`` (the ``information`` method's word scores).
    scale : float
        The bound of sigma (a word at the bound keeps nothing of its information).
    iterations, converged, loss : tuple
        Per layer, from the fit.
    positions : str
        'all' (every position of each layer) or 'cls'.
    params : dict
        The explainer parameters used.
    """

    text: str
    model_id: str
    layers: tuple[int, ...]
    tokens: tuple[str, ...]
    words: tuple[str, ...]
    word_tokens: tuple[tuple[int, ...], ...]
    sigma: tuple[tuple[float | None, ...], ...]
    word_sigma: tuple[tuple[float, ...], ...]
    word_scores: tuple[tuple[float, ...], ...]
    scale: float
    iterations: tuple[int, ...]
    converged: tuple[bool, ...]
    loss: tuple[float, ...]
    positions: str
    params: dict[str, Any]

    @property
    def shape(self) -> tuple[int, int]:
        """``(layers, words)``."""
        return len(self.layers), len(self.words)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (every value a plain list, number, string or None)."""
        return {
            "text": self.text,
            "model_id": self.model_id,
            "method": InformationLoss.name,
            "reference": InformationLoss.reference,
            "positions": self.positions,
            "params": dict(self.params),
            "scale": self.scale,
            "layers": list(self.layers),
            "tokens": list(self.tokens),
            "words": list(self.words),
            "word_tokens": [list(t) for t in self.word_tokens],
            "sigma": [list(row) for row in self.sigma],
            "word_sigma": [list(row) for row in self.word_sigma],
            "word_scores": [list(row) for row in self.word_scores],
            "iterations": list(self.iterations),
            "converged": list(self.converged),
            "loss": list(self.loss),
        }


def layer_sweep(
    model: ModelAdapter,
    texts: Sequence[str | tuple[str, str]],
    *,
    layers: Sequence[int] | None = None,
    positions: str = "all",
    **params: Any,
) -> list[LayerSweep]:
    """Fit the information explainer at every layer (or the given ones) for each text.

    Parameters
    ----------
    model : ModelAdapter
    texts : list of str or of (str, str) pairs
        One or a few texts (or pairs of texts); all are fitted together at each layer.
    layers : list of int, optional
        1-based layers to sweep; default every layer ``1..num_layers``.
    positions : {'all', 'cls'}
        ``Phi`` = every position of the layer output, or its [CLS] position.
    **params
        Other :class:`~textlens.explainers.information.InformationLoss` parameters
        (``lam``, ``n_samples``, ``seed``, ``cache_dir``...).

    Returns
    -------
    list of LayerSweep
        One per text, in order.
    """
    check_model(model, "layer_sweep()")
    texts = check_texts(texts)
    if "layer" in params:
        raise InvalidParameterError("layer_sweep() takes 'layers' (a list), not 'layer'.")
    chosen = list(range(1, model.num_layers + 1)) if layers is None else list(layers)
    if not chosen:
        raise InvalidParameterError(
            f"No layers to sweep; give some of 1..{model.num_layers} or None for all."
        )
    for layer in chosen:
        if (
            isinstance(layer, bool)
            or not isinstance(layer, int)
            or not 1 <= layer <= (model.num_layers)
        ):
            raise InvalidParameterError(
                f"layer_sweep() sweeps numbered layers 1..{model.num_layers}; got {layer!r}. "
                "For the pooled output or the logits, explain with the information method "
                "(textlens explain MODEL TEXT -m information --layer pooled)."
            )
        check_layer(model, layer, owner="layer_sweep")
    encoding = model.encode(texts)
    fits: list[list[InformationResult]] = []
    explainer: InformationLoss | None = None
    for layer in chosen:
        explainer = InformationLoss(model, layer=layer, positions=positions, **params)
        fits.append(explainer.fit(encoding))
    assert explainer is not None
    recorded = {k: v for k, v in explainer.get_params().items() if k != "layer"}
    return [
        _sweep(model, encoding, i, chosen, [f[i] for f in fits], positions, recorded)
        for i in range(len(texts))
    ]


def _sweep(
    model: ModelAdapter,
    encoding: Encoding,
    i: int,
    layers: list[int],
    fits: list[InformationResult],
    positions: str,
    params: dict[str, Any],
) -> LayerSweep:
    groups: dict[int, list[int]] = {}
    for index, word in enumerate(encoding.word_ids[i]):
        if word is not None and not encoding.special[i][index]:
            groups.setdefault(word, []).append(index)
    word_tokens = tuple(tuple(t) for _, t in sorted(groups.items()))
    text = encoding.texts[i]
    offsets = encoding.offsets[i]
    words = tuple(
        text[min(offsets[t][0] for t in ts) : max(offsets[t][1] for t in ts)] for ts in word_tokens
    )
    scale = fits[0].scale
    word_sigma = []
    word_scores = []
    for fit in fits:
        log_sigma = np.log(fit.sigma)
        kept = fit.scores
        word_sigma.append(
            tuple(float(math.exp(np.mean(log_sigma[list(ts)]))) for ts in word_tokens)
        )
        word_scores.append(tuple(float(kept[list(ts)].sum()) for ts in word_tokens))
    return LayerSweep(
        text=text,
        model_id=model.model_id,
        layers=tuple(layers),
        tokens=tuple(encoding.tokens[i]),
        words=words,
        word_tokens=word_tokens,
        sigma=tuple(tuple(None if math.isnan(v) else float(v) for v in fit.sigma) for fit in fits),
        word_sigma=tuple(word_sigma),
        word_scores=tuple(word_scores),
        scale=scale,
        iterations=tuple(f.iterations for f in fits),
        converged=tuple(f.converged for f in fits),
        loss=tuple(f.loss for f in fits),
        positions=positions,
        params=params,
    )


# ---------------------------------------------------------------------------- views
def heatmap_table(sweep: LayerSweep) -> dict[str, Any]:
    """The heatmap as data, for an HTML table: rows = layers, columns = words.

    Returns
    -------
    dict
        ``rows`` (layer labels), ``columns`` (words), ``sigma`` ``[rows][columns]``,
        ``kept`` ``[rows][columns]`` in [0, 1] (``1 - log(sigma)/log(scale)`` rescaled so
        0 = at the bound, 1 = the least noise of the table; use it as colour
        intensity), and ``scale``.
    """
    values = np.array(sweep.word_sigma, dtype=np.float64)
    kept = _kept(values, sweep.scale)
    return {
        "rows": [f"layer {layer}" for layer in sweep.layers],
        "columns": list(sweep.words),
        "sigma": values.tolist(),
        "kept": kept.tolist(),
        "scale": sweep.scale,
        "text": sweep.text,
    }


def _kept(word_sigma: np.ndarray, scale: float) -> np.ndarray:
    """Colour intensity: 0 where sigma is at the bound, 1 at the smallest sigma shown."""
    info = np.log(scale) - np.log(word_sigma)
    top = float(np.nanmax(info)) if info.size else 0.0
    return np.clip(info / top, 0.0, 1.0) if top > 0 else np.zeros_like(info)


def heatmap_png(sweeps: Sequence[LayerSweep], *, dpi: int = 120) -> bytes:
    """A PNG of layers x words heatmaps of sigma, one panel per text, side by side.

    Darker cells keep more of the word's information (smaller sigma); each cell is
    annotated with sigma / scale. Needs matplotlib (``pip install 'textlens[plots]'``).
    """
    if not sweeps:
        raise InvalidParameterError("heatmap_png() needs at least one LayerSweep.")
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "Drawing the layer heatmap needs matplotlib: pip install 'textlens[plots]'."
        ) from exc
    import io

    widths = [max(len(s.words), 2) for s in sweeps]
    height = max(len(s.layers) for s in sweeps)
    fig = Figure(figsize=(min(0.6 * sum(widths) + 1.5 * len(sweeps), 40), 0.45 * height + 2.2))
    axes = fig.subplots(1, len(sweeps), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    image = None
    for ax, sweep in zip(axes, sweeps, strict=True):
        relative = np.array(sweep.word_sigma, dtype=np.float64) / sweep.scale
        image = ax.imshow(relative, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(  # parse_math=False: a "$" in a text is a dollar, not mathtext
            range(len(sweep.words)),
            labels=list(sweep.words),
            rotation=60,
            ha="right",
            fontsize=8,
            parse_math=False,
        )
        ax.set_yticks(
            range(len(sweep.layers)), labels=[f"layer {n}" for n in sweep.layers], fontsize=8
        )
        for (row, col), value in np.ndenumerate(relative):
            ax.text(
                col,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if value < 0.5 else "black",
            )
        title = sweep.text if len(sweep.text) <= 60 else sweep.text[:57] + "..."
        ax.set_title(title, fontsize=9, parse_math=False)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="sigma / scale (1 = information lost)", shrink=0.8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()
