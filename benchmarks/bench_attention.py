"""Which attention implementation makes the model's passes faster on this machine.

The model adapter runs forward-only passes that need no attention weights on PyTorch's
fused SDPA, and every other pass (attention weights asked for, or autograd on) on
eager attention (see ``textlens.model.ModelAdapter._attention_for``). This script is
the measurement behind that choice, on the demo model, texts of about 32, 64, 128, 256
and 512 tokens made of held-out tweets:

* ``forward``: batched predictions (``predict_logits``, no gradients), SDPA / eager;
* ``forward+backward``: one batched pass with the gradient w.r.t. the word embeddings
  (what the gradient methods run), SDPA / eager, rows as many as the gradient
  methods' CPU pass holds;
* ``occlusion``: the occlusion explainer (word level, forward passes only), as
  textlens runs it (SDPA) / with SDPA turned off.

Every measurement is taken twice per implementation, in the orders eager, SDPA, SDPA,
eager, and each side's two runs are summed, so slow drifts of a shared machine cancel.
Times are process CPU seconds. Results go to ``benchmarks/results/attention.{json,md}``.

    python benchmarks/bench_attention.py [--threads 1] [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gradients as bg

from textlens.explainers import make_explainer
from textlens.explainers.gradient import CPU_PASS_TOKENS, _row_cost
from textlens.model import ModelAdapter

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: (target tokens, texts for the forward passes, texts for occlusion)
GROUPS = ((32, 96, 6), (64, 48, 4), (128, 24, 2), (256, 12, 1), (bg.LONG_TEXT_TOKENS, 6, 1))
#: Forward-only passes are repeated until each run has covered about this many tokens.
FORWARD_TOKENS = 24576


def _eager_only(adapter: ModelAdapter, eager: bool) -> None:
    """Turn the adapter's use of SDPA off (``eager``) or back to what it detected."""
    if not hasattr(adapter, "_detected_fast_attention"):
        adapter._detected_fast_attention = adapter._fast_attention  # type: ignore[attr-defined]
    adapter._fast_attention = None if eager else adapter._detected_fast_attention  # type: ignore[attr-defined]


def _paired(run: Callable[[], Any], set_eager: Callable[[bool], None]) -> dict[str, float]:
    """CPU seconds of ``run`` on eager and on SDPA, each run twice (eager, SDPA, SDPA, eager).

    Ends on eager: ``set_eager`` may switch the model itself (the forward+backward
    measurement), and the adapter assumes a model it has not switched is still on eager.
    """
    seconds = {"eager": 0.0, "sdpa": 0.0}
    for eager in (True, False, False, True):
        set_eager(eager)
        started = time.process_time()
        run()
        seconds["eager" if eager else "sdpa"] += time.process_time() - started
    return seconds


def _gradient_pass(adapter: ModelAdapter, texts: Sequence[str]) -> Callable[[], None]:
    """One batched forward+backward w.r.t. the word embeddings, as the gradient methods run."""
    width = bg.token_count(adapter, texts[0])
    rows = max(1, CPU_PASS_TOKENS // _row_cost(width))
    encoding = adapter.encode(list(texts[:rows]))
    model = adapter.model

    def run() -> None:
        embeds = adapter.word_embeddings(encoding.input_ids).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(inputs_embeds=embeds, attention_mask=encoding.attention_mask).logits
            torch.autograd.grad(logits[:, 0].sum(), embeds)

    return run


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    adapter, tweets, model_name = bg.load_bench_model("demo")
    if adapter._fast_attention is None:
        raise SystemExit(f"{model_name} has no SDPA attention: nothing to compare.")
    adapter.predict_logits(adapter.encode(tweets[:8]))  # warm-up
    report: dict[str, Any] = {
        "model": model_name,
        "machine": bg.machine_info(args.threads),
        "groups": [],
    }

    def set_eager(eager: bool) -> None:
        _eager_only(adapter, eager)

    for target, n_forward, n_occlusion in GROUPS:
        if target >= bg.LONG_TEXT_TOKENS:
            texts = bg.build_texts(adapter, tweets[::-1], target - 4, n_forward, tolerance=4)
        else:
            texts = bg.build_texts(adapter, tweets, target, n_forward)
        encoding = adapter.encode(texts)
        repeats = max(1, FORWARD_TOKENS // (len(texts) * target))

        def forward(encoding: Any = encoding, repeats: int = repeats) -> None:
            for _ in range(repeats):
                adapter.predict_logits(encoding)

        gradient_run = _gradient_pass(adapter, texts)

        def gradient(run: Callable[[], None] = gradient_run) -> None:
            for _ in range(3):
                run()

        def gradient_impl(eager: bool) -> None:
            adapter.model.set_attn_implementation("eager" if eager else "sdpa")

        occluded = texts[:n_occlusion]

        def occlusion(occluded: list[str] = occluded) -> None:
            # A fresh explainer each run: one explainer caches the outputs it has seen.
            make_explainer("occlusion", adapter).explain(occluded)

        group: dict[str, Any] = {
            "target_tokens": target,
            "mean_tokens": sum(bg.token_count(adapter, t) for t in texts) / len(texts),
            "forward_texts": len(texts) * repeats,
            "occlusion_texts": len(occluded),
            "forward": _paired(forward, set_eager),
            "forward+backward": _paired(gradient, gradient_impl),
            "occlusion": _paired(occlusion, set_eager),
        }
        set_eager(False)
        for kind in ("forward", "forward+backward", "occlusion"):
            group[kind]["ratio"] = group[kind]["sdpa"] / group[kind]["eager"]
        report["groups"].append(group)
        print(
            target,
            {k: round(group[k]["ratio"], 3) for k in ("forward", "forward+backward", "occlusion")},
            flush=True,
        )
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "attention.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [
        f"SDPA / eager attention, demo model ({model_name}); {m['cpu']}, torch {m['torch']} "
        f"with {m['torch_threads']} thread(s); process CPU seconds, each side run twice "
        "(eager, SDPA, SDPA, eager). Command: `python benchmarks/bench_attention.py`.",
        "",
        "| texts (mean tokens) | forward: SDPA / eager | forward+backward: SDPA / eager "
        "| occlusion s/text: eager → SDPA (ratio) |",
        "|---|---:|---:|---:|",
    ]
    for g in report["groups"]:
        occ = g["occlusion"]
        n = 2 * g["occlusion_texts"]
        lines.append(
            f"| ~{g['target_tokens']} ({g['mean_tokens']:.0f}) | {g['forward']['ratio']:.2f} | "
            f"{g['forward+backward']['ratio']:.2f} | {occ['eager'] / n:.2f} → "
            f"{occ['sdpa'] / n:.2f} ({occ['ratio']:.2f}) |"
        )
    (args.output / "attention.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
