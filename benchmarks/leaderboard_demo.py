"""The project's own quality figures: the evaluation leaderboard of the demo model.

Runs :func:`textlens.evaluation.leaderboard` for the demo sentiment model (MiniLM
fine-tuned on tweets, built and cached on first use) on the first N held-out tweets
(default 200) with every registered method at its default parameters, and writes

- ``benchmarks/results/leaderboard.json`` (every figure, with settings and timings),
- ``benchmarks/results/leaderboard.md`` (the table, agreement matrices, recommendation),
- ``benchmarks/results/leaderboard.html`` (the report with the curves).

Seconds per text depend on the machine and its load: the thread count is recorded.
Run ``python benchmarks/leaderboard_demo.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="held-out tweets (default 200)")
    parser.add_argument("--methods", help="comma-separated methods (default: every registered one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--budget-ms", type=float, default=100.0, help="time budget per text (ms)")
    parser.add_argument("--masking", default="mask", choices=["mask", "delete", "pad"])
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        help="method.name=value, e.g. lime.budget=128 (repeatable)",
    )
    parser.add_argument("--stability-texts", type=int, default=16)
    parser.add_argument("--sanity-texts", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    from textlens.demo.build import build_sentiment_model
    from textlens.evaluation import leaderboard
    from textlens.explainers import REGISTRY
    from textlens.model import ModelAdapter

    info = build_sentiment_model(progress=True)
    model = ModelAdapter.from_pretrained(info.path)
    examples = [{"text": e.text, "label": e.label} for e in info.heldout[: args.n]]
    methods = args.methods.split(",") if args.methods else list(REGISTRY)
    params = _params(args.param)
    start = time.perf_counter()
    board = leaderboard(
        model,
        examples,
        methods,
        params=params,
        budget_ms=args.budget_ms,
        masking=args.masking,
        stability_texts=args.stability_texts,
        sanity_texts=args.sanity_texts,
        progress=lambda line: print(
            f"[{time.perf_counter() - start:7.0f}s] {line}", file=sys.stderr, flush=True
        ),
    )
    total = time.perf_counter() - start
    board.settings["benchmark"] = {
        "script": "benchmarks/leaderboard_demo.py",
        "argv": sys.argv[1:] if argv is None else argv,
        "total_seconds": round(total, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "demo_model_accuracy_heldout": info.accuracy,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "leaderboard.json").write_text(
        json.dumps(board.to_dict(), indent=1), encoding="utf-8"
    )
    (args.out / "leaderboard.md").write_text(
        board.to_markdown()
        + f"\nTotal run time {total:.0f} s on {args.threads} torch thread(s).\n",
        encoding="utf-8",
    )
    board.write_html(args.out / "leaderboard.html", title="textlens: demo model leaderboard")
    print(board.to_text())
    print(f"\nwrote {args.out}/leaderboard.{{json,md,html}} in {total:.0f} s", file=sys.stderr)
    return 0


def _params(items: list[str]) -> dict[str, dict[str, object]]:
    params: dict[str, dict[str, object]] = {}
    for item in items:
        key, _, raw = item.partition("=")
        method, _, name = key.partition(".")
        if not (method and name and raw):
            raise SystemExit(f"--param expects method.name=value, got {item!r}")
        params.setdefault(method, {})[name] = (
            json.loads(raw) if raw[0] in "-0123456789[{tfn" else raw
        )
    return params


if __name__ == "__main__":
    sys.exit(main())
