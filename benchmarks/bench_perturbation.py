"""Benchmark textlens's ``shap`` and ``lime`` against the shap and lime libraries.

On the demo model, for short texts (at most 12 features, so exact Shapley values can be
enumerated) and texts of about 20, 60 and 200 tokens, in one run:

* **SHAP**: ours (``textlens`` ``shap``, default masking ``'mask'``, target probability)
  at budgets of 1x-16x the number of word features, against
  ``shap.Explainer(f, shap.maskers.Text(tokenizer, mask_token="[MASK]",
  collapse_mask_token=False))`` -- the Partition explainer -- at several ``max_evals``.
  Partition computes **Owen values** over shap's token hierarchy, not Shapley values, so
  part of its error is bias that more evaluations do not remove. The masker keeps one
  ``[MASK]`` per masked token (``collapse_mask_token=False``) so that both explain the same
  game; shap's token values are summed over each word. Error is measured against the
  exact Shapley values (short texts) or a large-budget estimate of ours (longer texts;
  its own standard error is reported).
* **LIME**: ours (``textlens`` ``lime``, ``masking='delete'`` to remove words as lime
  does) against ``lime.lime_text.LimeTextExplainer`` (defaults: bag of words, kernel
  width 25, ridge) at several ``num_samples``. LIME estimates a different quantity than
  SHAP, and the two differ slightly in what a feature is (lime: word types from
  ``\\W+``; ours: the tokenizer's words), so each is compared with **its own converged
  answer**: lime with many samples, ours with a large budget (exact when ``2**n`` fits).
* For every method and setting: CPU seconds and wall seconds per text, model evaluations
  per text (inputs actually sent through the model) and the forward passes that carried
  them, mean relative L2 error to the reference, and the peak extra memory (RSS, sampled
  by a thread with psutil; with CUDA also torch's peak GPU allocation).
* Ours runs at each of ``--precisions``: float32, and bfloat16 (autocast; about half the
  cost of a model call on CPUs with native bfloat16), whose error is measured against
  the same float32 references, so its rounding counts against it.
* Ratios: for each library setting, the time of our cheapest setting whose mean
  error is at most the library's (no interpolation: a setting we ran).

The libraries get a plain batched classifier ``f(list of strings)``: 64 strings per
forward pass, in the order given, padded to the longest of the chunk (what a user
would write; lime itself passes all samples at once). Model evaluations dominate
everything, so on a CPU the comparison is in CPU seconds of this process with
``torch.set_num_threads(--threads)``: on a shared machine, wall time also counts the
other users' load (both are reported). ``--device cuda`` runs every model (ours and the
libraries') on a GPU and compares wall seconds (``--clock``), since the process then
mostly waits for the device; how many inputs each forward pass carries matters there.

Run ``python benchmarks/bench_perturbation.py --help``. Results go to
``benchmarks/results/perturbation.{json,md,png}``. Library runs (per device) and
references are cached (``--cache``), so a re-run after a change to textlens only
re-times textlens; ``--retime-libraries`` times the libraries again in the same run.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textlens.errors import ModelLoadError
from textlens.explainers.perturbation import Lime, Shap
from textlens.explainers.perturbation.engine import PRECISIONS
from textlens.features import CharSpans, feature_spans
from textlens.model import ModelAdapter

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GROUPS = ("short", "20", "60", "200")
REFERENCE_SEED = 12345
WORD_RUNS = re.compile(r"\w+")


def word_runs(text: str) -> list[tuple[int, int]]:
    """lime's features: the runs of word characters (lime splits on ``\\W+``)."""
    return [m.span() for m in WORD_RUNS.finditer(text)]


#: Our LIME's features in this benchmark: the same words as lime's (punctuation is kept
#: as context, as lime keeps it), so both fit a surrogate over the same units.
LIME_FEATURES = CharSpans(word_runs, name="word_runs")


@dataclass
class GroupConfig:
    """What is run on one group of texts."""

    n_texts: int
    shap_multiples: tuple[float, ...]  # our shap budgets, in units of n_features (+2)
    lime_multiples: tuple[float, ...]  # our lime budgets, in units of n_features (+1)
    shap_max_evals: tuple[int, ...]  # shap library settings
    lime_samples: tuple[int, ...]  # lime library settings
    shap_reference: int  # budget of our shap reference (longer texts)
    lime_reference: int  # budget of our lime reference
    lime_library_reference: int  # num_samples of lime's own reference


def full_config(n_texts: int, short_texts: int) -> dict[str, GroupConfig]:
    """The issue's configuration: 60 texts per group, 20,000-evaluation references."""
    common = {"shap_max_evals": (100, 200, 500, 1000), "lime_samples": (250, 500, 1000, 2000, 5000)}
    return {
        "short": GroupConfig(
            short_texts,
            (1, 2, 3, 4, 6, 8),
            (1, 2, 4, 8, 16, 32),
            shap_reference=0,
            lime_reference=20000,
            lime_library_reference=20000,
            **common,
        ),
        "20": GroupConfig(
            n_texts,
            (1, 2, 3, 4, 6, 8, 12),
            (1, 2, 4, 8, 16, 32),
            shap_reference=20000,
            lime_reference=20000,
            lime_library_reference=20000,
            **common,
        ),
        "60": GroupConfig(
            n_texts,
            (0.5, 1, 2, 3, 4, 6, 8),
            (1, 2, 4, 8, 16),
            shap_reference=20000,
            lime_reference=20000,
            lime_library_reference=20000,
            **common,
        ),
        "200": GroupConfig(
            n_texts,
            (0.25, 0.5, 1, 2, 3, 4),
            (1, 2, 4, 8),
            shap_reference=20000,
            lime_reference=20000,
            lime_library_reference=20000,
            **common,
        ),
    }


def reduced_config() -> dict[str, GroupConfig]:
    """What fits in a few hours of a 2-core machine shared with other users (the run in
    the README): 8/4/2/1 texts, smaller references, lime's 5,000 samples on short texts."""
    return {
        "short": GroupConfig(
            8,
            (1, 2, 3, 4, 6, 8),
            (1, 2, 4, 8, 16, 32),
            (100, 200, 500),
            (250, 500, 1000, 2000, 5000),
            shap_reference=0,
            lime_reference=4096,
            lime_library_reference=20000,
        ),
        "20": GroupConfig(
            4,
            (1, 2, 3, 4, 6, 8, 12),
            (1, 2, 4, 8, 16, 32),
            (100, 200, 500),
            (250, 500, 1000, 2000, 5000),
            shap_reference=4096,
            lime_reference=4096,
            lime_library_reference=10000,
        ),
        "60": GroupConfig(
            2,
            (0.5, 1, 2, 3, 4, 6),
            (1, 2, 4, 8, 16),
            (100, 200, 500),
            (250, 500, 1000, 2000),
            shap_reference=2048,
            lime_reference=2048,
            lime_library_reference=4000,
        ),
        "200": GroupConfig(
            1,
            (0.25, 0.5, 1, 2, 3, 4),
            (1, 2, 4, 8),
            (100, 200, 500),
            (250, 500, 1000),
            shap_reference=4096,
            lime_reference=4096,
            lime_library_reference=4000,
        ),
    }


# --------------------------------------------------------------------------- texts
def load_model(spec: str, device: str = "cpu") -> tuple[ModelAdapter, list[str], str]:
    """The demo model (built and cached on first use) and its held-out tweets."""
    if spec != "demo":
        raise SystemExit("Only --model demo is supported (the issue's benchmark model).")
    from textlens.demo.build import build_sentiment_model

    info = build_sentiment_model()
    adapter = ModelAdapter.from_pretrained(info.path, device=device)
    return adapter, [e.text for e in info.heldout], f"demo ({info.path})"


def n_features(adapter: ModelAdapter, text: str) -> int:
    return len(feature_spans(adapter.encode([text]), 0))


def build_texts(adapter: ModelAdapter, tweets: Sequence[str], group: str, count: int) -> list[str]:
    """``count`` texts of the group: short tweets, or tweets joined to ~N tokens."""
    if group == "short":
        picked = [t for t in tweets if 4 <= n_features(adapter, t) <= 12][:count]
    else:
        target = int(group)
        low, high = int(target * 0.85), int(target * 1.15)
        picked, current, used = [], "", set()
        for j, tweet in enumerate(tweets):
            if j in used:
                continue
            joined = f"{current} {tweet}".strip()
            length = len(adapter.encode([joined]).tokens[0]) - 2
            if length > high:
                continue
            current = joined
            used.add(j)
            if length >= low:
                picked.append(current)
                current = ""
                if len(picked) == count:
                    break
    if len(picked) < count:
        raise SystemExit(f"Only {len(picked)} texts could be built for group {group}.")
    return picked


# --------------------------------------------------------------------------- measuring
class PeakMemory:
    """Peak RSS growth (MiB) over a block, sampled every 2 ms by a thread."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def measured(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Run ``fn``; return its result and CPU seconds, wall seconds, peak extra RSS.

    With CUDA, also the peak GPU memory allocated by torch during the run (MiB).
    """
    gpu = torch.cuda.is_available()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    with PeakMemory() as memory:
        _synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        _synchronize()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    stats = {"cpu_s": cpu, "wall_s": wall, "peak_extra_rss_mib": memory.extra_mib}
    if gpu:
        stats["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result, stats


def _synchronize() -> None:
    """Wait for queued GPU work, so that wall time covers it (no-op without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Classifier:
    """``f(list of strings) -> probabilities``, 64 strings per forward pass.

    Counts the rows it is given (model evaluations) and the forward passes it makes.
    """

    def __init__(
        self, adapter: ModelAdapter, chunk: int = 64, memo: dict[str, np.ndarray] | None = None
    ):
        self.adapter = adapter
        self.chunk = chunk
        self.memo = memo
        self.rows = 0
        self.calls = 0

    def __call__(self, strings: Sequence[str]) -> np.ndarray:
        strings = [str(s) for s in strings]
        if self.memo is None:
            return self._run(strings)
        todo = sorted({s for s in strings if s not in self.memo})
        for s, p in zip(todo, self._run(todo) if todo else [], strict=True):
            self.memo[s] = p
        return np.stack([self.memo[s] for s in strings])

    def _run(self, strings: list[str]) -> np.ndarray:
        tokenizer, model = self.adapter.tokenizer, self.adapter.model
        out = []
        with torch.inference_mode():
            for start in range(0, len(strings), self.chunk):
                batch = tokenizer(
                    strings[start : start + self.chunk],
                    padding=True,
                    truncation=True,
                    max_length=self.adapter.max_length,
                    return_tensors="pt",
                ).to(self.adapter.device)
                out.append(torch.softmax(model(**batch).logits.float(), -1).cpu().numpy())
                self.calls += 1
        self.rows += len(strings)
        return np.concatenate(out).astype(np.float64)


def relative_error(estimate: Sequence[float], reference: Sequence[float]) -> float:
    a, b = np.asarray(estimate, float), np.asarray(reference, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return None
    value = spearmanr(a, b).statistic
    return None if not np.isfinite(value) else float(value)


# --------------------------------------------------------------------------- one text
def ours(cls: type, adapter: ModelAdapter, text: str, target: int, **params: Any) -> dict[str, Any]:
    explainer = cls(adapter, **params)
    [e], stats = measured(lambda: explainer.explain([text], target=target))
    features = e.quality["features"]
    return {
        "values": [f["score"] for f in features],
        "stderr": [f.get("stderr", 0.0) for f in features],
        "evals": explainer.engine.model_evaluations + 1,  # + the prediction itself
        "model_calls": explainer.engine.model_calls + 1,
        "exact": bool(e.quality.get("exact", False)),
        **stats,
    }


def shap_library(
    adapter: ModelAdapter, text: str, target: int, max_evals: int, token_feature: np.ndarray
) -> dict[str, Any]:
    import shap

    f = Classifier(adapter)
    masker = shap.maskers.Text(
        adapter.tokenizer, mask_token=adapter.tokenizer.mask_token, collapse_mask_token=False
    )
    explainer = shap.Explainer(f, masker)
    result, stats = measured(lambda: explainer([text], max_evals=max_evals, silent=True))
    token_values = np.asarray(result.values[0])[:, target]
    if len(token_values) != len(token_feature):
        raise RuntimeError(
            f"shap returned {len(token_values)} token values for {len(token_feature)} tokens"
        )
    values = np.zeros(int(token_feature.max()) + 1)
    np.add.at(values, token_feature[token_feature >= 0], token_values[token_feature >= 0])
    return {"values": values.tolist(), "evals": f.rows, "model_calls": f.calls, **stats}


def lime_library(
    adapter: ModelAdapter,
    text: str,
    target: int,
    num_samples: int,
    seed: int,
    memo: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    from lime.lime_text import LimeTextExplainer

    f = Classifier(adapter, memo=memo)
    explainer = LimeTextExplainer(class_names=adapter.labels, random_state=seed)
    result, stats = measured(
        lambda: explainer.explain_instance(
            text, f, labels=(target,), num_features=100_000, num_samples=num_samples
        )
    )
    words = result.domain_mapper.indexed_string.inverse_vocab
    values = np.zeros(len(words))
    for index, weight in result.as_map()[target]:
        values[index] = weight
    return {
        "values": values.tolist(),
        "words": list(words),
        "evals": f.rows,
        "model_calls": f.calls,
        **stats,
    }


def warm_up(adapter: ModelAdapter) -> None:
    """One untimed run of everything (imports, numba compilation, allocator warm-up)."""
    text = "a quick warm up of every method here"
    target = int(adapter.predict_proba(adapter.encode([text]))[0].argmax())
    token_feature = np.full(len(adapter.encode([text]).tokens[0]), -1)
    for f, span in enumerate(feature_spans(adapter.encode([text]), 0)):
        token_feature[list(span.tokens)] = f
    shap_library(adapter, text, target, 100, token_feature)
    lime_library(adapter, text, target, 100, 0)
    ours(Shap, adapter, text, target, budget=64)
    ours(Lime, adapter, text, target, budget=64, masking="delete", features=LIME_FEATURES)


# --------------------------------------------------------------------------- a group
def run_group(
    adapter: ModelAdapter,
    group: str,
    texts: list[str],
    config: GroupConfig,
    cache: dict[str, Any],
    save: Callable[[], None],
    log: Callable[[str], None],
    precisions: Sequence[str] = ("float32",),
    retime_libraries: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    # timed library runs are cached per device (a CPU timing says nothing about a GPU)
    where = "" if device == "cpu" else f"@{device}"
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {"shap_library": {}, "lime_library": {}}
    for precision in precisions:
        rows[ours_name("shap", precision)] = {}
        rows[ours_name("lime", precision)] = {}
    references: dict[str, list[dict[str, Any]]] = {"shap": [], "lime_ours": [], "lime_library": []}
    agreement: dict[str, list[float]] = {
        "shap_library_vs_shapley": [],
        "lime_library_vs_lime_ours": [],
    }
    for index, text in enumerate(texts):
        key = hashlib.sha1(text.encode()).hexdigest()[:16]
        encoding = adapter.encode([text])
        spans = feature_spans(encoding, 0)
        n = len(spans)
        target = int(adapter.predict_proba(encoding)[0].argmax())
        token_feature = np.full(len(encoding.tokens[0]), -1)
        for f, span in enumerate(spans):
            token_feature[list(span.tokens)] = f
        log(
            f"[{group}] text {index + 1}/{len(texts)}: {n} features, "
            f"{len(encoding.tokens[0])} tokens"
        )
        lime_spans = feature_spans(encoding, 0, LIME_FEATURES)
        n_lime = len(lime_spans)

        def cached(
            name: str,
            compute: Callable[[], dict[str, Any]],
            key: str = key,
            fresh: bool = False,
        ) -> dict[str, Any]:
            full = f"{name}|{key}"
            if fresh or full not in cache:
                cache[full] = compute()
                save()
            return cache[full]

        # references (cached; never timed against anything)
        shap_budget = (
            2**n
            if config.shap_reference == 0 or 2**n <= config.shap_reference
            else config.shap_reference
        )
        shap_ref = cached(
            f"shap_ref_{shap_budget}",
            functools.partial(
                ours, Shap, adapter, text, target, budget=shap_budget, seed=REFERENCE_SEED
            ),
        )
        lime_budget = (
            min(2**n_lime, config.lime_reference) if n_lime <= 30 else config.lime_reference
        )
        lime_ref = cached(
            f"lime_ref_{lime_budget}",
            functools.partial(
                ours,
                Lime,
                adapter,
                text,
                target,
                budget=lime_budget,
                seed=REFERENCE_SEED,
                masking="delete",
                features=LIME_FEATURES,
            ),
        )
        lime_lib_ref = cached(
            f"lime_lib_ref_{config.lime_library_reference}",
            functools.partial(
                lime_library,
                adapter,
                text,
                target,
                config.lime_library_reference,
                REFERENCE_SEED,
                {},
            ),
        )
        references["shap"].append(
            {
                "exact": shap_ref["exact"],
                "evals": shap_ref["evals"],
                "relative_stderr": _relative_norm(shap_ref["stderr"], shap_ref["values"]),
            }
        )
        references["lime_ours"].append(
            {
                "exact": lime_ref["exact"],
                "evals": lime_ref["evals"],
                "relative_stderr": _relative_norm(lime_ref["stderr"], lime_ref["values"]),
            }
        )
        references["lime_library"].append({"num_samples": config.lime_library_reference})

        # the libraries (cached)
        for max_evals in config.shap_max_evals:
            r = cached(
                f"shap_lib_{max_evals}{where}",
                functools.partial(shap_library, adapter, text, target, max_evals, token_feature),
                fresh=retime_libraries,
            )
            _add(rows["shap_library"], str(max_evals), r, shap_ref["values"])
            if max_evals == max(config.shap_max_evals):
                agreement["shap_library_vs_shapley"].append(
                    spearman(r["values"], shap_ref["values"])
                )
        for samples in config.lime_samples:
            r = cached(
                f"lime_lib_{samples}{where}",
                functools.partial(lime_library, adapter, text, target, samples, 0),
                fresh=retime_libraries,
            )
            _add(rows["lime_library"], str(samples), r, lime_lib_ref["values"])
        agreement["lime_library_vs_lime_ours"].append(
            _lime_agreement(lime_lib_ref, lime_ref, lime_spans)
        )

        # ours (always re-timed), at each precision
        for precision in precisions:
            _run_ours(adapter, text, target, n, n_lime, config, precision, rows, shap_ref, lime_ref)
    return {
        "n_texts": len(texts),
        "features_mean": float(np.mean([n_features(adapter, t) for t in texts])),
        "tokens_mean": float(np.mean([len(adapter.encode([t]).tokens[0]) for t in texts])),
        "references": {k: _summarise_refs(v) for k, v in references.items()},
        "agreement": {k: _mean([x for x in v if x is not None]) for k, v in agreement.items()},
        "curves": {
            name: {setting: _summarise(items) for setting, items in settings.items()}
            for name, settings in rows.items()
        },
    }


def ours_name(method: str, precision: str) -> str:
    """Row name of our ``method`` at ``precision``: 'shap_ours', 'lime_ours_bf16'..."""
    return f"{method}_ours" + ("" if precision == "float32" else "_bf16")


def _run_ours(
    adapter: ModelAdapter,
    text: str,
    target: int,
    n: int,
    n_lime: int,
    config: GroupConfig,
    precision: str,
    rows: dict[str, dict[str, list[dict[str, Any]]]],
    shap_ref: dict[str, Any],
    lime_ref: dict[str, Any],
) -> None:
    for multiple in config.shap_multiples:
        budget = max(round(multiple * n) + 2, 4)
        r = ours(Shap, adapter, text, target, budget=budget, seed=0, precision=precision)
        _add(rows[ours_name("shap", precision)], f"{multiple}n", r, shap_ref["values"], stderr=True)
    for multiple in (*config.lime_multiples, "exact"):
        if multiple == "exact":
            if 2**n_lime > 4096:
                continue
            budget = 2**n_lime
        else:
            budget = max(round(multiple * n_lime) + 1, 4)
        r = ours(
            Lime,
            adapter,
            text,
            target,
            budget=budget,
            seed=0,
            masking="delete",
            features=LIME_FEATURES,
            precision=precision,
        )
        _add(
            rows[ours_name("lime", precision)],
            f"{multiple}n" if multiple != "exact" else "exact",
            r,
            lime_ref["values"],
            stderr=True,
        )


def _relative_norm(stderr: Sequence[float], values: Sequence[float]) -> float:
    return float(np.linalg.norm(stderr) / max(np.linalg.norm(values), 1e-12))


def _add(
    table: dict[str, list[dict[str, Any]]],
    setting: str,
    result: dict[str, Any],
    reference: Sequence[float],
    stderr: bool = False,
) -> None:
    item = {k: result[k] for k in ("cpu_s", "wall_s", "peak_extra_rss_mib", "evals")}
    for optional in ("model_calls", "peak_gpu_mib"):  # absent from older cached runs / CPUs
        if optional in result:
            item[optional] = result[optional]
    item["error"] = relative_error(result["values"], reference)
    if stderr:
        err = np.abs(np.asarray(result["values"]) - np.asarray(reference))
        se = np.asarray(result["stderr"])
        exact = result.get("exact", False)
        item["covered_2se"] = 1.0 if exact or not len(se) else float(np.mean(err <= 2 * se + 1e-9))
    table.setdefault(setting, []).append(item)


def _lime_agreement(
    library: dict[str, Any], mine: dict[str, Any], spans: Sequence[Any]
) -> float | None:
    """Spearman between lime's words and ours summed over the same (lower-cased) word."""
    by_word: dict[str, float] = {}
    for span, value in zip(spans, mine["values"], strict=True):
        by_word[span.text.lower()] = by_word.get(span.text.lower(), 0.0) + value
    pairs = [
        (v, by_word[w.lower()])
        for w, v in zip(library["words"], library["values"], strict=True)
        if w.lower() in by_word
    ]
    if len(pairs) < 3:
        return None
    a, b = zip(*pairs, strict=True)
    return spearman(a, b)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _summarise(items: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: float(np.mean([i[k] for i in items])) for k in ("cpu_s", "wall_s", "evals", "error")}
    out["error_median"] = float(np.median([i["error"] for i in items]))
    out["peak_extra_rss_mib"] = float(max(i["peak_extra_rss_mib"] for i in items))
    if all("model_calls" in i for i in items):
        out["model_calls"] = float(np.mean([i["model_calls"] for i in items]))
    if all("peak_gpu_mib" in i for i in items):
        out["peak_gpu_mib"] = float(max(i["peak_gpu_mib"] for i in items))
    if "covered_2se" in items[0]:
        out["covered_2se"] = float(np.mean([i["covered_2se"] for i in items]))
    return out


def _summarise_refs(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if items and "exact" in items[0]:
        out["exact_share"] = float(np.mean([i["exact"] for i in items]))
        out["evals_mean"] = float(np.mean([i["evals"] for i in items]))
        out["relative_stderr_mean"] = float(np.mean([i["relative_stderr"] for i in items]))
    elif items:
        out["num_samples"] = items[0]["num_samples"]
    return out


# --------------------------------------------------------------------------- ratios
#: The clocks a comparison can use: CPU seconds of this process (the default on a CPU,
#: robust to other users of a shared machine) or wall seconds (on a GPU, where the
#: process mostly waits for the device).
CLOCKS = ("cpu_s", "wall_s")


def time_to_reach(
    curve: dict[str, dict[str, Any]], error: float, clock: str = "cpu_s"
) -> float | None:
    """Seconds (``clock``) of our cheapest setting whose mean error is at most ``error``.

    None if no setting reaches it. No interpolation between settings: the speed-up is
    the one of a setting we ran.
    """
    times = [p[clock] for p in curve.values() if p["error"] <= error]
    return min(times) if times else None


def ratios(
    group: dict[str, Any], ours_name: str, library_name: str, clock: str = "cpu_s"
) -> dict[str, Any]:
    out = {}
    for setting, point in group["curves"][library_name].items():
        needed = time_to_reach(group["curves"][ours_name], point["error"], clock)
        out[setting] = {
            "library_error": point["error"],
            f"library_{clock}": point[clock],
            f"ours_{clock}_at_equal_error": needed,
            "speedup": None if needed is None else point[clock] / needed,
        }
    return out


def _clock_name(clock: str) -> str:
    return "CPU s" if clock == "cpu_s" else "wall s"


# --------------------------------------------------------------------------- output
def machine_info(threads: int) -> dict[str, Any]:
    import lime
    import shap

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "shap": shap.__version__,
        "lime": getattr(lime, "__version__", "0.2.0.1"),
        "torch_threads": torch.get_num_threads(),
        "requested_threads": threads,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
    }


def markdown(report: dict[str, Any]) -> str:
    clock = report.get("clock", "cpu_s")
    unit = _clock_name(clock)
    device = report.get("device", "cpu")
    lines = [
        "# Perturbation benchmark: textlens vs shap and lime",
        "",
        f"Model: {report['model']}. Device: {device}. Torch threads: "
        f"{report['machine']['torch_threads']}. Configuration: `{report['command']}`.",
        f"Speed-ups compare {unit} per text; CPU seconds are those of this process. Errors are "
        "mean relative L2 errors to the reference; evals are model inputs per text; model "
        "calls are the forward passes that carried them (the libraries' classifier sends at "
        "most 64 strings per pass; ours packs inputs under the token budget, and the "
        "prediction is one more pass).",
        "shap's Partition explainer computes **Owen values**, not Shapley values: its error to "
        "the Shapley reference does not vanish with more evaluations.",
        "",
    ]
    for group, g in report["groups"].items():
        lines += [
            f"## {group} ({g['n_texts']} texts, {g['tokens_mean']:.0f} tokens, "
            f"{g['features_mean']:.1f} word features on average)",
            "",
        ]
        refs = g["references"]
        lines.append(
            f"References: Shapley {_reference_kind(refs['shap'])} "
            f"({refs['shap'].get('evals_mean', 0):.0f} evals, relative SE "
            f"{refs['shap'].get('relative_stderr_mean', 0):.3f}); our LIME "
            f"{refs['lime_ours'].get('evals_mean', 0):.0f} evals (relative SE "
            f"{refs['lime_ours'].get('relative_stderr_mean', 0):.3f}); lime library "
            f"{refs['lime_library'].get('num_samples')} samples."
        )
        lines.append(
            f"Agreement (Spearman): shap library vs Shapley reference "
            f"{_fmt(g['agreement']['shap_library_vs_shapley'])}; lime library vs ours "
            f"{_fmt(g['agreement']['lime_library_vs_lime_ours'])}."
        )
        lines += [
            "",
            "| method | setting | evals/text | model calls/text | CPU s/text | wall s/text | "
            "error (mean) | error (median) | 2-SE coverage | peak extra RSS MiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, curve in g["curves"].items():
            for setting, p in curve.items():
                lines.append(
                    f"| {name} | {setting} | {p['evals']:.0f} | {_fmt(p.get('model_calls'))} | "
                    f"{p['cpu_s']:.3f} | "
                    f"{p['wall_s']:.3f} | {p['error']:.3f} | {p['error_median']:.3f} | "
                    f"{_fmt(p.get('covered_2se'))} | {p['peak_extra_rss_mib']:.1f} |"
                )
        lines += [
            "",
            f"| comparison | library setting | library error | library {unit} | ours {unit} at "
            "equal error | speed-up |",
            "|---|---|---|---|---|---|",
        ]
        for label, table in g["ratios"].items():
            for setting, r in table.items():
                lines.append(
                    f"| {label} | {setting} | {r['library_error']:.3f} | "
                    f"{r[f'library_{clock}']:.3f} | {_fmt(r[f'ours_{clock}_at_equal_error'])} | "
                    f"{_fmt(r['speedup'], 'x')} |"
                )
        lines.append("")
    return "\n".join(lines)


def _reference_kind(shap_reference: dict[str, Any]) -> str:
    return "exact" if shap_reference.get("exact_share") == 1 else "estimated"


def _fmt(value: float | None, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.3g}{suffix}"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clock = report.get("clock", "cpu_s")
    groups = list(report["groups"])
    fig, axes = plt.subplots(2, len(groups), figsize=(4.2 * len(groups), 7.5), squeeze=False)
    styles = {
        "shap_ours": ("textlens shap", "C0", "o"),
        "shap_library": ("shap Partition (Owen)", "C3", "s"),
        "lime_ours": ("textlens lime", "C0", "o"),
        "lime_library": ("lime", "C3", "s"),
        "shap_ours_bf16": ("textlens shap, bfloat16", "C2", "^"),
        "lime_ours_bf16": ("textlens lime, bfloat16", "C2", "^"),
    }
    for col, group in enumerate(groups):
        g = report["groups"][group]
        for row, method in enumerate(("shap", "lime")):
            ax = axes[row][col]
            for name in [n for n in styles if n.startswith(method) and n in g["curves"]]:
                curve = sorted(g["curves"][name].values(), key=lambda p: p[clock])
                label, color, marker = styles[name]
                ax.plot(
                    [p[clock] for p in curve],
                    [max(p["error"], 1e-4) for p in curve],
                    marker=marker,
                    color=color,
                    label=label,
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(
                f"{'SHAP' if row == 0 else 'LIME'} - {group} ({g['tokens_mean']:.0f} tokens)"
            )
            ax.set_xlabel(f"{_clock_name(clock)} per text")
            ax.set_ylabel("relative error to reference")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(
        f"Error vs time on {report.get('device', 'cpu')}, "
        f"{report['machine']['torch_threads']} torch thread(s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument(
        "--groups", default=",".join(GROUPS), help="comma-separated: short,20,60,200"
    )
    parser.add_argument("--texts", type=int, default=60, help="texts per length group (issue: 60)")
    parser.add_argument("--short-texts", type=int, default=60, help="short texts (issue: 60)")
    parser.add_argument(
        "--reduced",
        action="store_true",
        help="the reduced configuration (8/5/3/2 texts, smaller references)",
    )
    parser.add_argument(
        "--max-texts", type=int, default=None, help="cap texts per group (smoke runs)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--device",
        default="cpu",
        help="where every model runs, ours and the libraries' (cpu, cuda, cuda:1, auto)",
    )
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default=None,
        help="the seconds the speed-ups compare (default: cpu_s on a CPU, wall_s on a GPU)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="JSON cache of references and library runs (default: user cache)",
    )
    parser.add_argument(
        "--precisions",
        default="float32,bfloat16",
        help="our methods' precisions, comma-separated (default both; bfloat16 only pays "
        "on CPUs with native bfloat16, AVX512-BF16 or AMX)",
    )
    parser.add_argument(
        "--retime-libraries",
        action="store_true",
        help="run the shap and lime libraries again (and re-cache them) instead of reusing "
        "their cached runs, so that they are timed in the same run as ours; references "
        "stay cached",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    configs = reduced_config() if args.reduced else full_config(args.texts, args.short_texts)
    groups = [g for g in args.groups.split(",") if g]
    precisions = [p for p in args.precisions.split(",") if p]
    if not precisions or any(p not in PRECISIONS for p in precisions):
        raise SystemExit(f"--precisions: comma-separated values of {', '.join(PRECISIONS)}")
    try:
        adapter, tweets, model_name = load_model(args.model, args.device)
    except ModelLoadError as exc:  # an unknown device, or CUDA asked for without one
        raise SystemExit(f"--device: {exc}") from None
    device = str(adapter.device)  # resolved: 'auto' says where it ran
    clock = args.clock or ("cpu_s" if device == "cpu" else "wall_s")
    cache_path = args.cache or _default_cache()
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.exists() else {}

    def save() -> None:
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(cache_path)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "model": model_name,
        "command": "python benchmarks/bench_perturbation.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(args.threads),
        "configs": {g: vars(configs[g]) for g in groups},
        "precisions": precisions,
        "device": device,
        "clock": clock,
        "groups": {},
    }
    warm_up(adapter)
    started = time.perf_counter()
    for group in groups:
        if args.max_texts is not None:
            configs[group].n_texts = min(configs[group].n_texts, args.max_texts)
        texts = build_texts(adapter, tweets, group, configs[group].n_texts)
        result = run_group(
            adapter,
            group,
            texts,
            configs[group],
            cache,
            save,
            log,
            precisions=precisions,
            retime_libraries=args.retime_libraries,
            device=device,
        )
        result["ratios"] = {}
        for precision in precisions:
            tag = "" if precision == "float32" else f" ({precision})"
            result["ratios"][f"shap: ours{tag} vs shap Partition"] = ratios(
                result, ours_name("shap", precision), "shap_library", clock
            )
            result["ratios"][f"lime: ours{tag} vs lime"] = ratios(
                result, ours_name("lime", precision), "lime_library", clock
            )
        report["groups"][group] = result
        for label, table in result["ratios"].items():
            for setting, r in table.items():
                log(
                    f"[{group}] {label} @ {setting}: library error {r['library_error']:.3f}, "
                    f"{r[f'library_{clock}']:.2f} s; speed-up {_fmt(r['speedup'], 'x')}"
                )
    report["total_wall_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "perturbation.json").write_text(json.dumps(report, indent=1))
    (args.out / "perturbation.md").write_text(markdown(report))
    plot(report, args.out / "perturbation.png")
    log(f"wrote {args.out / 'perturbation.json'}, .md and .png in {report['total_wall_s']:.0f} s")


def _default_cache() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("textlens")) / "bench" / "perturbation_cache.json"


if __name__ == "__main__":
    main()
