"""Benchmark the explanation server over loopback with the alert-triage demo model.

For ``grad_x_input`` and ``integrated_gradients`` (16 Gauss-Legendre steps), at
concurrency 1, 8 and 32, measures p50/p95 latency of ``POST /v1/explain`` (one alert
per request) and throughput (explanations/s) of:

* the server with micro-batching on (the default settings),
* the same server with batching off (every request its own model call),
* the floor: in the benchmark process, a bare forward+backward of the same rows
  (1 row for grad_x_input, 16 for integrated gradients) on one alert; also the
  library's own ``explain()`` on one alert;
* the batched floor: the same passes over a full micro-batch of ``--max-batch``
  different alerts at once, per alert, packed into passes of the size the explainer
  itself uses (on a CPU at most 3,072 tokens). The floor over the batched floor is the most
  that sharing model calls can save per explanation on this machine, so it bounds
  the model's share of the concurrency-32 throughput gain of batching (on a 2-core
  CPU, where a batched call costs nearly the sum of single calls, it was 1.17-1.37x
  for grad_x_input in four runs).

Goals (from the issue): at concurrency 1, p50 <= 2x the floor; at concurrency 32,
throughput >= 3x the batching-off server.

Each server is a real ``python -m textlens.server`` process on 127.0.0.1 (never any
other address); servers run one after the other, never side by side. The load client
runs in this process (asyncio + httpx) and shares the CPU with the server: on a small
machine this is part of what is measured.

Run ``python benchmarks/bench_server.py --help``; results go to
``benchmarks/results/server.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from textlens.demo.alerts import build_alerts_model
from textlens.explainers import make_explainer
from textlens.model import ModelAdapter, pack_batches
from textlens.records import explain_records

RESULTS_DIR = Path(__file__).resolve().parent / "results"
METHODS = {"grad_x_input": {}, "integrated_gradients": {"n_steps": 16}}
ROWS = {"grad_x_input": 1, "integrated_gradients": 16}
CONCURRENCY = (1, 8, 32)


# ---------------------------------------------------------------------------- the floor
def floor_seconds(
    model: ModelAdapter, texts: list[str], rows: int, repeats: int, budget: int
) -> float:
    """Median time per text of bare forward+backward passes over ``texts`` (``rows``
    copies of each), packed under ``budget`` tokens per pass as the explainers pack them.

    With one text this is the floor of one request. With a full micro-batch of texts,
    its ratio to the one-text floor is the most that sharing model calls can save per
    explanation on this machine: the ceiling of the concurrency-32 throughput goal.
    """
    encoding = model.encode(texts)
    index = [i for i in range(len(texts)) for _ in range(rows)]
    chunks = [
        encoding.select([index[r] for r in chunk])
        for chunk in pack_batches([encoding.lengths[i] for i in index], budget)
    ]
    times = []
    for _ in range(repeats + 2):
        started = time.perf_counter()
        for sub in chunks:
            embeds = model.word_embeddings(sub.input_ids).detach().requires_grad_(True)
            with torch.enable_grad():
                logits = model.logits(sub, inputs_embeds=embeds)
                (grad,) = torch.autograd.grad(logits[:, 0].sum(), embeds)
            float(grad.sum())
        times.append((time.perf_counter() - started) / len(texts))
    return statistics.median(times[2:])


def library_seconds(
    model: ModelAdapter, record: dict[str, Any], method: str, repeats: int
) -> float:
    """Median time of the library's explain on one record, in process."""
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        explain_records(model, [record], method, **METHODS[method])
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


# ---------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m textlens.server`` on a free loopback port."""

    def __init__(
        self, model_path: Path, *, batching: bool, threads: int, max_wait_ms: float, max_batch: int
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "textlens.server", str(model_path), "--host", "127.0.0.1",
            "--port", str(self.port), "--threads", str(threads), "--time-budget", "600",
            "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--max-texts", "32",
            "-m", "grad_x_input", "-m", "integrated_gradients", "--steps", "16",
        ]  # fmt: skip
        if not batching:
            command.append("--no-batching")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited at start")
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise TimeoutError("the server did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def model_calls(self) -> dict[str, float]:
        calls: dict[str, float] = {}
        for line in httpx.get(self.base + "/metrics", timeout=30).text.splitlines():
            if line.startswith("textlens_model_calls_total{"):
                method = line.split('method="')[1].split('"')[0]
                calls[method] = float(line.rsplit(" ", 1)[1])
        return calls


async def load(
    base: str, records: list[dict[str, Any]], method: str, concurrency: int, n: int
) -> dict[str, Any]:
    """``n`` requests (one alert each) from ``concurrency`` clients; latencies and throughput."""
    latencies: list[float] = []
    statuses: list[int] = []
    next_index = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

        async def worker() -> None:
            for i in next_index:
                body = {"records": [records[i % len(records)]], "methods": [method]}
                started = time.perf_counter()
                response = await client.post("/v1/explain", json=body)
                latencies.append(time.perf_counter() - started)
                statuses.append(response.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "requests": n,
        "errors": sum(s != 200 for s in statuses),
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p95_ms": 1000 * float(np.percentile(latencies, 95)),
        "throughput_per_s": n / wall,
        "wall_s": wall,
    }


def requests_for(method: str, concurrency: int, scale: float) -> int:
    base = {
        "grad_x_input": {1: 40, 8: 96, 32: 192},
        "integrated_gradients": {1: 12, 8: 32, 32: 96},
    }[method][concurrency]
    return max(concurrency, int(base * scale))


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the server and of the floor (default 1: on a small shared "
        "machine, more threads than free cores make every model call many times slower)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the request counts (0.25 for a quick run)",
    )
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=list(CONCURRENCY))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    info = build_alerts_model()
    model = ModelAdapter.from_pretrained(info.path)
    records = [a.record for a in info.heldout]
    text = info.heldout[0].text
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": args.threads,
            "load_average_at_start": os.getloadavg(),
        },
        "model": str(info.path),
        "tokens_per_alert": int(np.mean(model.encode([a.text for a in info.heldout[:50]]).lengths)),
        "settings": {
            "max_wait_ms": args.max_wait_ms,
            "max_batch": args.max_batch,
            "scale": args.scale,
        },
        "floor": {},
        "server": {},
    }  # fmt: skip
    make_explainer("grad_x_input", model).explain([text])  # warm-up
    for method in args.methods:
        batch = [a.text for a in info.heldout[: args.max_batch]]
        # the tokens per pass the explainer itself uses (on a CPU, less than the budget)
        budget, rows = make_explainer(method, model)._pass_tokens(), ROWS[method]
        results["floor"][method] = {
            "forward_backward_ms": 1000 * floor_seconds(model, [text], rows, 15, budget),
            "batched_forward_backward_ms_per_alert": 1000
            * floor_seconds(model, batch, rows, 3, budget),
            "batched_alerts": len(batch),
            "library_explain_ms": 1000 * library_seconds(model, records[0], method, repeats=9),
        }
        print(f"floor {method}: {results['floor'][method]}", flush=True)
    for batching in (True, False):
        mode = "batching_on" if batching else "batching_off"
        results["server"][mode] = {}
        with Server(
            info.path,
            batching=batching,
            threads=args.threads,
            max_wait_ms=args.max_wait_ms,
            max_batch=args.max_batch,
        ) as server:
            for method in args.methods:
                asyncio.run(load(server.base, records, method, 2, 4))  # warm-up
                results["server"][mode][method] = {}
                for concurrency in args.concurrency:
                    before = server.model_calls().get(method, 0.0)
                    n = requests_for(method, concurrency, args.scale)
                    row = asyncio.run(load(server.base, records, method, concurrency, n))
                    row["model_calls"] = server.model_calls().get(method, 0.0) - before
                    results["server"][mode][method][str(concurrency)] = row
                    print(f"{mode} {method} c={concurrency}: {row}", flush=True)
    results["goals"] = goals(results, args.methods, args.concurrency)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "server.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "server.md").write_text(markdown(results, args.methods, args.concurrency))
    print((args.out / "server.md").read_text())


def goals(results: dict[str, Any], methods: list[str], concurrency: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in methods:
        on = results["server"]["batching_on"][method]
        off = results["server"]["batching_off"][method]
        floor = results["floor"][method]["forward_backward_ms"]
        entry: dict[str, Any] = {}
        if "1" in on:
            ratio = on["1"]["p50_ms"] / floor
            entry["c1_p50_over_floor"] = ratio
            entry["c1_p50_goal_met"] = ratio <= 2.0
        batched = results["floor"][method].get("batched_forward_backward_ms_per_alert")
        if batched:
            entry["batching_ceiling"] = floor / batched
        if "32" in on and "32" in off:
            speedup = on["32"]["throughput_per_s"] / off["32"]["throughput_per_s"]
            entry["c32_throughput_over_batching_off"] = speedup
            entry["c32_throughput_goal_met"] = speedup >= 3.0
        out[method] = entry
    return out


def markdown(results: dict[str, Any], methods: list[str], concurrency: list[int]) -> str:
    m = results["machine"]
    lines = [
        "# Server benchmark (alert-triage demo model, loopback)",
        "",
        f"{m['platform']}, {m['cpus']} CPUs, torch {m['torch']}, {m['threads']} torch threads; "
        f"load average at start {m['load_average_at_start'][0]:.1f}. "
        f"~{results['tokens_per_alert']} tokens per alert; one alert per request. "
        f"Batching: max_wait {results['settings']['max_wait_ms']:g} ms, "
        f"max_batch {results['settings']['max_batch']}.",
        "",
        "| method | floor fwd+bwd (ms) | batched floor per alert (ms) | ceiling of "
        "batching (floor / batched) | library explain (ms) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for method in methods:
        f = results["floor"][method]
        batched = f.get("batched_forward_backward_ms_per_alert")
        ceiling = f["forward_backward_ms"] / batched if batched else None
        cells = (
            f"{batched:.1f} ({f['batched_alerts']} alerts) | {ceiling:.2f}" if batched else "- | -"
        )
        lines.append(
            f"| {method} | {f['forward_backward_ms']:.1f} | {cells} "
            f"| {f['library_explain_ms']:.1f} |"
        )
    lines += [
        "",
        "| method | concurrency | batching | p50 (ms) | p95 (ms) | explanations/s "
        "| model calls / requests | errors |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method in methods:
        for c in concurrency:
            for mode in ("batching_on", "batching_off"):
                r = results["server"][mode][method][str(c)]
                lines.append(
                    f"| {method} | {c} | {mode.split('_')[1]} | {r['p50_ms']:.1f} "
                    f"| {r['p95_ms']:.1f} | {r['throughput_per_s']:.2f} "
                    f"| {r['model_calls']:.0f} / {r['requests']} | {r['errors']} |"
                )
    lines += [
        "",
        "| method | c=1 p50 / floor (goal <= 2) | c=32 throughput on/off (goal >= 3) |",
        "| --- | ---: | ---: |",
    ]
    for method, g in results["goals"].items():
        p50 = (
            f"{g['c1_p50_over_floor']:.2f} ({'met' if g['c1_p50_goal_met'] else 'NOT met'})"
            if "c1_p50_over_floor" in g
            else "-"
        )
        tput = (
            f"{g['c32_throughput_over_batching_off']:.2f} "
            f"({'met' if g['c32_throughput_goal_met'] else 'NOT met'})"
            if "c32_throughput_over_batching_off" in g
            else "-"
        )
        lines.append(f"| {method} | {p50} | {tput} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
