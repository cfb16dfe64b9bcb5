"""The benchmark scripts' own logic (their figures come from running them, not from here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_gradients():
    return _load("bench_gradients")


@pytest.mark.parametrize("width", [12, 20, 60, 199, 207, 400, 512, 9000])
@pytest.mark.parametrize("budget", [1000, 8192])
def test_captum_chunking_stays_within_the_budget(bench_gradients, budget, width) -> None:
    steps = 50
    texts, internal = bench_gradients.captum_chunking(budget, width, steps)
    assert texts >= 1 and internal >= 1
    if width <= budget:  # a row wider than the budget still runs, one at a time
        assert internal * width <= budget
    # every step of every text of the call is in some chunk, chunks of equal size
    assert internal % texts == 0
    assert (internal // texts) * -(-steps // (internal // texts)) >= steps


def test_captum_chunking_splits_a_200_token_text_into_two_passes(bench_gradients) -> None:
    assert bench_gradients.captum_chunking(8192, 207, 50) == (1, 25)
    assert bench_gradients.captum_chunking(8192, 20, 50) == (8, 400)


def test_memory_only_needs_earlier_results(bench_gradients, tmp_path) -> None:
    with pytest.raises(SystemExit, match="does not exist: run the benchmark without"):
        bench_gradients.main(["--memory-only", "--output", str(tmp_path)])


def test_memory_only_and_no_memory_contradict(bench_gradients, tmp_path) -> None:
    with pytest.raises(SystemExit, match="contradict"):
        bench_gradients.main(["--memory-only", "--no-memory", "--output", str(tmp_path)])
