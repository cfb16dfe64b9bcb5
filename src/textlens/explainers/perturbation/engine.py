"""The evaluation engine shared by occlusion, LIME and SHAP.

A perturbation method sees each text as a *coalition game*: a coalition is a boolean
vector over the text's features (True = the feature is kept), and the game's value is
the model's output for the text with every other feature masked. The engine turns
coalitions of many texts into model inputs, and:

- removes duplicates (within a request, and across texts with identical inputs),
- caches every output (all classes' logits, so any target reuses them),
- sorts the inputs by length and packs them into batches whose padded size stays under
  ``max_batch_tokens`` -- which is what bounds memory, whatever the number of samples,
  texts or classes,
- reports progress (a tqdm bar, or a callback ``(done, total)``).

Masking (how a feature is removed), recorded in every explanation's params:

``'mask'``
    every sub-token of the feature is replaced by the tokenizer's mask token
    (``[MASK]``, ``<mask>``), one mask per sub-token, so positions do not move;
``'pad'``
    every sub-token is replaced by the pad token (still attended to); positions do not
    move either, on RoBERTa-style models too (the adapter numbers positions by the
    attention mask, not by the pad ids);
``'delete'``
    the feature's tokens are removed: a shorter, cheaper input.

Precision (``precision='bfloat16'``) runs the forward passes under bfloat16 autocast:
about half the cost per input on CPUs with native bfloat16 (AVX512-BF16 or AMX; on
the demo model 0.17 s instead of 0.34 s for 64 inputs of 18 tokens, largest change of
a probability 4e-4) and on GPUs. On CPUs without it, bfloat16 is emulated and slower.
The outputs are stored as float64 whatever the precision.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...model import PRECISIONS, Encoding, ModelAdapter, pack_batches

__all__ = [
    "DEFAULT_BATCH_TOKENS",
    "MASKINGS",
    "OUTPUTS",
    "PRECISIONS",
    "Engine",
    "TextGame",
    "output_values",
]

MASKINGS: tuple[str, ...] = ("mask", "pad", "delete")
OUTPUTS: tuple[str, ...] = ("probability", "logit")

Progress = Callable[[int, int], None]

#: Default ``max_batch_tokens`` of the perturbation methods. On CPU the cost per input
#: is flat from about 1,000 tokens per batch up (measured on MiniLM: within 5% from 1k
#: to 8k), while memory grows with the batch: 4,096 keeps the peak near 150 MiB.
DEFAULT_BATCH_TOKENS = 4096


@dataclass(frozen=True)
class TextGame:
    """One text seen as a coalition game over its features.

    Attributes
    ----------
    key : bytes
        Identifies the model input (token ids, other inputs, feature grouping); texts
        with equal keys share cached outputs.
    input_ids : np.ndarray
        ``[n_tokens]`` token ids of the unpadded text, special tokens included.
    extra : dict of str to np.ndarray
        Other per-token model inputs (``token_type_ids``...).
    token_feature : np.ndarray
        ``[n_tokens]`` feature index of each token, -1 for tokens never perturbed.
    n_features : int
    target : int
        The explained class.
    """

    key: bytes
    input_ids: np.ndarray
    extra: dict[str, np.ndarray]
    token_feature: np.ndarray
    n_features: int
    target: int

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def seed_key(self) -> int:
        """A stable 32-bit digest of the game, to derive per-text random streams."""
        return zlib.crc32(self.key)

    def feature_sizes(self) -> np.ndarray:
        """Number of tokens of each feature."""
        return np.bincount(self.token_feature[self.token_feature >= 0], minlength=self.n_features)

    def kept_tokens(self, coalition: np.ndarray) -> np.ndarray:
        """Bool ``[n_tokens]``: which tokens stay when ``coalition`` is kept."""
        fixed = self.token_feature < 0
        if self.n_features == 0:
            return fixed
        return fixed | coalition[np.maximum(self.token_feature, 0)]


def make_game(
    encoding: Encoding, index: int, features: Sequence[Sequence[int]], target: int, tag: str
) -> TextGame:
    """The game of text ``index`` of ``encoding`` over ``features`` (token index groups)."""
    n = encoding.lengths[index]
    ids = encoding.input_ids[index, :n].numpy().astype(np.int64)
    extra = {k: v[index, :n].numpy().astype(np.int64) for k, v in encoding.model_inputs.items()}
    token_feature = np.full(n, -1, dtype=np.int64)
    for f, tokens in enumerate(features):
        token_feature[list(tokens)] = f
    digest = [tag.encode(), ids.tobytes(), token_feature.tobytes()]
    digest += [k.encode() + v.tobytes() for k, v in sorted(extra.items())]
    return TextGame(b"|".join(digest), ids, extra, token_feature, len(features), target)


def output_values(logits: np.ndarray, target: int, output: str, function: str) -> np.ndarray:
    """The explained scalar of each row of ``logits`` ``[rows, classes]`` (float64).

    The probability is the logits through ``function``, the model's output function
    (see :data:`textlens.model.OUTPUT_FUNCTIONS`).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if output == "logit" or function == "none":
        return logits[:, target].copy()
    if function == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * logits[:, target]))  # no overflow
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp[:, target] / exp.sum(axis=1)


class Engine:
    """Evaluates coalitions of many texts in packed, deduplicated, cached batches.

    Parameters
    ----------
    model : ModelAdapter
    masking : {'mask', 'pad', 'delete'}
        How a feature is removed (see the module docstring).
    output : {'probability', 'logit'}
        The explained scalar: the target's probability or its logit.
    max_batch_tokens : int
        Upper bound on ``rows x padded length`` of any batch.
    progress : callable or None
        Called as ``progress(done, total)`` after every batch of model evaluations.
    cache_size : int
        Most outputs kept in the cache (the least recently used texts go first).
    precision : {'float32', 'bfloat16'}
        Arithmetic of the forward passes (see the module docstring).
    """

    def __init__(
        self,
        model: ModelAdapter,
        *,
        masking: str = "mask",
        output: str = "probability",
        max_batch_tokens: int = DEFAULT_BATCH_TOKENS,
        progress: Progress | None = None,
        cache_size: int = 200_000,
        precision: str = "float32",
    ) -> None:
        self.model = model
        self.masking = masking
        self.output = output
        self.max_batch_tokens = max_batch_tokens
        self.progress = progress
        self.cache_size = cache_size
        self.precision = precision
        self._cache: OrderedDict[bytes, dict[bytes, np.ndarray]] = OrderedDict()
        self._cached = 0
        self.model_evaluations = 0  # inputs actually sent through the model, all calls
        self.model_calls = 0  # forward passes (batches) that carried them
        if masking == "mask":
            self._fill: int | None = model.mask_token_id
        elif masking == "pad":
            self._fill = model.pad_token_id
        else:
            self._fill = None

    # ------------------------------------------------------------------ public
    def evaluate(self, requests: Sequence[tuple[TextGame, np.ndarray]]) -> list[np.ndarray]:
        """The game values of every coalition of every request.

        Parameters
        ----------
        requests : sequence of (TextGame, np.ndarray)
            A game and a bool matrix ``[m, n_features]`` of coalitions (True = kept).

        Returns
        -------
        list of np.ndarray
            Per request, ``[m]`` float64 values of the engine's ``output``.
        """
        keys: list[list[bytes]] = []
        pending: dict[tuple[bytes, bytes], tuple[TextGame, np.ndarray]] = {}
        for game, coalitions in requests:
            coalitions = np.asarray(coalitions, dtype=bool)
            if coalitions.ndim == 1:
                coalitions = coalitions.reshape(1, game.n_features)
            store = self._store(game.key)
            row_keys = _row_keys(coalitions)
            keys.append(row_keys)
            for key, row in zip(row_keys, coalitions, strict=True):
                if key not in store and (game.key, key) not in pending:
                    pending[(game.key, key)] = (game, row)
        self._run(list(pending.items()))
        results = []
        for (game, _), row_keys in zip(requests, keys, strict=True):
            store = self._cache[game.key]
            logits = np.stack([store[k] for k in row_keys]) if row_keys else np.zeros((0, 1))
            values = (
                output_values(logits, game.target, self.output, self.model.output_function)
                if row_keys
                else np.zeros(0)
            )
            results.append(values)
        self._evict()
        return results

    def remember(self, game: TextGame, logits: np.ndarray) -> None:
        """Keep ``logits`` (all classes) as the output of ``game``'s unchanged text.

        The prediction that comes with every explanation runs the model on the unchanged
        text anyway; with its logits here, the full coalition costs no second evaluation.
        """
        store = self._store(game.key)
        [key] = _row_keys(np.ones((1, game.n_features), dtype=bool))
        if key not in store:
            store[key] = np.asarray(logits, dtype=np.float64).copy()
            self._cached += 1

    def clear(self) -> None:
        """Forget every cached output."""
        self._cache.clear()
        self._cached = 0

    # ------------------------------------------------------------------ internals
    def _store(self, game_key: bytes) -> dict[bytes, np.ndarray]:
        store = self._cache.get(game_key)
        if store is None:
            store = self._cache[game_key] = {}
        self._cache.move_to_end(game_key)
        return store

    def _evict(self) -> None:
        while self._cached > self.cache_size and len(self._cache) > 1:
            _, store = self._cache.popitem(last=False)
            self._cached -= len(store)

    def _length(self, game: TextGame, coalition: np.ndarray) -> int:
        if self.masking != "delete":
            return game.n_tokens
        return int(game.kept_tokens(coalition).sum())

    def _run(self, items: list[tuple[tuple[bytes, bytes], tuple[TextGame, np.ndarray]]]) -> None:
        if not items:
            return
        lengths = [max(self._length(game, row), 1) for _, (game, row) in items]
        total, done = len(items), 0
        with torch.inference_mode(), self.model.autocast(self.precision):
            for indices in pack_batches(lengths, self.max_batch_tokens):
                rows = [items[i][1] for i in indices]
                logits = self.model.logits(self._batch(rows)).float().cpu().numpy()
                for i, row_logits in zip(indices, logits.astype(np.float64), strict=True):
                    (game_key, key), _ = items[i]
                    self._cache[game_key][key] = row_logits
                done += len(indices)
                self._cached += len(indices)
                self.model_evaluations += len(indices)
                self.model_calls += 1
                if self.progress is not None:
                    self.progress(done, total)

    def _batch(self, rows: list[tuple[TextGame, np.ndarray]]) -> Encoding:
        """Model inputs for ``rows`` (game, coalition), right-padded."""
        kept = [game.kept_tokens(c) for game, c in rows]
        if self.masking == "delete":
            lengths = [max(int(k.sum()), 1) for k in kept]
        else:
            lengths = [game.n_tokens for game, _ in rows]
        width = max(lengths)
        pad = self.model.pad_token_id
        ids = np.full((len(rows), width), pad, dtype=np.int64)
        attention = np.zeros((len(rows), width), dtype=np.int64)
        names = list(rows[0][0].extra)
        extra = {name: np.zeros((len(rows), width), dtype=np.int64) for name in names}
        for r, ((game, _), keep) in enumerate(zip(rows, kept, strict=True)):
            if self.masking == "delete":
                n = int(keep.sum())
                ids[r, :n] = game.input_ids[keep]
                for name in names:
                    extra[name][r, :n] = game.extra[name][keep]
                attention[r, : max(n, 1)] = 1
            else:
                n = game.n_tokens
                ids[r, :n] = np.where(
                    keep, game.input_ids, pad if self._fill is None else self._fill
                )
                for name in names:
                    extra[name][r, :n] = game.extra[name]
                attention[r, :n] = 1
        return Encoding(
            texts=[""] * len(rows),
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(attention),
            model_inputs={k: torch.from_numpy(v) for k, v in extra.items()},
            tokens=[[""] * n for n in lengths],
            offsets=[[] for _ in rows],
            special=[[] for _ in rows],
            word_ids=[[] for _ in rows],
            truncated=[0] * len(rows),
        )


def _row_keys(coalitions: np.ndarray) -> list[bytes]:
    packed = np.packbits(coalitions, axis=1)
    return [row.tobytes() for row in packed]
