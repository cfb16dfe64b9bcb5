"""Offline demo model for ``textlens demo``: data, fine-tuning and caching.

The data helpers are imported eagerly (standard library only); the builder,
which needs torch and transformers, is imported on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from textlens.demo.data import (
    DEFAULT_MIN_CONFIDENCE,
    LABELS,
    DemoDataError,
    Example,
    clean_tweet,
    load_sentiment_tweets,
    load_unseen_tweets,
    locate_minilm,
    locate_tweets_csv,
)

if TYPE_CHECKING:
    from textlens.demo.build import (
        DEFAULT_EPOCHS,
        DEFAULT_N_HELDOUT,
        DEFAULT_N_TRAIN,
        DemoModelInfo,
        build_sentiment_model,
        default_cache_dir,
        read_cached_model,
    )

_LAZY_FROM_BUILD = frozenset(
    {
        "DEFAULT_EPOCHS",
        "DEFAULT_N_HELDOUT",
        "DEFAULT_N_TRAIN",
        "DemoModelInfo",
        "build_sentiment_model",
        "default_cache_dir",
        "read_cached_model",
    }
)

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_N_HELDOUT",
    "DEFAULT_N_TRAIN",
    "LABELS",
    "DemoDataError",
    "DemoModelInfo",
    "Example",
    "build_sentiment_model",
    "clean_tweet",
    "default_cache_dir",
    "load_sentiment_tweets",
    "load_unseen_tweets",
    "locate_minilm",
    "locate_tweets_csv",
    "read_cached_model",
]


def __getattr__(name: str) -> Any:
    """Import builder attributes (and torch) only when first used."""
    if name in _LAZY_FROM_BUILD:
        return getattr(importlib.import_module("textlens.demo.build"), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
