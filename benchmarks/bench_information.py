"""Benchmark: the fast information explainer against the published reference procedure.

Guan et al. (ICML 2019, https://proceedings.mlr.press/v97/guan19a.html) fit the noise of
one sentence at a time with Adam, one noise sample per step, for 5,000 steps. That
reference loop is implemented here from the equations (it shares only ``Phi`` and ``r``
with the library) and run in the same process as the fast version, on the demo model:

* Phi = output of layer 3 (all positions) and Phi = logits;
* seconds per sentence, fast vs reference (process CPU time, which the other jobs on a
  shared machine do not inflate, and wall time);
* Spearman correlation of each sentence's sigma ranking, fast vs reference;
* the full layer sweep (every layer) of one ~30-word sentence.

The reference costs minutes per sentence on a CPU, so ``--reference-sentences N`` runs it
on the first N sentences only (the output says how many); the fast version always runs
on all of them.

    python benchmarks/bench_information.py                         # defaults
    python benchmarks/bench_information.py --reference-sentences 30  # the full comparison
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from textlens.explainers.information import INITIAL_THETA, InformationLoss
from textlens.layers import layer_sweep
from textlens.model import ModelAdapter

RESULTS = Path(__file__).parent / "results"
SWEEP_TEXT = (
    "We waited almost three hours at the gate without any update from the staff, and when the "
    "flight finally boarded the crew were friendly but the seats were broken and dirty"
)


# ---------------------------------------------------------------------------- the reference
def reference_fit(
    explainer: InformationLoss, text: str, *, steps: int, learning_rate: float, seed: int
) -> np.ndarray:
    """The published procedure for one sentence: Adam on theta, one noise sample per step.

    sigma = scale * sigmoid(theta); each step draws eps ~ N(0, sigma^2 I) for every
    non-special token, and minimises
    ``mean_j (Phi_j(x + eps) - s_j)^2 / r_j^2 - lam * mean_i log sigma_i``
    (the same objective and the same starting point as the fast version).
    Returns sigma of the non-special tokens after ``steps`` steps.
    """
    model = explainer.model
    encoding = model.encode([text])
    r = torch.as_tensor(explainer.spread(), dtype=torch.float32)
    state = explainer.state
    with torch.no_grad():
        x = model.word_embeddings(encoding.input_ids).float()
        s = state(encoding, x)
    noisy_tokens = ~torch.tensor(encoding.special[0])
    scale = explainer.effective_scale
    theta = torch.full((x.shape[1],), INITIAL_THETA, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        sigma = scale * torch.sigmoid(theta) * noisy_tokens
        eps = torch.randn(x.shape, generator=generator) * sigma[None, :, None]
        distortion = (((state(encoding, x + eps) - s) / r) ** 2).mean()
        loss = distortion - explainer.lam * torch.log(sigma[noisy_tokens]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (scale * torch.sigmoid(theta))[noisy_tokens].numpy().astype(np.float64)


# ---------------------------------------------------------------------------- measuring
class Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two sigma vectors (ties get average ranks); 1.0 if both are
    constant."""
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0
    value = spearmanr(a, b).correlation
    return float(value) if value == value else 0.0


def fast_run(
    model: ModelAdapter, encoding: Any, layer: int | str, seed: int, precision: str
) -> dict[str, Any]:
    """The fast version on every sentence, with ``seed`` and ``seed + 1`` (for self-agreement)."""
    explainer = InformationLoss(model, layer=layer, seed=seed, precision=precision)
    explainer.spread()  # computes and caches r (not timed: a one-off per model and layer)
    with Clock() as clock:
        fits = explainer.fit(encoding)
    sigma = [f.sigma[~np.isnan(f.sigma)] for f in fits]
    with Clock() as other_clock:
        other = InformationLoss(model, layer=layer, seed=seed + 1, precision=precision).fit(
            encoding
        )
    self_rho = [spearman(a, b.sigma[~np.isnan(b.sigma)]) for a, b in zip(sigma, other, strict=True)]
    n = len(fits)
    return {
        "explainer": explainer,
        "fits": fits,
        "sigma": sigma,
        "clock": clock,
        "summary": {
            "total_wall_s": clock.wall,
            "total_cpu_s": clock.cpu,
            "wall_s_per_sentence": clock.wall / n,
            "cpu_s_per_sentence": clock.cpu / n,
            "iterations": [f.iterations for f in fits],
            "median_iterations": statistics.median(f.iterations for f in fits),
            "converged": sum(f.converged for f in fits),
            "other_seed_cpu_s_per_sentence": other_clock.cpu / n,
            "spearman_vs_other_seed": {"median": statistics.median(self_rho), "min": min(self_rho)},
        },
    }


def compare_state(
    model: ModelAdapter,
    texts: list[str],
    layer: int | str,
    *,
    reference_sentences: int,
    reference_steps: int,
    reference_lr: float,
    seed: int,
    precisions: tuple[str, ...] = ("float32",),
) -> list[dict[str, Any]]:
    """One result per precision of the fast version, all against the same reference runs."""
    encoding = model.encode(texts)
    fast = {
        precision: fast_run(model, encoding, layer, seed, precision) for precision in precisions
    }
    base = InformationLoss(model, layer=layer, seed=seed)  # the reference's Phi, r and scale

    reference: list[dict[str, Any]] = []
    for i, text in enumerate(texts[:reference_sentences]):
        with Clock() as clock:
            sigma = reference_fit(
                base, text, steps=reference_steps, learning_rate=reference_lr, seed=seed
            )
        rhos = {p: spearman(run["sigma"][i], sigma) for p, run in fast.items()}
        reference.append(
            {
                "index": i,
                "tokens": len(sigma),
                "wall_s": clock.wall,
                "cpu_s": clock.cpu,
                "spearman": rhos,
            }
        )
        shown = ", ".join(f"{p} {rho:.3f}" for p, rho in rhos.items())
        print(
            f"  reference {i + 1}/{reference_sentences}: {clock.cpu:.1f} s CPU, spearman {shown}",
            flush=True,
        )

    n = len(texts)
    results = []
    for precision, run in fast.items():
        result: dict[str, Any] = {
            "state": base.state.describe(),
            "layer": layer,
            "precision": precision,
            "sentences": n,
            "params": run["explainer"].get_params(),
            "fast": run["summary"],
            "reference": {
                "sentences": len(reference),
                "steps": reference_steps,
                "learning_rate": reference_lr,
                "samples_per_step": 1,
                "per_sentence": [{**r, "spearman": r["spearman"][precision]} for r in reference],
            },
        }
        if reference:
            clock = run["clock"]
            ref_cpu = statistics.mean(r["cpu_s"] for r in reference)
            ref_wall = statistics.mean(r["wall_s"] for r in reference)
            fast_cpu = statistics.mean(
                _fast_share(clock.cpu, run["fits"], r["index"]) for r in reference
            )
            rhos = [r["spearman"][precision] for r in reference]
            result["reference"].update(
                {"cpu_s_per_sentence": ref_cpu, "wall_s_per_sentence": ref_wall}
            )
            result["speedup_cpu"] = ref_cpu / (clock.cpu / n)
            result["speedup_wall"] = ref_wall / (clock.wall / n)
            result["speedup_cpu_same_sentences"] = ref_cpu / fast_cpu
            result["spearman"] = {
                "median": statistics.median(rhos),
                "min": min(rhos),
                "mean": statistics.mean(rhos),
            }
        results.append(result)
    return results


def _fast_share(total_cpu: float, fits: list[Any], index: int) -> float:
    """The fast version's CPU time attributed to one sentence (by its share of steps x tokens)."""
    work = [f.iterations * len(f.sigma) for f in fits]
    return total_cpu * work[index] / sum(work)


def time_sweep(
    model: ModelAdapter, text: str, seed: int, precision: str = "float32"
) -> dict[str, Any]:
    layers = list(range(1, model.num_layers + 1))
    layer_sweep(model, ["warm up"], layers=layers, seed=seed, precision=precision)  # caches r
    with Clock() as clock:
        [sweep] = layer_sweep(model, [text], seed=seed, precision=precision)
    return {
        "text": text,
        "precision": precision,
        "words": len(sweep.words),
        "tokens": len(sweep.tokens),
        "layers": list(sweep.layers),
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
        "iterations": list(sweep.iterations),
        "converged": list(sweep.converged),
        "word_sigma_over_scale": [
            [round(v / sweep.scale, 4) for v in row] for row in sweep.word_sigma
        ],
    }


# ---------------------------------------------------------------------------- report
def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Information explainer (Guan et al. 2019): fast vs reference",
        "",
        f"Model: demo sentiment model ({env['model']}), {report['sentences']} held-out sentences "
        f"(mean {report['mean_tokens']:.1f} tokens). torch {env['torch']}, "
        f"{env['threads']} thread(s), {env['machine']}. Command: `{report['command']}`.",
        "",
        "Times are process CPU seconds (the machine is shared; wall seconds in the JSON). The "
        "reference is the published loop (Adam, lr "
        f"{report['states'][0]['reference']['learning_rate']}, one noise sample per step, "
        f"{report['states'][0]['reference']['steps']} steps, one sentence at a time), run on the "
        "first N sentences, always in float32; the fast version runs on all of them, batched, "
        "with its model calls in the given precision.",
        "",
        "| Phi | precision | fast s/sentence | reference s/sentence (N) | speedup | "
        "Spearman vs reference median (min) | fast vs other seed median | median steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for state in report["states"]:
        fast = state["fast"]
        ref = state["reference"]
        if ref["sentences"]:
            ref_cell = f"{ref['cpu_s_per_sentence']:.1f} ({ref['sentences']})"
            speed = f"{state['speedup_cpu']:.0f}x"
            rho = f"{state['spearman']['median']:.3f} ({state['spearman']['min']:.3f})"
        else:
            ref_cell, speed, rho = "not run", "-", "-"
        lines.append(
            f"| {state['state']} | {state.get('precision', 'float32')} | "
            f"{fast['cpu_s_per_sentence']:.2f} | {ref_cell} | {speed} | {rho} | "
            f"{fast['spearman_vs_other_seed']['median']:.3f} | {fast['median_iterations']} |"
        )
    lines.append("")
    for sweep in report["sweeps"]:
        lines.append(
            f"Layer sweep of one {sweep['words']}-word sentence ({sweep['tokens']} tokens), layers "
            f"{sweep['layers'][0]}..{sweep['layers'][-1]}, {sweep['precision']}: "
            f"{sweep['cpu_s']:.1f} s CPU ({sweep['wall_s']:.1f} s wall), "
            f"steps per layer {sweep['iterations']}."
        )
    lines += [
        "",
        "Goal (issue 4): >= 50x faster at median Spearman >= 0.9.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=30)
    parser.add_argument(
        "--reference-sentences",
        type=int,
        default=3,
        help="run the reference loop on the first N sentences (default 3)",
    )
    parser.add_argument("--reference-steps", type=int, default=5000)
    parser.add_argument("--reference-lr", type=float, default=0.01)
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-logits", action="store_true", help="only Phi = the layer's output")
    parser.add_argument(
        "--precisions",
        default="float32",
        help="comma-separated precisions of the fast version's model calls: float32, "
        "bfloat16 (the reference loop is always float32 and runs once)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from textlens.demo.build import build_sentiment_model

    info = build_sentiment_model()
    model = ModelAdapter.from_pretrained(info.path)
    texts = [e.text for e in info.heldout[: args.sentences]]
    lengths = model.encode(texts).lengths
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    unknown = set(precisions) - {"float32", "bfloat16"}
    if unknown or not precisions:
        parser.error(f"--precisions: give float32 and/or bfloat16, not {args.precisions!r}")
    states = []
    for layer in (args.layer,) if args.skip_logits else (args.layer, "logits"):
        print(f"Phi = {layer}", flush=True)
        states += compare_state(
            model,
            texts,
            layer,
            reference_sentences=min(args.reference_sentences, len(texts)),
            reference_steps=args.reference_steps,
            reference_lr=args.reference_lr,
            seed=args.seed,
            precisions=precisions,
        )
    report: dict[str, Any] = {
        "command": "python benchmarks/bench_information.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "sentences": len(texts),
        "mean_tokens": float(np.mean(lengths)),
        "environment": {
            "model": str(info.path),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": (
                f"{platform.processor() or platform.machine()}, {_cpu_count()} CPUs (shared)"
            ),
            "python": platform.python_version(),
        },
        "states": states,
        "sweeps": []
        if args.skip_sweep
        else [time_sweep(model, SWEEP_TEXT, args.seed, p) for p in precisions],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "information.json").write_text(json.dumps(report, indent=2, default=_json_default))
    if report["sweeps"]:
        (args.out / "information.md").write_text(markdown(report))
        print(markdown(report))
    return 0


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())
