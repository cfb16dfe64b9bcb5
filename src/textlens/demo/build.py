"""Build (once) and cache the sentiment classifier used by ``textlens demo``.

The model is ``all-MiniLM-L6-v2`` fine-tuned on balanced positive/negative
tweets, entirely offline, with a plain PyTorch loop. The result is written to
a cache folder through a temporary sibling folder that is renamed into place
only once complete, so an interrupted build never looks like a usable cache.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import platformdirs
import torch
from tqdm.auto import tqdm

from textlens.demo.data import (
    DEFAULT_MIN_CONFIDENCE,
    LABELS,
    DemoDataError,
    Example,
    load_sentiment_tweets,
    locate_minilm,
)

__all__ = [
    "BASE_MODEL_NAME",
    "CACHE_DIR_ENV",
    "DEFAULT_EPOCHS",
    "DEFAULT_N_HELDOUT",
    "DEFAULT_N_TRAIN",
    "METADATA_FILENAME",
    "DemoModelInfo",
    "build_sentiment_model",
    "default_cache_dir",
    "read_cached_model",
]

#: Training examples used by default (balanced, half per class).
DEFAULT_N_TRAIN: int = 2000
#: Passes over the training set used by default.
DEFAULT_EPOCHS: int = 1
#: Held-out examples used by default (balanced, half per class).
DEFAULT_N_HELDOUT: int = 500

#: Environment variable that overrides the root of the textlens cache.
CACHE_DIR_ENV = "TEXTLENS_CACHE_DIR"
#: Name of the metadata file that marks a complete cached model.
METADATA_FILENAME = "textlens_demo.json"
#: Hugging Face name of the bundled base model (recorded, never downloaded).
BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

_CACHE_SUBDIR = "demo-sentiment-minilm"
_FORMAT_VERSION = 1
_TMP_MARKER = ".tmp-"
_STALE_TMP_SECONDS = 6 * 3600
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")
_ID2LABEL = dict(enumerate(LABELS))
_LABEL2ID = {label: index for index, label in _ID2LABEL.items()}


@dataclass(frozen=True)
class _Hyperparameters:
    """Fine-tuning settings that are not part of the public signature.

    Tuned on this corpus for a one-epoch CPU budget: batches of 16 (more
    updates per example than 32: about +2 points held-out accuracy at the same
    cost), a body learning rate of 1e-4 (5e-5 lost about 5 points, 2e-4 was no
    better) and a 10x faster randomly initialised head (a 1e-4 head lost about
    2 points). Tweets are short, so 64 tokens truncate almost none.
    """

    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int = 64
    bucket_batches: int = 20
    max_grad_norm: float = 1.0
    min_confidence: float = DEFAULT_MIN_CONFIDENCE


@dataclass(frozen=True)
class DemoModelInfo:
    """Description of a built (or cached) demo model.

    Parameters
    ----------
    path : pathlib.Path
        Folder loadable with ``AutoModelForSequenceClassification`` and
        ``AutoTokenizer``.
    accuracy : float
        Accuracy on the held-out tweets.
    heldout : list of Example
        The held-out tweets (never seen in training).
    n_train : int
        Number of training examples.
    epochs : int
        Number of passes over the training examples.
    train_seconds : float
        Wall-clock seconds of the fine-tuning loop.
    from_cache : bool
        ``True`` when the model was read from the cache, not built now.
    """

    path: Path
    accuracy: float
    heldout: list[Example]
    n_train: int
    epochs: int
    train_seconds: float
    from_cache: bool


def default_cache_dir() -> Path:
    """Return the default folder of the cached demo model.

    Returns
    -------
    pathlib.Path
        ``<root>/demo-sentiment-minilm``, where ``<root>`` is
        ``$TEXTLENS_CACHE_DIR`` if set, else the per-user cache folder of
        ``textlens`` given by :mod:`platformdirs`.
    """
    root = os.environ.get(CACHE_DIR_ENV) or platformdirs.user_cache_dir("textlens")
    return Path(root).expanduser() / _CACHE_SUBDIR


def read_cached_model(path: Path) -> DemoModelInfo | None:
    """Describe the cached model in ``path``, if complete.

    Only the metadata file is read, so this is fast.

    Parameters
    ----------
    path : pathlib.Path
        Model folder, as returned in :attr:`DemoModelInfo.path`.

    Returns
    -------
    DemoModelInfo or None
        The description (with ``from_cache=True``), or ``None`` if the
        folder is missing, incomplete, unreadable or of another format.
    """
    try:
        meta = json.loads((path / METADATA_FILENAME).read_text(encoding="utf-8"))
        if meta.get("format_version") != _FORMAT_VERSION:
            return None
        if not all((path / name).is_file() for name in _REQUIRED_FILES):
            return None
        return DemoModelInfo(
            path=path,
            accuracy=float(meta["accuracy"]),
            heldout=[
                Example(text=str(item["text"]), label=str(item["label"]))
                for item in meta["heldout"]
            ],
            n_train=int(meta["n_train"]),
            epochs=int(meta["epochs"]),
            train_seconds=float(meta["train_seconds"]),
            from_cache=True,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _recipe_changes(path: Path, hyper: Any) -> str:
    """Say how the cached model in ``path`` was trained differently from ``hyper``.

    Parameters
    ----------
    path : pathlib.Path
        A cached model folder (its metadata file is read).
    hyper : dataclass instance
        The fine-tuning settings the current code would use.

    Returns
    -------
    str
        ``""`` when the recorded settings are ``hyper``'s; otherwise the
        settings that differ, e.g. ``"batch_size 32, now 16"``. Metadata that
        records no settings (alert models cached before they were recorded)
        counts as current: ``""``.
    """
    current = asdict(hyper)
    try:
        meta = json.loads((path / METADATA_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""  # the caller has just read it: only a concurrent rebuild gets here
    recorded = meta.get("hyperparameters") if isinstance(meta, dict) else None
    if recorded is None:
        return ""
    if not isinstance(recorded, dict):
        return "unreadable fine-tuning settings"
    changed = [
        f"{key} {recorded.get(key, 'unset')}, now {value}"
        for key, value in current.items()
        if recorded.get(key) != value
    ]
    changed += [f"{key} {recorded[key]}, now unused" for key in recorded if key not in current]
    return "; ".join(changed)


def _is_current(path: Path, hyper: Any, what: str) -> bool:
    """True if the cached ``what`` in ``path`` was fine-tuned with ``hyper``; else warn.

    The warning (stack level: the caller of the public builder) says the model will
    be fine-tuned again and names the settings that changed.
    """
    stale = _recipe_changes(path, hyper)
    if stale:
        warnings.warn(
            f"The cached {what} in {path} was fine-tuned by an older textlens with other "
            f"settings ({stale}); fine-tuning it again with the current ones.",
            UserWarning,
            stacklevel=3,
        )
    return not stale


def build_sentiment_model(
    *,
    cache_dir: Path | None = None,
    rebuild: bool = False,
    n_train: int = DEFAULT_N_TRAIN,
    epochs: int = DEFAULT_EPOCHS,
    n_heldout: int = DEFAULT_N_HELDOUT,
    seed: int = 0,
    progress: bool = True,
    num_threads: int | None = None,
) -> DemoModelInfo:
    """Return the demo sentiment model, fine-tuning and caching it if needed.

    If ``cache_dir`` already holds a complete model and ``rebuild`` is false,
    it is returned at once, whatever the other arguments (they only apply to
    a new build), unless it was fine-tuned with other settings than this
    version of textlens uses (an older textlens's cache): then it is built
    again, with a warning. Otherwise all-MiniLM-L6-v2 is fine-tuned on tweets from
    :func:`~textlens.demo.data.load_sentiment_tweets`, evaluated on the
    held-out tweets and saved (safetensors weights, tokenizer and
    ``textlens_demo.json``) atomically into ``cache_dir``.

    Parameters
    ----------
    cache_dir : pathlib.Path, optional
        Folder of the cached model; defaults to :func:`default_cache_dir`.
    rebuild : bool, default False
        Build even if a cached model exists, then replace it.
    n_train : int, default DEFAULT_N_TRAIN
        Training examples (even; half per class).
    epochs : int, default DEFAULT_EPOCHS
        Passes over the training examples.
    n_heldout : int, default DEFAULT_N_HELDOUT
        Held-out examples for the accuracy estimate (even).
    seed : int, default 0
        Seed of data selection, classifier initialisation, dropout and
        batch order. The caller's global RNG state is left untouched.
    progress : bool, default True
        Show tqdm progress bars (on stderr).
    num_threads : int, optional
        Torch CPU threads to use while building; the previous setting is
        restored afterwards. ``None`` keeps the current setting.

    Returns
    -------
    DemoModelInfo
        Where the model is and how well it did on the held-out tweets.

    Raises
    ------
    DemoDataError
        If the bundled weights or tweets are unavailable.
    ValueError
        If an argument is out of range.
    """
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    hyper = _Hyperparameters()
    if not rebuild:
        cached = read_cached_model(target)
        if cached is not None and _is_current(target, hyper, "demo model"):
            return cached
    if epochs < 1:
        msg = f"epochs must be >= 1, got {epochs}"
        raise ValueError(msg)
    if num_threads is not None and num_threads < 1:
        msg = f"num_threads must be >= 1, got {num_threads}"
        raise ValueError(msg)
    _check_replaceable(target)
    train, heldout = load_sentiment_tweets(
        seed=seed, min_confidence=hyper.min_confidence, n_train=n_train, n_heldout=n_heldout
    )
    _remove_stale_tmp_dirs(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_MARKER}", dir=target.parent))
    try:
        with _torch_threads(num_threads), torch.random.fork_rng(devices=[]):
            meta = _build_into(
                tmp, train, heldout, epochs=epochs, seed=seed, hyper=hyper, progress=progress
            )
        _write_metadata(tmp, meta)
        return _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_into(
    folder: Path,
    train: Sequence[Example],
    heldout: Sequence[Example],
    *,
    epochs: int,
    seed: int,
    hyper: _Hyperparameters,
    progress: bool,
) -> dict[str, Any]:
    """Fine-tune, evaluate and save model and tokenizer; return metadata."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    model, tokenizer = _load_base()
    train_ids = _encode(tokenizer, [example.text for example in train], hyper.max_length)
    train_labels = [_LABEL2ID[example.label] for example in train]
    train_seconds = _fine_tune(
        model, train_ids, train_labels, epochs=epochs, seed=seed, hyper=hyper, progress=progress
    )
    heldout_ids = _encode(tokenizer, [example.text for example in heldout], hyper.max_length)
    accuracy = _evaluate(
        model,
        heldout_ids,
        [_LABEL2ID[example.label] for example in heldout],
        hyper=hyper,
        progress=progress,
    )
    with _quiet_transformers():
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return {
        "format_version": _FORMAT_VERSION,
        "base_model": BASE_MODEL_NAME,
        "labels": list(LABELS),
        "accuracy": accuracy,
        "n_train": len(train),
        "n_heldout": len(heldout),
        "epochs": epochs,
        "seed": seed,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - started,
        "num_threads": torch.get_num_threads(),
        "hyperparameters": asdict(hyper),
        "versions": {"torch": torch.__version__, "transformers": _transformers_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "heldout": [{"text": example.text, "label": example.label} for example in heldout],
    }


def _transformers_version() -> str:
    """Return the installed transformers version."""
    import transformers

    return str(transformers.__version__)


@contextlib.contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set the number of torch intra-op CPU threads."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars, then restore them."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _load_base() -> tuple[Any, Any]:
    """Load the bundled MiniLM with a fresh 2-class head, and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = str(locate_minilm())
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(LABELS),
            id2label=_ID2LABEL,
            label2id=_LABEL2ID,
            local_files_only=True,
            attn_implementation="eager",
        )
    return model, tokenizer


def _encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Tokenize texts (truncated, unpadded) into lists of token ids."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [list(ids) for ids in encoded["input_ids"]]


def _collate(rows: Sequence[list[int]]) -> dict[str, torch.Tensor]:
    """Right-pad token ids to the longest row; return model inputs."""
    width = max(len(row) for row in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[index, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _bucketed_batches(
    lengths: Sequence[int], batch_size: int, bucket_batches: int, rng: random.Random
) -> list[list[int]]:
    """Group indices into batches of similar length, in random order.

    Indices are shuffled, cut into buckets of ``bucket_batches`` batches,
    sorted by length within each bucket and split into batches, whose order
    is shuffled again. This keeps padding low while batches stay random.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    bucket_size = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket_size):
        bucket = sorted(order[start : start + bucket_size], key=lengths.__getitem__)
        batches.extend(
            bucket[offset : offset + batch_size] for offset in range(0, len(bucket), batch_size)
        )
    rng.shuffle(batches)
    return batches


def _linear_schedule(total_steps: int, warmup_ratio: float) -> Any:
    """Return a LambdaLR factor: linear warm-up, then linear decay to zero."""
    warmup = max(1, math.ceil(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def _make_optimizer(model: torch.nn.Module, hyper: _Hyperparameters) -> torch.optim.Optimizer:
    """AdamW without decay on biases and LayerNorm; a faster-learning head."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        is_head = name.startswith("classifier.")
        decays = param.ndim > 1
        groups.setdefault((is_head, decays), []).append(param)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": hyper.head_learning_rate if is_head else hyper.learning_rate,
                "weight_decay": hyper.weight_decay if decays else 0.0,
            }
            for (is_head, decays), params in groups.items()
        ]
    )


def _fine_tune(
    model: torch.nn.Module,
    token_ids: Sequence[list[int]],
    labels: Sequence[int],
    *,
    epochs: int,
    seed: int,
    hyper: _Hyperparameters,
    progress: bool,
) -> float:
    """Fine-tune ``model`` in place; return the wall-clock seconds taken."""
    started = time.perf_counter()
    rng = random.Random(seed)
    lengths = [len(ids) for ids in token_ids]
    steps_per_epoch = math.ceil(len(token_ids) / hyper.batch_size)
    total_steps = steps_per_epoch * epochs
    optimizer = _make_optimizer(model, hyper)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _linear_schedule(total_steps, hyper.warmup_ratio)
    )
    target = torch.tensor(labels, dtype=torch.long)
    model.train()
    with tqdm(
        total=total_steps, desc="Fine-tuning demo model", unit="batch", disable=not progress
    ) as bar:
        for _ in range(epochs):
            for batch in _bucketed_batches(lengths, hyper.batch_size, hyper.bucket_batches, rng):
                loss = model(**_collate([token_ids[i] for i in batch]), labels=target[batch]).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), hyper.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                bar.update()
    model.eval()
    return time.perf_counter() - started


def _evaluate(
    model: torch.nn.Module,
    token_ids: Sequence[list[int]],
    labels: Sequence[int],
    *,
    hyper: _Hyperparameters,
    progress: bool,
) -> float:
    """Return the accuracy of ``model`` on the given encoded examples."""
    model.eval()
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    batches = [
        order[i : i + hyper.eval_batch_size] for i in range(0, len(order), hyper.eval_batch_size)
    ]
    correct = 0
    with torch.inference_mode():
        for batch in tqdm(
            batches, desc="Evaluating demo model", unit="batch", disable=not progress
        ):
            logits = model(**_collate([token_ids[i] for i in batch])).logits
            predicted = logits.argmax(dim=-1).tolist()
            correct += sum(int(p == labels[i]) for p, i in zip(predicted, batch, strict=True))
    return correct / len(token_ids)


def _write_metadata(folder: Path, meta: dict[str, Any]) -> None:
    """Write the metadata file and flush every file in ``folder`` to disk."""
    (folder / METADATA_FILENAME).write_text(
        json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def _check_replaceable(target: Path) -> None:
    """Refuse to overwrite a path that is not (an older) demo model folder.

    Builds are renamed into place whole, so a folder without the metadata
    file was not written by this module; it may hold the user's files.
    """
    if not target.exists() or (target / METADATA_FILENAME).is_file():
        return
    if target.is_dir() and not any(target.iterdir()):
        return
    msg = (
        f"{target} exists but is not a textlens demo model folder; "
        "remove it or choose another cache directory"
    )
    raise DemoDataError(msg)


def _publish(tmp: Path, target: Path) -> DemoModelInfo:
    """Move the finished build ``tmp`` to ``target``, replacing any old one."""
    old: Path | None = None
    if target.exists():
        old = target.with_name(f".{target.name}{_TMP_MARKER}old-{os.getpid()}-{time.time_ns()}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        # Another process published a build in between: keep theirs.
        winner = read_cached_model(target)
        if winner is None:
            raise
        return winner
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    info = read_cached_model(target)
    if info is None:
        msg = f"The demo model written to {target} cannot be read back"
        raise DemoDataError(msg)
    return replace(info, from_cache=False)


def _remove_stale_tmp_dirs(target: Path) -> None:
    """Delete leftovers of interrupted builds older than a few hours."""
    if not target.parent.is_dir():
        return
    cutoff = time.time() - _STALE_TMP_SECONDS
    for path in target.parent.glob(f".{target.name}{_TMP_MARKER}*"):
        with contextlib.suppress(OSError):
            if path.is_dir() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
