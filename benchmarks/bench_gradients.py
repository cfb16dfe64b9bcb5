"""Benchmark textlens's gradient explainers against Captum on the demo model.

Measures, in one run and with a fixed number of torch threads:

* seconds per text of ``grad_x_input``, ``attention_rollout`` and
  ``integrated_gradients`` (50 Gauss-Legendre steps) against Captum's
  ``LayerIntegratedGradients`` on the word-embedding layer with the same baseline,
  rule and steps (these two timed twice, in the order ours, Captum, Captum, ours, and
  averaged), plus the floor: the bare cost of the same number of batched
  forward+backward passes;
* the completeness gap ``|delta| / |f(x) - f(baseline)|`` of Captum's uniform
  Gauss-Legendre rule at 16, 32, 50 and 100 steps (and whatever the matching needs);
* adaptive integrated gradients (``target_delta=0.01``) against the smallest uniform
  Captum step count that reaches the same median gap: gradient evaluations and time;
  and, since a small completeness gap does not prove accurate attributions, against
  the smallest step count that reaches the same median attribution error (relative
  L2 distance to Captum's 100-step attributions), and against Captum with the
  adaptive's mean number of gradient evaluations (attribution error at equal cost);
* peak memory (RSS while explaining, one fresh subprocess per configuration) of ours
  and Captum's on 200-token texts, and of ours on one 512-token text.

Seconds are process CPU seconds by default (``--clock cpu``): on a shared machine
they do not count time spent waiting for a core. Run
``python benchmarks/bench_gradients.py --help`` for the options; results go to
``benchmarks/results/gradients.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textlens.explainers import gradient
from textlens.explainers.attention import AttentionRollout
from textlens.explainers.gradient import GradientXInput, IntegratedGradients, quadrature
from textlens.model import DEFAULT_MAX_BATCH_TOKENS, ModelAdapter, pack_batches

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LENGTHS = (20, 60, 200)
QUICK_LENGTHS = (20,)
REQUIRED_STEPS = (16, 32, 50, 100)
STEP_LADDER = (
    8,
    12,
    16,
    20,
    24,
    28,
    32,
    40,
    48,
    50,
    56,
    64,
    80,
    100,
    128,
    160,
    200,
    256,
    320,
    400,
    512,
)
FIXED_STEPS = 50
TARGET_DELTA = 0.01
LONG_TEXT_TOKENS = 512
MAX_LENGTH = 512


# --------------------------------------------------------------------------- set-up
@dataclass
class Bench:
    """The model under test, the texts it is explained on, and the run settings."""

    adapter: ModelAdapter
    model_name: str
    tweets: list[str]
    budget: int
    threads: int


def unseen_tweets(n_train: int, heldout: Sequence[Any]) -> list[str]:
    """The held-out tweets, then every other tweet outside the same training set.

    The demo's 500 held-out tweets cannot make 60 texts of every length (60 texts of
    ~200 tokens take ~600 tweets), so the texts continue with the tweets the demo's
    default split (seed 0) left unused, none of which the model was trained on. The
    held-out tweets come first, in their order, so the first texts of each length are
    the same as with the held-out tweets alone. If the held-out tweets given are not
    those of that split (a model built with other settings), only they are used.
    """
    from textlens.demo.data import load_unseen_tweets

    texts = [e.text for e in heldout]
    unseen = [e.text for e in load_unseen_tweets(n_train=n_train, n_heldout=len(texts))]
    if unseen[: len(texts)] != texts:
        print(
            f"note: the model's {len(texts)} held-out tweets are not those of the demo's "
            "default split, so its training set is unknown: texts are built from its "
            "held-out tweets alone (--texts may need to be smaller).",
            file=sys.stderr,
        )
        return texts
    return unseen


def load_bench_model(spec: str) -> tuple[ModelAdapter, list[str], str]:
    """The model to benchmark and the held-out tweets to build texts from.

    ``spec`` is ``demo`` (the fine-tuned demo model, built and cached on first use),
    ``planted-minilm`` (MiniLM fine-tuned on planted keywords, whose paths are as sharp
    as issue #2's model: see ``planted_minilm.py``; texts of filler words with one
    planted word each), ``minilm-raw`` (the bundled MiniLM weights with an untrained
    2-class head, for development only) or a local model folder.
    """
    if spec == "planted-minilm":
        from planted_minilm import PlantedPieces, build_planted_minilm, model_summary

        folder = build_planted_minilm()
        adapter = ModelAdapter.from_pretrained(folder, max_length=MAX_LENGTH)
        return adapter, PlantedPieces(), model_summary(folder)
    if spec == "demo":
        from textlens.demo.build import build_sentiment_model

        info = build_sentiment_model()
        adapter = ModelAdapter.from_pretrained(info.path, max_length=MAX_LENGTH)
        return (
            adapter,
            unseen_tweets(info.n_train, info.heldout),
            f"textlens demo ({info.path.name}, held-out accuracy {info.accuracy:.3f})",
        )
    from textlens.demo.build import DEFAULT_N_HELDOUT, DEFAULT_N_TRAIN
    from textlens.demo.data import load_unseen_tweets, locate_minilm

    unseen = load_unseen_tweets(n_train=DEFAULT_N_TRAIN, n_heldout=DEFAULT_N_HELDOUT)
    tweets = [e.text for e in unseen]
    if spec == "minilm-raw":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = locate_minilm()
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), num_labels=2, attn_implementation="eager"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        adapter = ModelAdapter(model, tokenizer, model_id="minilm-raw", max_length=MAX_LENGTH)
        return adapter, tweets, "all-MiniLM-L6-v2, untrained head (development only)"
    adapter = ModelAdapter.from_pretrained(spec, max_length=MAX_LENGTH)
    return adapter, tweets, spec


def token_count(adapter: ModelAdapter, text: str) -> int:
    """Tokens of ``text`` including [CLS]/[SEP]."""
    return len(adapter.tokenizer(text, truncation=False)["input_ids"])


def build_texts(
    adapter: ModelAdapter, tweets: Sequence[str], target: int, n: int, tolerance: int | None = None
) -> list[str]:
    """``n`` texts of ``target`` ± ``tolerance`` tokens, each one tweet or several joined.

    Tweets are taken in order and each is used at most once per length; a tweet that
    would overshoot ``target + tolerance`` is skipped. The default tolerance is 10%.
    ``tweets`` with a ``plant(text, i)`` method (``planted_minilm.PlantedPieces``) get
    it applied to each text built, and are joined up to ``target - 1`` tokens to leave
    room for the planted word (one token in MiniLM's vocabulary).
    """
    tolerance = max(2, target // 10) if tolerance is None else tolerance
    plant = getattr(tweets, "plant", None)
    if plant is not None:
        built = build_texts(adapter, list(tweets), target - 1, n, tolerance)
        return [plant(text, i) for i, text in enumerate(built)]
    lengths = [token_count(adapter, t) - 2 for t in tweets]
    texts: list[str] = []
    used = [False] * len(tweets)
    while len(texts) < n:
        pieces: list[str] = []
        size = 2
        for j, t in enumerate(tweets):
            if used[j] or size + lengths[j] > target + tolerance:
                continue
            pieces.append(t)
            used[j] = True
            size += lengths[j]
            if size >= target - tolerance:
                break
        if size < target - tolerance:
            fix = (
                f"Ask for --texts {len(texts)} (or --long-texts for the longest texts) or fewer."
                if texts
                else "Use a model with more held-out tweets, or shorter texts."
            )
            raise SystemExit(
                f"Not enough unseen tweets to build {n} texts of about {target} tokens: "
                f"{len(tweets)} tweets made {len(texts)}. {fix}"
            )
        texts.append(" ".join(pieces))
    return texts


# --------------------------------------------------------------------------- runners
class CaptumIG:
    """Captum ``LayerIntegratedGradients`` on the word-embedding layer, batched sensibly.

    Texts are sorted by length and explained in groups; every forward pass holds at
    most ``budget`` tokens (``internal_batch_size`` rows of the padded length), the
    same budget as ours, split into chunks of equal size. With ``budget=None``, Captum's
    defaults instead: one text per call, all steps in one pass (``internal_batch_size``
    left at None), which is how it is most often called.

    The model runs on the attention a transformers 5 user gets by loading it the
    default way: SDPA where the architecture has it (else eager), set before every
    call (ours switches the shared model per call; before this was set, Captum simply
    ran on whichever attention ours' last call had left).
    """

    def __init__(self, adapter: ModelAdapter, budget: int | None):
        from captum.attr import LayerIntegratedGradients

        self.adapter = adapter
        self.model = adapter.model
        self.tokenizer = adapter.tokenizer
        self.budget = budget
        self.lig = LayerIntegratedGradients(self._forward, self.model.get_input_embeddings())
        self.attention = captum_attention(adapter)

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *extra: Any) -> Any:
        kwargs = {"token_type_ids": extra[0]} if extra else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits

    def explain(self, texts: Sequence[str], n_steps: int) -> list[dict[str, Any]]:
        """Per text: ``scores`` (per token), ``delta``, ``relative_delta``."""
        if hasattr(self.model, "set_attn_implementation"):
            self.model.set_attn_implementation(self.attention)
        lengths = [token_count(self.adapter, t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        results: list[dict[str, Any]] = [{} for _ in texts]
        start = 0
        while start < len(order) and self.budget is None:
            i = order[start]
            results[i] = self._explain_group([texts[i]], n_steps, None)[0]
            start += 1
        while start < len(order):
            assert self.budget is not None
            width = lengths[order[start]]
            size, internal = captum_chunking(self.budget, width, n_steps)
            group = order[start : start + size]
            start += len(group)
            for i, out in zip(
                group,
                self._explain_group([texts[i] for i in group], n_steps, internal),
                strict=True,
            ):
                results[i] = out
        return results

    def _explain_group(
        self, texts: list[str], n_steps: int, internal: int | None
    ) -> list[dict[str, Any]]:
        enc = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        extra = (enc["token_type_ids"],) if "token_type_ids" in enc else ()
        keep = enc["special_tokens_mask"].bool() | (enc["attention_mask"] == 0)
        baseline = torch.where(keep, enc["input_ids"], self.tokenizer.pad_token_id)
        with torch.no_grad():
            targets = self._forward(enc["input_ids"], enc["attention_mask"], *extra).argmax(-1)
        attributions, delta = self.lig.attribute(
            inputs=enc["input_ids"],
            baselines=baseline,
            additional_forward_args=(enc["attention_mask"], *extra),
            target=targets,
            n_steps=n_steps,
            method="gausslegendre",
            internal_batch_size=internal,
            return_convergence_delta=True,
        )
        scores = attributions.sum(-1).detach()
        gap = scores.sum(-1) - delta  # f(x) - f(baseline)
        return [
            {
                "scores": scores[i, : int(enc["attention_mask"][i].sum())].numpy(),
                "delta": float(delta[i]),
                "relative_delta": abs(float(delta[i])) / abs(float(gap[i])),
            }
            for i in range(len(texts))
        ]


def captum_attention(adapter: ModelAdapter) -> str:
    """The attention implementation Captum runs on (see :class:`CaptumIG`)."""
    return adapter._fast_attention or "eager"


def captum_chunking(budget: int, width: int, n_steps: int) -> tuple[int, int]:
    """Texts per ``attribute`` call and its ``internal_batch_size`` under a token budget.

    As many texts of ``width`` tokens as fit all their steps in ``budget`` tokens (at
    least one), their steps split into chunks of equal size.
    """
    rows_max = max(1, budget // width)
    group = max(1, rows_max // n_steps)
    n_chunks = math.ceil(group * n_steps / rows_max)
    return group, math.ceil(n_steps / n_chunks) * group


def floor_inputs(adapter: ModelAdapter, texts: Sequence[str], budget: int) -> tuple[Any, Any]:
    """The encoded texts and their predicted classes (not part of the floor's time)."""
    encoding = adapter.encode(texts)
    with torch.no_grad():
        targets = torch.tensor(adapter.predict_proba(encoding, max_batch_tokens=budget).argmax(1))
    return encoding, targets


def floor_pass(
    adapter: ModelAdapter, encoding: Any, targets: torch.Tensor, n_steps: int, budget: int
) -> None:
    """``n_steps`` bare forward+backward passes per text, batched like ours (same row
    costs, same pass size: ``CPU_PASS_TOKENS`` on a CPU when the budget is larger)."""
    alphas, _ = quadrature("gauss_legendre", n_steps)
    rows = [(i, a) for i in range(len(encoding)) for a in alphas]
    if torch.device(adapter.device).type == "cpu":
        budget = min(budget, gradient.CPU_PASS_TOKENS)
    costs = [gradient._row_cost(encoding.lengths[i]) for i, _ in rows]
    for chunk in pack_batches(costs, budget, pad_slack=gradient._PAD_SLACK):
        index = [rows[r][0] for r in chunk]
        sub = encoding.select(index)
        alpha = torch.tensor([rows[r][1] for r in chunk]).view(-1, 1, 1)
        embeds = (alpha * adapter.word_embeddings(sub.input_ids)).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = adapter.logits(sub, inputs_embeds=embeds)
            out = logits.gather(1, targets[index].view(-1, 1)).sum()
            torch.autograd.grad(out, embeds)


@dataclass
class Clock:
    """Which clock the per-text seconds (and so the time ratios) are read from.

    ``cpu`` is the process's CPU time: on a machine shared with other jobs it does not
    count the time spent waiting for a core, so it is the fairer figure there; on an
    idle machine with one thread it equals the wall-clock time.
    """

    kind: str = "cpu"
    wall: dict[str, float] = field(default_factory=dict)

    def now(self) -> float:
        return time.process_time() if self.kind == "cpu" else time.perf_counter()


CLOCK = Clock()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds on CLOCK, result)``; the wall-clock seconds go to ``CLOCK.wall['last']``."""
    start, wall = CLOCK.now(), time.perf_counter()
    out = fn()
    CLOCK.wall["last"] = time.perf_counter() - wall
    return CLOCK.now() - start, out


def summary(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    return {"median": float(np.median(array)), "worst": float(array.max())}


# --------------------------------------------------------------------------- one length
def bench_length(bench: Bench, texts: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    """Every timing and completeness figure for one set of texts of similar length."""
    adapter, budget, n = bench.adapter, bench.budget, len(texts)
    out: dict[str, Any] = {
        "n_texts": n,
        "mean_tokens": float(np.mean([token_count(adapter, t) for t in texts])),
    }

    def per_text(seconds: float) -> float:
        return seconds / n

    def times(seconds: float) -> dict[str, float]:
        return {"seconds_per_text": seconds / n, "wall_seconds_per_text": CLOCK.wall["last"] / n}

    # warm-up: first calls pay one-off costs (allocator, lazy imports)
    IntegratedGradients(adapter, n_steps=2).explain(texts[:2])

    for name, explainer in (
        ("grad_x_input", GradientXInput(adapter, max_batch_tokens=budget)),
        ("attention_rollout", AttentionRollout(adapter, max_batch_tokens=budget)),
    ):
        seconds, _ = timed(lambda e=explainer: e.explain(texts))
        out[name] = times(seconds)
        log(f"  {name}: {per_text(seconds):.4f} s/text")

    ours = IntegratedGradients(adapter, n_steps=FIXED_STEPS, max_batch_tokens=budget)
    captum = CaptumIG(adapter, budget)
    captum_runs: dict[int, dict[str, Any]] = {}

    def captum_run(timing: dict[str, Any], res: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            **timing,
            "relative_delta": summary([r["relative_delta"] for r in res]),
            "results": res,
        }

    def run_captum(steps: int) -> dict[str, Any]:
        if steps not in captum_runs:
            secs, res = timed(lambda: captum.explain(texts, steps))
            captum_runs[steps] = captum_run(times(secs), res)
            log(
                f"  captum ({steps} GL): {per_text(secs):.3f} s/text, median rel. delta "
                f"{captum_runs[steps]['relative_delta']['median']:.2e}"
            )
        return captum_runs[steps]

    # Equal steps, timed ABBA (ours, Captum, Captum, ours), each side the mean of its two
    # runs: the first large call of a process pays one-off costs (the allocator growing
    # to the batch's size), which a single run in a fixed order would put on one side
    # only (it made ours look 10-25% slower than the bare floor on 20-token texts).
    calls = {
        "ours": lambda: ours.explain(texts),
        "captum": lambda: captum.explain(texts, FIXED_STEPS),
    }
    runs: dict[str, list[tuple[float, float]]] = {side: [] for side in calls}
    last: dict[str, Any] = {}
    for side in ("ours", "captum", "captum", "ours"):
        seconds, last[side] = timed(calls[side])
        runs[side].append((seconds, CLOCK.wall["last"]))

    def averaged(side: str) -> dict[str, Any]:
        return {
            "seconds_per_text": float(np.mean([c for c, _ in runs[side]])) / n,
            "wall_seconds_per_text": float(np.mean([w for _, w in runs[side]])) / n,
            "runs_seconds_per_text": [c / n for c, _ in runs[side]],
        }

    # Captum given ours' CPU pass size as its token budget: what a Captum user who tuned
    # internal_batch_size for this CPU would get (ours picks that pass size by itself).
    cpu_pass = min(budget or gradient.CPU_PASS_TOKENS, gradient.CPU_PASS_TOKENS)
    captum_small = CaptumIG(adapter, cpu_pass)
    small_runs = [timed(lambda: captum_small.explain(texts, FIXED_STEPS))[0] for _ in range(2)]
    out["ig_captum_cpu_pass"] = {
        "max_batch_tokens": cpu_pass,
        "seconds_per_text": float(np.mean(small_runs)) / n,
        "runs_seconds_per_text": [c / n for c in small_runs],
    }

    explanations, cap_results = last["ours"], last["captum"]
    ours_rel = [e.quality["relative_delta"] for e in explanations]
    ours_scores = [np.asarray(e.scores) for e in explanations]
    out["ig_ours"] = {**averaged("ours"), "relative_delta": summary(ours_rel)}
    captum_runs[FIXED_STEPS] = captum_run(averaged("captum"), cap_results)
    log(
        f"  ig {FIXED_STEPS} GL, s/text: ours {out['ig_ours']['runs_seconds_per_text']}, "
        f"captum {captum_runs[FIXED_STEPS]['runs_seconds_per_text']}"
    )
    cap50 = captum_runs[FIXED_STEPS]
    diffs = [
        float(np.abs(np.asarray(e.scores) - r["scores"]).max() / np.linalg.norm(r["scores"]))
        for e, r in zip(explanations, cap50["results"], strict=True)
    ]
    out["ig_captum"] = {
        "seconds_per_text": cap50["seconds_per_text"],
        "wall_seconds_per_text": cap50["wall_seconds_per_text"],
        "max_abs_diff_over_norm": max(diffs),
    }
    out["ig_ratio_ours_over_captum"] = (
        out["ig_ours"]["seconds_per_text"] / cap50["seconds_per_text"]
    )
    out["ig_ratio_ours_over_captum_cpu_pass"] = (
        out["ig_ours"]["seconds_per_text"] / out["ig_captum_cpu_pass"]["seconds_per_text"]
    )

    encoding, targets = floor_inputs(adapter, texts, budget)
    floor_seconds, _ = timed(lambda: floor_pass(adapter, encoding, targets, FIXED_STEPS, budget))
    out["floor"] = times(floor_seconds)
    out["ig_ratio_ours_over_floor"] = out["ig_ours"]["seconds_per_text"] / per_text(floor_seconds)
    log(f"  floor ({FIXED_STEPS} fwd+bwd): {per_text(floor_seconds):.3f} s/text")

    adaptive = IntegratedGradients(adapter, target_delta=TARGET_DELTA, max_batch_tokens=budget)
    seconds, explanations = timed(lambda: adaptive.explain(texts))
    rel = [e.quality["relative_delta"] for e in explanations]
    evals = [e.quality["gradient_evaluations"] for e in explanations]
    adaptive_scores = [np.asarray(e.scores) for e in explanations]
    achieved = float(np.median(rel))
    out["adaptive"] = {
        "target_delta": TARGET_DELTA,
        **times(seconds),
        "evals_per_text": float(np.mean(evals)),
        "evals_max": round(float(max(evals)), 2),
        "relative_delta": summary(rel),
        "all_within_tolerance": bool(all(r <= TARGET_DELTA for r in rel)),
        "all_converged": bool(all(e.quality["converged"] for e in explanations)),
    }
    log(
        f"  adaptive (target {TARGET_DELTA}): {per_text(seconds):.3f} s/text, "
        f"{np.mean(evals):.1f} evals/text, median rel. delta {achieved:.2e}, worst {max(rel):.2e}"
    )

    for steps in REQUIRED_STEPS:
        run_captum(steps)
    # Captum with (about) the adaptive's mean number of gradient evaluations: the fair
    # comparison of attribution accuracy at equal cost.
    same_evals = max(1, round(out["adaptive"]["evals_per_text"]))
    run_captum(same_evals)
    out["adaptive_vs_captum_same_evals"] = {"captum_steps": same_evals}
    reference = [r["scores"] for r in captum_runs[max(REQUIRED_STEPS)]["results"]]

    def median_delta(steps: int) -> float:
        return run_captum(steps)["relative_delta"]["median"]

    def median_error(steps: int) -> float:
        scores = [r["scores"] for r in run_captum(steps)["results"]]
        return attribution_error(scores, reference)["median"]

    out["attribution_error_reference"] = f"Captum GL {max(REQUIRED_STEPS)} steps"
    out["ig_ours"]["attribution_error"] = attribution_error(ours_scores, reference)
    out["adaptive"]["attribution_error"] = attribution_error(adaptive_scores, reference)
    out["adaptive_vs_captum"] = _compare(
        out["adaptive"], captum_runs, _match_steps(median_delta, achieved)
    )
    out["adaptive_vs_captum_same_error"] = _compare(
        out["adaptive"],
        captum_runs,
        _match_steps(median_error, out["adaptive"]["attribution_error"]["median"]),
    )
    for run in captum_runs.values():
        run["attribution_error"] = attribution_error(
            [r["scores"] for r in run["results"]], reference
        )
    out["captum_completeness"] = {
        str(s): {k: v for k, v in r.items() if k != "results"}
        for s, r in sorted(captum_runs.items())
    }
    return out


def _compare(
    adaptive: dict[str, Any], captum_runs: dict[int, Any], steps: int | None
) -> dict[str, Any]:
    """Adaptive IG against Captum's uniform rule at ``steps``: evaluations and time ratios."""
    if steps is None:
        return {"captum_steps": None}
    match = captum_runs[steps]
    return {
        "captum_steps": steps,
        "captum_median_relative_delta": match["relative_delta"]["median"],
        "captum_seconds_per_text": match["seconds_per_text"],
        "evals_ratio": adaptive["evals_per_text"] / steps,
        "time_ratio": adaptive["seconds_per_text"] / match["seconds_per_text"],
    }


def _match_steps(median_of: Callable[[int], float], target: float) -> int | None:
    """Smallest step count whose ``median_of(steps)`` is <= ``target``.

    The ladder is walked upwards from the largest required step count below the first
    required one that reaches the target (the median is not quite monotone in the
    number of steps, so every ladder entry in between is tried, in order). Between the
    first rung that reaches the target and the rung below it, the step count is then
    found by bisection, so Captum's need is not rounded up to a rung (which made the
    adaptive's ratios look better than they are).
    """
    hits = [s for s in REQUIRED_STEPS if median_of(s) <= target]
    first_hit = min(hits, default=None)
    start = max((s for s in REQUIRED_STEPS if first_hit is None or s < first_hit), default=0)
    below = start
    for steps in (s for s in STEP_LADDER if s > start):
        if median_of(steps) <= target:
            return _bisect_steps(median_of, target, below, steps)
        below = steps
    return None


def _bisect_steps(median_of: Callable[[int], float], target: float, low: int, high: int) -> int:
    """Smallest count in ``(low, high]`` reaching ``target``; ``high`` does, ``low`` does not.

    The median is taken as monotone between two neighbouring rungs.
    """
    while high - low > 1:
        middle = (low + high) // 2
        if median_of(middle) <= target:
            high = middle
        else:
            low = middle
    return high


def attribution_error(
    scores: Sequence[np.ndarray], reference: Sequence[np.ndarray]
) -> dict[str, float]:
    """Median and worst ``||scores - reference|| / ||reference||`` over texts."""
    return summary(
        [
            float(np.linalg.norm(s - r) / np.linalg.norm(r))
            for s, r in zip(scores, reference, strict=True)
        ]
    )


# --------------------------------------------------------------------------- memory
def memory_probe(args: argparse.Namespace) -> None:
    """Child process: run one configuration and print its peak RSS during the run as JSON.

    Loading the model peaks higher than some runs, so the kernel's high-water mark is
    reset after loading (``/proc/self/clear_refs``) and read back after the run; a
    thread sampling the RSS every 2 ms is the fallback where that is not possible.
    """
    import gc
    import threading

    import psutil

    torch.set_num_threads(args.threads)
    adapter, _, _ = load_bench_model(args.model)
    texts = json.loads(Path(args.probe_texts).read_text())
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    reset = _reset_peak_rss()
    sampled = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            sampled.append(process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if args.memory_probe == "ours":
        IntegratedGradients(
            adapter, n_steps=FIXED_STEPS, max_batch_tokens=args.max_batch_tokens
        ).explain(texts)
    else:
        budget = None if args.memory_probe == "captum-default" else args.max_batch_tokens
        CaptumIG(adapter, budget).explain(texts, FIXED_STEPS)
    done.set()
    sampler.join()
    peak = _peak_rss() if reset else None
    result = {
        "rss_before_bytes": before,
        "peak_rss_bytes": peak if peak is not None else max(sampled),
        "sampled_peak_rss_bytes": max(sampled),
        "peak_source": "VmHWM after reset" if peak is not None else "sampled every 2 ms",
    }
    print(json.dumps(result))


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def measure_memory(
    args: argparse.Namespace, which: str, texts: list[str], max_batch_tokens: int | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "texts.json"
        path.write_text(json.dumps(texts))
        command = [
            sys.executable,
            __file__,
            "--model",
            args.model,
            "--threads",
            str(args.threads),
            "--max-batch-tokens",
            str(max_batch_tokens or args.max_batch_tokens),
            "--memory-probe",
            which,
            "--probe-texts",
            str(path),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"memory probe {which} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = result["peak_rss_bytes"] / 2**20
    result["rss_before_mb"] = result["rss_before_bytes"] / 2**20
    return result


def memory_report(
    args: argparse.Namespace,
    adapter: ModelAdapter,
    tweets: Sequence[str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Peak RSS of ours and Captum's IG on 200-token texts and of ours on a 512-token text."""
    short, long = (60, 128) if args.quick else (200, LONG_TEXT_TOKENS)
    short_texts = build_texts(adapter, tweets, short, 2 if args.quick else 4)
    long_text = build_texts(adapter, tweets[::-1], long - 4, 1, tolerance=4)
    memory: dict[str, Any] = {
        "tokens_short": short,
        "tokens_long": long,
        "captum_200": measure_memory(args, "captum", short_texts),
        "captum_default_200": measure_memory(args, "captum-default", short_texts),
        "ours_200": measure_memory(args, "ours", short_texts),
        "ours_512": measure_memory(args, "ours", long_text),
    }
    # Captum's same-budget run fills fewer tokens per pass than the budget allows (its
    # steps are split into equal chunks): ours on the long text with that many tokens
    # per pass compares the two at equal work per pass.
    width = max(token_count(adapter, t) for t in short_texts)
    _, internal = captum_chunking(args.max_batch_tokens, width, FIXED_STEPS)
    memory["captum_tokens_per_pass"] = internal * width
    memory["ours_512_captum_tokens"] = measure_memory(
        args, "ours", long_text, max_batch_tokens=internal * width
    )
    memory["ratio_ours_long_over_captum_short"] = (
        memory["ours_512"]["peak_rss_mb"] / memory["captum_200"]["peak_rss_mb"]
    )
    memory["ratio_ours_long_over_captum_default_short"] = (
        memory["ours_512"]["peak_rss_mb"] / memory["captum_default_200"]["peak_rss_mb"]
    )
    memory["ratio_ours_long_captum_tokens_over_captum_short"] = (
        memory["ours_512_captum_tokens"]["peak_rss_mb"] / memory["captum_200"]["peak_rss_mb"]
    )
    log(
        "  memory (MB): "
        + ", ".join(f"{k} {v['peak_rss_mb']:.0f}" for k, v in memory.items() if isinstance(v, dict))
    )
    return memory


# --------------------------------------------------------------------------- reporting
def machine_info(threads: int) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    import captum
    import transformers

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "threads_requested": threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "captum": captum.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    runs: dict[str, list[dict[str, Any]]] = {}
    for group in report["lengths"]:
        runs.setdefault(group.get("command", report.get("command", "")), []).append(group)
    lines = [
        f"Model: {report['model']}. Machine: {m['cpu']}, nproc={m['nproc']}, "
        f"torch {m['torch']} with {m['torch_threads']} thread(s), Captum {m['captum']}. "
        f"Token budget per forward pass: {report['max_batch_tokens']} (ours and Captum's). "
        f"Seconds are {'process CPU' if report['clock'] == 'cpu' else 'wall-clock'} seconds"
        + (
            " (the length groups come from the runs listed below the table). "
            if len(runs) > 1
            else f" (load average {m['load_average_at_start']:.1f} at the start). "
            if m.get("load_average_at_start") is not None
            else ". "
        )
        + f"{report['note']}",
        "",
        "| | " + " | ".join(f"~{r['target_tokens']} tokens" for r in report["lengths"]) + " |",
        "|---|" + "---:|" * len(report["lengths"]),
    ]

    def row(label: str, fn: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(r) for r in report["lengths"]) + " |")

    row("texts (mean tokens)", lambda r: f"{r['n_texts']} ({r['mean_tokens']:.0f})")
    row("`grad_x_input` s/text", lambda r: f"{r['grad_x_input']['seconds_per_text']:.4f}")
    row("`attention_rollout` s/text", lambda r: f"{r['attention_rollout']['seconds_per_text']:.4f}")
    row(
        f"IG ours, {FIXED_STEPS} GL steps, s/text",
        lambda r: f"{r['ig_ours']['seconds_per_text']:.3f}",
    )
    row(
        f"IG Captum, {FIXED_STEPS} GL steps, s/text",
        lambda r: f"{r['ig_captum']['seconds_per_text']:.3f}",
    )
    row(
        "**ratio ours / Captum** (goal ≤ 1.0)",
        lambda r: f"**{r['ig_ratio_ours_over_captum']:.2f}**",
    )
    if all("ig_captum_cpu_pass" in r for r in report["lengths"]):
        cpu_pass = report["lengths"][0]["ig_captum_cpu_pass"]["max_batch_tokens"]
        row(
            f"IG Captum, {FIXED_STEPS} GL steps, budget {cpu_pass} (ours' CPU pass size), s/text",
            lambda r: f"{r['ig_captum_cpu_pass']['seconds_per_text']:.3f}",
        )
        row(
            f"ratio ours / Captum at budget {cpu_pass}",
            lambda r: f"{r['ig_ratio_ours_over_captum_cpu_pass']:.2f}",
        )
    row(
        f"floor: {FIXED_STEPS} batched fwd+bwd, s/text",
        lambda r: f"{r['floor']['seconds_per_text']:.3f}",
    )
    row("ratio ours / floor", lambda r: f"{r['ig_ratio_ours_over_floor']:.2f}")
    row(
        "max \\|ours − Captum\\| / ‖Captum‖",
        lambda r: f"{r['ig_captum']['max_abs_diff_over_norm']:.1e}",
    )
    steps = sorted({int(s) for r in report["lengths"] for s in r["captum_completeness"]})
    for s in steps:
        row(
            f"Captum GL {s} steps: rel. \\|delta\\| median / worst",
            lambda r, s=s: _delta_cell(r["captum_completeness"].get(str(s))),
        )
    row(
        f"adaptive `target_delta={TARGET_DELTA}`: all within?",
        lambda r: "yes" if r["adaptive"]["all_within_tolerance"] else "**no**",
    )
    row("adaptive: rel. \\|delta\\| median (D) / worst", lambda r: _delta_cell(r["adaptive"]))
    row(
        "adaptive: gradient evals per text (max)",
        lambda r: f"{r['adaptive']['evals_per_text']:.1f} ({r['adaptive']['evals_max']})",
    )
    row("adaptive: s/text", lambda r: f"{r['adaptive']['seconds_per_text']:.3f}")
    row(
        "attribution error vs GL-100: ours 50 / adaptive / Captum at matched steps",
        lambda r: " / ".join(
            f"{x:.1e}"
            for x in (
                r["ig_ours"]["attribution_error"]["median"],
                r["adaptive"]["attribution_error"]["median"],
                _captum_error(r, r["adaptive_vs_captum"]["captum_steps"]),
            )
        ),
    )
    row(
        "attribution error vs GL-100 at the adaptive's mean evals: adaptive / Captum (steps)",
        lambda r: _same_evals_cell(r),
    )
    row(
        "Captum GL steps to reach median ≤ D",
        lambda r: str(r["adaptive_vs_captum"]["captum_steps"]),
    )
    row(
        "**evals ratio adaptive / Captum** (goal ≤ 0.5)",
        lambda r: _ratio_cell(r["adaptive_vs_captum"].get("evals_ratio")),
    )
    row(
        "**time ratio adaptive / Captum** (goal ≤ 0.5)",
        lambda r: _ratio_cell(r["adaptive_vs_captum"].get("time_ratio")),
    )
    row(
        "Captum GL steps to reach the adaptive's attribution error",
        lambda r: str(r["adaptive_vs_captum_same_error"]["captum_steps"]),
    )
    row(
        "evals / time ratio at equal attribution error",
        lambda r: _pair(r["adaptive_vs_captum_same_error"]),
    )
    mem = report.get("memory")
    if mem:
        lines += [
            "",
            "| peak RSS while explaining (a fresh process each) | MB | RSS before, model loaded |",
            "|---|---:|---:|",
        ]
        for key, label in (
            ("captum_default_200", f"Captum IG, defaults, {mem['tokens_short']}-token texts"),
            ("captum_200", f"Captum IG, same token budget, {mem['tokens_short']}-token texts"),
            ("ours_200", f"ours IG, {mem['tokens_short']}-token texts"),
            ("ours_512", f"ours IG, one {mem['tokens_long']}-token text"),
            (
                "ours_512_captum_tokens",
                f"ours IG, one {mem['tokens_long']}-token text, budget "
                f"{mem.get('captum_tokens_per_pass')} (Captum's same-budget tokens per pass)",
            ),
        ):
            if key not in mem:
                continue
            r = mem[key]
            lines.append(f"| {label} | {r['peak_rss_mb']:.0f} | {r['rss_before_mb']:.0f} |")
        long, short = mem["tokens_long"], mem["tokens_short"]
        for key, label in (
            ("ratio_ours_long_over_captum_default_short", f"ours {long} / Captum defaults {short}"),
            ("ratio_ours_long_over_captum_short", f"ours {long} / Captum same budget {short}"),
            (
                "ratio_ours_long_captum_tokens_over_captum_short",
                f"ours {long} at budget = Captum's tokens per pass / Captum same budget {short}",
            ),
        ):
            if key in mem:
                lines.append(f"| **{label}** (goal ≤ 1.0) | **{mem[key]:.2f}** | |")
        if report.get("memory_command"):
            lines += ["", f"Memory rows measured separately: `{report['memory_command']}`."]
    if len(runs) > 1:  # groups measured by separate --lengths runs
        lines.append("")
        for command, groups in runs.items():
            loads = {g.get("load_average_at_start") for g in groups} - {None}
            lines.append(
                f"- ~{', ~'.join(str(g['target_tokens']) for g in groups)} tokens: `{command}`"
                + (f" (load average {max(loads):.1f} at the start)." if loads else ".")
            )
    elif report.get("command"):
        lines += ["", f"Command: `{report['command']}`."]
    return "\n".join(lines) + "\n"


def _delta_cell(r: dict[str, Any] | None) -> str:
    if not r:
        return "–"
    d = r["relative_delta"]
    return f"{d['median']:.1e} / {d['worst']:.1e}"


def _captum_error(r: dict[str, Any], steps: int | None) -> float:
    if steps is None:
        return float("nan")
    return r["captum_completeness"][str(steps)]["attribution_error"]["median"]


def _same_evals_cell(r: dict[str, Any]) -> str:
    same = r.get("adaptive_vs_captum_same_evals")
    if not same:
        return "–"
    steps = same["captum_steps"]
    adaptive = r["adaptive"]["attribution_error"]["median"]
    return f"{adaptive:.1e} / {_captum_error(r, steps):.1e} ({steps})"


def _pair(r: dict[str, Any]) -> str:
    if r.get("evals_ratio") is None:
        return "–"
    return f"{r['evals_ratio']:.2f} / {r['time_ratio']:.2f}"


def _ratio_cell(value: float | None) -> str:
    return "–" if value is None else f"**{value:.2f}**"


# --------------------------------------------------------------------------- main
def save(folder: Path, report: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gradients.json").write_text(json.dumps(report, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=60, help="texts per length (default 60)")
    parser.add_argument(
        "--long-texts", type=int, default=None, help="texts of ~200 tokens (default: --texts)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2 texts of ~20 tokens, short memory probes",
    )
    parser.add_argument(
        "--model",
        default="demo",
        help="'demo' (default), 'planted-minilm' (sharp paths, like issue #2's model), "
        "'minilm-raw' (untrained head) or a model folder",
    )
    parser.add_argument("--max-batch-tokens", type=int, default=DEFAULT_MAX_BATCH_TOKENS)
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time ratios from process CPU time (default; robust on a shared "
        "machine) or wall-clock time; both are recorded",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="run only the memory probes and merge them into the gradients.json already "
        "in --output (its timing results are kept and the Markdown table is rewritten)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR,
        help="folder for gradients.json and gradients.md",
    )
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        choices=LENGTHS,
        default=None,
        help=(
            "run only these length groups (default: all). If --output already holds "
            "gradients.json for the same model, the groups measured now replace the ones "
            "there and the others are kept, each with the command and load that measured it"
        ),
    )
    parser.add_argument(
        "--adaptive-counts",
        action="store_true",
        help=(
            "only run adaptive IG (target_delta 0.01) on the benchmark's texts and report its "
            "nodes and gradient evaluations per text, median and worst relative delta and "
            "distinct baselines (a few minutes; writes adaptive_counts.json, no timings)"
        ),
    )
    parser.add_argument(
        "--memory-probe", choices=("ours", "captum", "captum-default"), help=argparse.SUPPRESS
    )
    parser.add_argument("--probe-texts", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def kept_groups(
    args: argparse.Namespace, existing: Path, report: dict[str, Any], lengths: Sequence[int]
) -> list[dict[str, Any]]:
    """The length groups of an earlier report that a ``--lengths`` run keeps.

    Only when ``--lengths`` names a subset and ``existing`` holds a full (not quick) run
    of the same model, machine, library versions, threads and token budget as
    ``report`` (the run starting now); each kept group carries the command and load of
    its own run.
    """
    if args.lengths is None or args.quick or not existing.is_file():
        return []
    old = json.loads(existing.read_text())
    model_name = report["model"]
    if old.get("model") != model_name or old.get("quick"):
        raise SystemExit(
            f"{existing} holds results for {old.get('model')!r}"
            + (" (a quick run)" if old.get("quick") else "")
            + f", not a full run of {model_name!r}: pass another --output to start afresh."
        )
    setup = ("cpu", "nproc", "torch_threads", "torch", "transformers", "captum")
    changed = [k for k in setup if old["machine"].get(k) != report["machine"].get(k)]
    if old.get("max_batch_tokens") != report["max_batch_tokens"]:
        changed.append("token budget")
    if changed:
        raise SystemExit(
            f"{existing} was measured with another {', '.join(changed)} than this run: the"
            " ratios of one table must come from one setup, so run every length again"
            " (leave out --lengths) or pass another --output."
        )
    kept = []
    for group in old["lengths"]:
        if group["target_tokens"] in lengths:
            continue
        group.setdefault("command", old["command"])
        group.setdefault("load_average_at_start", old["machine"].get("load_average_at_start"))
        kept.append(group)
    return kept


def texts_per_length(args: argparse.Namespace, target: int) -> int:
    """How many texts of about ``target`` tokens the run explains."""
    if args.quick:
        return 2
    return (args.long_texts or args.texts) if target >= 200 else args.texts


def adaptive_counts(
    args: argparse.Namespace,
    adapter: ModelAdapter,
    tweets: list[str],
    model_name: str,
    lengths: Sequence[int],
    command: str,
) -> None:
    """Adaptive IG's evaluation counts on the benchmark's texts, without Captum or timings.

    ``n_steps`` is the nodes on each text's path; ``gradient_evaluations`` is what they
    cost once the alpha = 0 node is shared by texts with the same baseline and target.
    """
    rows = []
    for target in lengths:
        texts = build_texts(adapter, tweets, target, texts_per_length(args, target))
        adaptive = IntegratedGradients(
            adapter, target_delta=TARGET_DELTA, max_batch_tokens=args.max_batch_tokens
        )
        explanations = adaptive.explain(texts)
        rel = [e.quality["relative_delta"] for e in explanations]
        baselines = {
            (n, e.target) for n, e in zip(adapter.encode(texts).lengths, explanations, strict=True)
        }
        rows.append(
            {
                "target_tokens": target,
                "texts": len(texts),
                "nodes_per_text": float(np.mean([e.quality["n_steps"] for e in explanations])),
                "evals_per_text": float(
                    np.mean([e.quality["gradient_evaluations"] for e in explanations])
                ),
                "relative_delta": summary(rel),
                "distinct_baselines": len(baselines),
            }
        )
        r = rows[-1]
        print(
            f"~{target} tokens, {r['texts']} texts: {r['nodes_per_text']:.2f} nodes and "
            f"{r['evals_per_text']:.2f} gradient evaluations per text, median rel. delta "
            f"{r['relative_delta']['median']:.2e} (worst {r['relative_delta']['worst']:.2e}), "
            f"{r['distinct_baselines']} distinct baselines",
            flush=True,
        )
    save_json = {"model": model_name, "command": command, "lengths": rows}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "adaptive_counts.json").write_text(json.dumps(save_json, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_probe:
        memory_probe(args)
        return
    torch.set_num_threads(args.threads)
    CLOCK.kind = args.clock
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)

    command = " ".join(["python", "benchmarks/bench_gradients.py", *(argv or sys.argv[1:])])
    if args.memory_only and args.no_memory:
        raise SystemExit("--memory-only and --no-memory contradict each other: pick one.")
    if args.memory_only and args.adaptive_counts:
        raise SystemExit("--memory-only and --adaptive-counts are two separate runs: pick one.")
    existing = args.output / "gradients.json"
    if args.memory_only and not existing.is_file():
        raise SystemExit(
            f"--memory-only merges into {existing}, which does not exist: run the "
            "benchmark without --memory-only first (or pass --output)."
        )
    adapter, tweets, model_name = load_bench_model(args.model)
    if args.memory_only:
        report = json.loads(existing.read_text())
        if report.get("model") != model_name:
            raise SystemExit(
                f"{existing} holds results for {report.get('model')!r}, not {model_name!r}: "
                "pass the same --model, or another --output."
            )
        report["memory"] = memory_report(args, adapter, tweets, log)
        report["memory_command"] = command
        save(args.output, report)
        (args.output / "gradients.md").write_text(markdown(report))
        print(markdown(report))
        return
    lengths = QUICK_LENGTHS if args.quick else tuple(args.lengths or LENGTHS)
    if args.adaptive_counts:
        adaptive_counts(args, adapter, tweets, model_name, lengths, command)
        return
    bench = Bench(adapter, model_name, tweets, args.max_batch_tokens, args.threads)
    report: dict[str, Any] = {
        "model": model_name,
        "machine": machine_info(args.threads),
        "max_batch_tokens": args.max_batch_tokens,
        "clock": args.clock,
        "quick": args.quick,
        "command": command,
        "lengths": [],
    }
    kept = kept_groups(args, existing, report, lengths)
    if kept:
        sizes = ", ~".join(str(g["target_tokens"]) for g in kept)
        log(f"keeping the ~{sizes}-token groups of {existing}")
        earlier = json.loads(existing.read_text())
        for key in ("memory", "memory_command"):
            if key in earlier:
                report[key] = earlier[key]
    for target in lengths:
        n = texts_per_length(args, target)
        texts = build_texts(adapter, tweets, target, n)
        log(f"~{target} tokens, {n} texts")
        result = bench_length(bench, texts, log)
        result["target_tokens"] = target
        result["command"] = command
        result["load_average_at_start"] = report["machine"]["load_average_at_start"]
        report["lengths"] = sorted(
            [*kept, *report["lengths"], result], key=lambda g: g["target_tokens"]
        )
        kept = []
        save(args.output, report)  # partial results survive an interrupted run
    counts = [g["n_texts"] for g in report["lengths"]]
    report["note"] = (
        f"Texts per length: {', '.join(map(str, counts))}"
        + (" (quick smoke run)." if args.quick else ".")
        + f" Attention: Captum on {captum_attention(adapter)} (a default transformers load),"
        + " ours on what the adapter picks per call (SDPA where the model has it, for"
        + " gradient passes too)."
    )
    if not args.no_memory:
        report["memory"] = memory_report(args, adapter, tweets, log)
    report["seconds_total"] = time.perf_counter() - started
    save(args.output, report)
    table = markdown(report)
    (args.output / "gradients.md").write_text(table)
    print()
    print(table)


if __name__ == "__main__":
    main()
