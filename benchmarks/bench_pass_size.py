"""How the size of a forward+backward pass changes the cost per token on this machine.

Integrated gradients (50 Gauss-Legendre steps) on the demo model, with its passes capped
at each of ``--sizes`` tokens (as counted for the token budget, attention included), on
texts of about 20, 60, 200 and 512 tokens; every size is timed twice, in increasing then
decreasing order, and the two runs are averaged. This is the measurement behind
``textlens.explainers.gradient.CPU_PASS_TOKENS`` (the pass size the gradient methods use
on a CPU whatever the budget). Results go to ``benchmarks/results/pass_size.{json,md}``.

    python benchmarks/bench_pass_size.py [--threads 1] [--sizes 2048 3072 4096 8192]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gradients as bg

from textlens.explainers import gradient
from textlens.explainers.gradient import IntegratedGradients

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: (target tokens, number of texts)
GROUPS = ((20, 12), (60, 6), (200, 2), (bg.LONG_TEXT_TOKENS, 1))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 3072, 4096, 8192])
    parser.add_argument("--output", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    adapter, tweets, model_name = bg.load_bench_model("demo")
    IntegratedGradients(adapter, n_steps=2).explain(tweets[:2])  # warm-up
    report = {"model": model_name, "machine": bg.machine_info(args.threads), "groups": []}
    for target, count in GROUPS:
        if target >= bg.LONG_TEXT_TOKENS:
            texts = bg.build_texts(adapter, tweets[::-1], target - 4, count, tolerance=4)
        else:
            texts = bg.build_texts(adapter, tweets, target, count)
        runs: dict[int, list[float]] = {size: [] for size in args.sizes}
        for order in (args.sizes, args.sizes[::-1]):
            for size in order:
                gradient.CPU_PASS_TOKENS = size  # the cap under test, whatever the default
                explainer = IntegratedGradients(adapter, n_steps=50, max_batch_tokens=size)
                started = time.process_time()
                explainer.explain(texts)
                runs[size].append((time.process_time() - started) / len(texts))
        tokens = sum(bg.token_count(adapter, t) for t in texts) / len(texts)
        group = {
            "target_tokens": target,
            "n_texts": len(texts),
            "mean_tokens": tokens,
            "seconds_per_text": {str(s): sum(v) / len(v) for s, v in runs.items()},
            "runs": {str(s): v for s, v in runs.items()},
        }
        report["groups"].append(group)
        print(target, {s: round(t, 3) for s, t in group["seconds_per_text"].items()}, flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "pass_size.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [
        f"IG, 50 Gauss-Legendre steps, demo model; {m['cpu']}, torch {m['torch']} with "
        f"{m['torch_threads']} thread(s); process CPU seconds per text, mean of two runs.",
        "",
        "| texts (mean tokens) | " + " | ".join(f"passes ≤ {s}" for s in args.sizes) + " |",
        "|---|" + "---:|" * len(args.sizes),
    ]
    for g in report["groups"]:
        cells = " | ".join(f"{g['seconds_per_text'][str(s)]:.3f}" for s in args.sizes)
        lines.append(f"| {g['n_texts']} ({g['mean_tokens']:.0f}) | {cells} |")
    (args.output / "pass_size.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
