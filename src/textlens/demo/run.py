"""``textlens demo``: build (first run) the demo sentiment model, explain held-out tweets,
write a report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..errors import InvalidParameterError

MIN_ACCURACY = 0.80

# Demo settings that keep a cached run short; every explanation records its parameters.
DEMO_PARAMS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"target_delta": 0.01},
    "lime": {"budget": 128, "seed": 0},
    "shap": {"budget": 128, "seed": 0},
    # Logits: starts at the linearised optimum, two windows of corrections.
    "information": {"max_steps": 20, "n_samples": 2},
}


def run_demo(
    *,
    rebuild: bool = False,
    cache_dir: Path | None = None,
    html: str | Path = "textlens-demo.html",
    n_texts: int = 12,
    n_train: int | None = None,
    epochs: int | None = None,
    methods: Sequence[str],
    out: TextIO,
    progress: bool = True,
) -> int:
    """Run the demo; returns the process exit code (0, or 1 if accuracy is under 0.80)."""
    from .. import api
    from ..explainers import make_explainer
    from ..report import write_html
    from .build import build_sentiment_model

    if n_texts < 1:
        raise InvalidParameterError(f"--texts must be >= 1. Got {n_texts}.")
    started = time.perf_counter()
    build_args: dict[str, Any] = {"cache_dir": cache_dir, "rebuild": rebuild, "progress": progress}
    if n_train is not None:
        build_args["n_train"] = n_train
    if epochs is not None:
        build_args["epochs"] = epochs
    info = build_sentiment_model(**build_args)
    source = "cached" if info.from_cache else f"fine-tuned in {info.train_seconds:.0f} s"
    out.write(
        f"Demo model: MiniLM-L6 sentiment classifier ({source}) at {info.path}\n"
        f"Held-out accuracy: {info.accuracy:.3f} on {len(info.heldout)} tweets "
        f"({info.n_train} training tweets, "
        f"{info.epochs} epoch{'' if info.epochs == 1 else 's'})\n\n"
    )
    model = api.load(info.path)
    if n_texts > len(info.heldout):
        out.write(
            f"Asked for {n_texts} texts; the held-out set has {len(info.heldout)}, so all of "
            "them are explained.\n\n"
        )
    texts = [example.text for example in info.heldout[:n_texts]]
    truth = [example.label for example in info.heldout[:n_texts]]
    encoding = model.encode(texts)
    per_text: list[list[Any]] = [[] for _ in texts]
    timings = []
    for method in methods:
        explainer = make_explainer(method, model, **DEMO_PARAMS.get(method, {}))
        t0 = time.perf_counter()
        for i, explanation in enumerate(explainer.explain_encoding(encoding)):
            per_text[i].append(explanation)
        timings.append(f"{method} {1000 * (time.perf_counter() - t0) / len(texts):.0f} ms/text")
    for group, label in zip(per_text, truth, strict=True):
        _summarise(group, label, out)
    summary = [
        f"model: {info.path}",
        f"held-out accuracy {info.accuracy:.3f} on {len(info.heldout)} tweets",
        "time per text: " + ", ".join(timings),
    ]
    path = write_html(
        html,
        [e for group in per_text for e in group],
        title="textlens demo: why the sentiment model decided",
        summary=summary,
    )
    out.write("Time per text: " + ", ".join(timings) + "\n")
    out.write(f"HTML report: {path}\n")
    out.write(f"Done in {time.perf_counter() - started:.1f} s.\n")
    if info.accuracy < MIN_ACCURACY:
        out.write(
            f"WARNING: accuracy {info.accuracy:.3f} is under {MIN_ACCURACY}; "
            "run `textlens demo --rebuild`.\n"
        )
        return 1
    return 0


def _summarise(group: Sequence[Any], truth: str, out: TextIO) -> None:
    first = group[0]
    text = first.text if len(first.text) <= 100 else first.text[:97] + "..."
    p = max(first.probabilities)
    out.write(f"{text}\n  predicted {first.predicted_label} ({p:.2f}), true {truth}\n")
    width = max(len(e.method) for e in group)
    for e in group:
        top = ", ".join(f"{word} {score:+.2g}" for word, score in e.top(3))
        out.write(f"    {e.method.ljust(width)}  {top}\n")
    out.write("\n")
