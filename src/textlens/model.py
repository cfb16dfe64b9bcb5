"""The model adapter: the only module that touches the transformers API.

It loads a local sequence-classification model (or wraps one already in memory),
encodes texts with character offsets and word ids, and runs the model on token ids or
on word embeddings, returning logits, attentions or hidden states. Explainers see the
model only through :class:`ModelAdapter`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import (
    Cancelled,
    ExplanationError,
    InvalidInputError,
    InvalidParameterError,
    InvalidTargetError,
    ModelLoadError,
    TruncationWarning,
)
from .pairs import PAIR_SEPARATOR, pair_text, split_pair

__all__ = [
    "OUTPUT_FUNCTIONS",
    "PAIR_SEPARATOR",
    "PRECISIONS",
    "Encoding",
    "ModelAdapter",
    "cancellable",
    "check_cancelled",
    "check_model",
    "load_model",
    "output_function_of",
    "pack_batches",
    "pair_text",
    "probabilities_of",
    "split_pair",
]

_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spm.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
_SANE_MAX_LENGTH = 100_000
DEFAULT_MAX_BATCH_TOKENS = 8192
#: Arithmetic of model calls for methods that offer a ``precision`` parameter:
#: 'bfloat16' runs them under bfloat16 autocast (see :meth:`ModelAdapter.autocast`).
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
#: How logits become the scores a model reports (its "probabilities"): 'softmax' over
#: the classes of a single-label classifier, 'sigmoid' per label for a multi-label one
#: (and a one-logit model, e.g. a cross-encoder), 'none' for a regression's raw values.
OUTPUT_FUNCTIONS: tuple[str, ...] = ("softmax", "sigmoid", "none")


class _StopRequest(threading.local):
    """Per thread: the predicate that says "stop this thread's model work" (see
    :func:`cancellable`); None outside any block."""

    requested: Callable[[], bool] | None = None


_STOP = _StopRequest()


@contextlib.contextmanager
def cancellable(should_stop: Callable[[], bool]) -> Iterator[None]:
    """Let ``should_stop`` end this thread's model work inside the block.

    Every model call the thread makes inside the block (:meth:`ModelAdapter.forward`,
    which every explainer goes through) first asks ``should_stop()``, and raises
    :class:`~textlens.errors.Cancelled` once it answers True: long work (many samples,
    steps or texts) stops at its next model pass instead of running to the end. The
    server passes the ``is_set`` of a :class:`threading.Event` that its event loop sets
    once every request waiting for the work has given up. Other threads, even on the
    same adapter, are not affected; blocks nest (work stops when any of them says so).

    Parameters
    ----------
    should_stop : callable
        ``should_stop() -> bool``; cheap and thread-safe (it runs before every model pass).
    """
    outer = _STOP.requested
    if outer is None:
        _STOP.requested = should_stop
    else:
        _STOP.requested = lambda: outer() or should_stop()
    try:
        yield
    finally:
        _STOP.requested = outer


def check_cancelled() -> None:
    """Raise :class:`~textlens.errors.Cancelled` if this thread was asked to stop.

    :meth:`ModelAdapter.forward` calls it before every model pass; a loop that does long
    work between model passes can call it too. Costs one thread-local lookup when no
    :func:`cancellable` block is active.
    """
    requested = _STOP.requested
    if requested is not None and requested():
        raise Cancelled(
            "The model work was stopped before its next model pass, as its caller asked "
            "(see textlens.model.cancellable)."
        )


@dataclass
class Encoding:
    """Texts tokenized for the model, padded on the right.

    Attributes
    ----------
    texts : list of str
    input_ids, attention_mask : torch.Tensor
        ``[batch, max_len]``; padding is on the right.
    model_inputs : dict
        Other tensors the model takes (e.g. ``token_type_ids``), same shape.
    tokens, offsets, special, word_ids : list of list
        Per text, per (unpadded) token.
    truncated : list of int
        Tokens dropped from each text by truncation.
    """

    texts: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    model_inputs: dict[str, torch.Tensor]
    tokens: list[list[str]]
    offsets: list[list[tuple[int, int]]]
    special: list[list[bool]]
    word_ids: list[list[int | None]]
    truncated: list[int] = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        """Number of real (unpadded) tokens of each text."""
        return [len(t) for t in self.tokens]

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices: Sequence[int]) -> Encoding:
        """The sub-batch ``indices``, re-padded to its own longest text."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        width = max(self.lengths[i] for i in indices) if len(indices) else 0
        return Encoding(
            texts=[self.texts[i] for i in indices],
            input_ids=self.input_ids[index, :width],
            attention_mask=self.attention_mask[index, :width],
            model_inputs={k: v[index, :width] for k, v in self.model_inputs.items()},
            tokens=[self.tokens[i] for i in indices],
            offsets=[self.offsets[i] for i in indices],
            special=[self.special[i] for i in indices],
            word_ids=[self.word_ids[i] for i in indices],
            truncated=[self.truncated[i] for i in indices],
        )

    def special_mask(self) -> torch.Tensor:
        """Bool ``[batch, max_len]``: True at special tokens (padding excluded)."""
        mask = torch.zeros_like(self.attention_mask, dtype=torch.bool)
        for row, flags in enumerate(self.special):
            mask[row, : len(flags)] = torch.tensor(flags, dtype=torch.bool)
        return mask


def pack_batches(
    lengths: Sequence[int],
    max_batch_tokens: int,
    rows_per_item: int = 1,
    pad_slack: float | None = None,
) -> list[list[int]]:
    """Group item indices into batches whose padded size stays under a token budget.

    Items are sorted by length (longest first) so each batch pads little. A batch costs
    ``rows_per_item * len(batch) * longest`` tokens; an item too long for the budget on
    its own still gets a batch of its own. With ``pad_slack``, an item also opens a new
    batch when it is shorter than ``1 - pad_slack`` times the batch's longest item.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        too_short = pad_slack is not None and lengths[i] < (1 - pad_slack) * longest
        if current and (
            too_short or rows_per_item * (len(current) + 1) * longest > max_batch_tokens
        ):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class ModelAdapter:
    """A sequence classifier and its tokenizer, seen the way explainers need them.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Any ``*ForSequenceClassification`` model.
    tokenizer : transformers.PreTrainedTokenizerFast
        A fast tokenizer (character offsets are needed).
    model_id : str
        A name recorded in every explanation.
    device : str
        'cpu' (default), 'cuda', 'cuda:N' or 'auto' (CUDA when available).
    max_length : int, optional
        Longest input in tokens; defaults to what the model and tokenizer accept.
    output_function : {'softmax', 'sigmoid', 'none'}, optional
        How logits become the reported scores; by default read from the model's config
        as transformers' text-classification pipeline does (see :func:`output_function_of`).

    A model in float16 or bfloat16 is converted to float32 (in place): explanations
    are computed in float32 whatever the checkpoint's precision.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str = "in-memory",
        device: str = "cpu",
        max_length: int | None = None,
        output_function: str | None = None,
    ) -> None:
        if output_function is not None and output_function not in OUTPUT_FUNCTIONS:
            raise InvalidParameterError(
                f"output_function must be one of {', '.join(OUTPUT_FUNCTIONS)}; got "
                f"{output_function!r}."
            )
        if not getattr(tokenizer, "is_fast", False):
            raise ModelLoadError(
                f"textlens needs a fast tokenizer (with character offsets) for {model_id!r}; "
                "got a slow one. Save the model folder with a tokenizer.json "
                "(AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(folder))."
            )
        self.device = _resolve_device(device)
        if any(t.dtype in (torch.float16, torch.bfloat16) for t in model.parameters()):
            # Half-precision checkpoints (float16/bfloat16, common on model hubs) are
            # explained in float32: gradients and integrated-gradient sums in half
            # precision are wrong by whole units (and numpy has no bfloat16). Widening is
            # exact; `precision='bfloat16'` is the way to trade accuracy for speed.
            model = model.float()
        self.model = model.to(self.device).eval()
        # SDPA returns no attention weights; eager does (needed by attention methods), so
        # eager is the default and SDPA serves the passes that need neither attention
        # weights nor gradients (see `_attention_for`).
        self._fast_attention = _sdpa_if_supported(self.model)
        self._attention_calls = 0
        self._attention_switch = threading.Condition()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.max_length = _checked_max_length(max_length, model.config, self.model, tokenizer)
        self.labels = _labels(model.config)
        self.output_function = output_function or output_function_of(model.config)
        self._input_names = [
            n for n in tokenizer.model_input_names if n not in ("input_ids", "attention_mask")
        ]
        # Longformer-style models take a global attention mask; their classification
        # heads put global attention on the first token when given none, which is what
        # textlens passes explicitly (transformers' default fails on `inputs_embeds`).
        self._global_attention = "global_attention_mask" in _forward_parameters(self.model)
        # RoBERTa-style embeddings number the positions from the ids, skipping pad ids, so
        # a token replaced by the pad token (perturbation masking 'pad') would shift every
        # later token's position. textlens numbers them by the attention mask instead:
        # the same positions for every unperturbed input, and a pad keeps its token's.
        self._position_padding_idx = _positions_from_ids(self.model)
        #: Results derived from the weights that explainers may keep for the next call
        #: (e.g. the information method's weights fingerprint); see :meth:`memoized`.
        self._memo: dict[Any, Any] = {}
        # Decoder classifiers (GPT-2, Llama, Qwen, Mistral...: a `score` head on every
        # position) classify the last token. transformers finds it from the pad ids, which
        # `inputs_embeds` lack (it then takes the last position, a pad in a padded batch)
        # and refuses batches when the config names no pad token. textlens reads the
        # head's per-position output at the last real token by the attention mask instead.
        self._score_head = isinstance(getattr(self.model, "score", None), torch.nn.Linear)
        # XLNet-style heads summarise the hidden state at the last position (their
        # tokenizers pad on the left): textlens pads on the right and moves each row's
        # last real token's state there.
        summary = getattr(self.model, "sequence_summary", None)
        self._summary_last = getattr(summary, "summary_type", None) == "last"
        #: Whether the classifier reads each row's last real token (else its first).
        self.pools_last_token = self._score_head or self._summary_last
        #: Whether it averages over every token instead (ModernBERT's and EuroBERT's
        #: ``classifier_pooling`` "mean", EuroBERT's "late").
        self.pools_mean = not self.pools_last_token and getattr(
            self.model.config, "classifier_pooling", None
        ) in ("mean", "late")
        #: BART-style classifiers: a decoder reads the encoder's output and the last
        #: </s> of the decoder is classified.
        self.is_encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))
        self._bart = self.is_encoder_decoder and _is_bart_classifier(self.model)
        #: What the explainers may read beyond the outputs (see ``Explainer.needs``).
        self.internals: frozenset[str] = (
            frozenset({"embeddings", "attention", "hidden_states"})
            if not self.is_encoder_decoder
            else frozenset({"embeddings"})
            if self._bart
            else frozenset()
        )
        if self.pools_last_token:
            text_config = self.model.config.get_text_config()
            if getattr(text_config, "pad_token_id", None) is None:
                text_config.pad_token_id = self.pad_token_id  # only lets batches through

    def memoized(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, remembered under ``key`` while the weights stay the same.

        The weights count as the same while no parameter was replaced or changed in
        place (torch's version counter), so fine-tuning the model in between is safe.
        """
        weights = tuple((p.data_ptr(), p._version) for p in self.model.parameters())
        full = (key, weights)
        if full not in self._memo:
            if len(self._memo) >= 32:
                self._memo.clear()
            self._memo[full] = compute()
        return self._memo[full]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        max_length: int | None = None,
        output_function: str | None = None,
        trust_remote_code: bool = False,
    ) -> ModelAdapter:
        """Load a model folder saved with ``save_pretrained`` (never touches a hub).

        A folder whose ``config.json`` names custom model code (``auto_map``: the
        ``.py`` files of architectures that transformers does not ship) is loaded only
        with ``trust_remote_code=True``, which runs those files: read them first.
        """
        folder = _check_model_folder(path)
        _check_custom_code(folder, trust_remote_code)
        with _quiet_transformers():
            return cls._load(
                folder,
                device=device,
                max_length=max_length,
                output_function=output_function,
                trust_remote_code=trust_remote_code,
            )

    @classmethod
    def _load(
        cls,
        folder: Path,
        *,
        device: str,
        max_length: int | None,
        output_function: str | None,
        trust_remote_code: bool = False,
    ) -> ModelAdapter:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=trust_remote_code
            )
        except Exception as exc:  # transformers raises many kinds here
            raise ModelLoadError(
                f"Could not load the tokenizer from {folder}: {_one_line(exc)}. The folder "
                "needs the tokenizer files written by tokenizer.save_pretrained(folder)."
            ) from exc
        try:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                str(folder),
                local_files_only=True,
                attn_implementation="eager",
                output_loading_info=True,
                trust_remote_code=trust_remote_code,
            )
        except Exception as exc:
            raise ModelLoadError(_model_load_failure(folder, exc)) from exc
        _check_nothing_untrained(folder, model, info.get("missing_keys", ()))
        return cls(
            model,
            tokenizer,
            model_id=str(folder),
            device=device,
            max_length=max_length,
            output_function=output_function,
        )

    # ------------------------------------------------------------------ facts
    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def has_probabilities(self) -> bool:
        """False for a regression model, whose "probabilities" are its raw output values."""
        return self.output_function != "none"

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def pad_token_id(self) -> int:
        """The tokenizer's pad token; without one (GPT-2), the model config's, else the
        end-of-text token (the usual stand-in), else 0."""
        config = self.model.config.get_text_config()
        for pad in (
            self.tokenizer.pad_token_id,
            getattr(config, "pad_token_id", None),
            self.tokenizer.eos_token_id,
        ):
            if isinstance(pad, int):
                return pad
        return 0

    @property
    def mask_token_id(self) -> int:
        mask = self.tokenizer.mask_token_id
        if mask is None:
            raise InvalidInputError(
                f"The tokenizer of {self.model_id} has no mask token; use baseline='pad' "
                "or masking='pad' instead."
            )
        return int(mask)

    def resolve_target(self, target: int | str | None, default: int) -> int:
        """A class index from an index, a label name or None (then ``default``)."""
        if target is None:
            return default
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            if 0 <= int(target) < self.num_labels:
                return int(target)
        elif isinstance(target, str):
            if target in self.labels:
                return self.labels.index(target)
            if target.lstrip("-").isdigit() and 0 <= int(target) < self.num_labels:
                return int(target)
        valid = ", ".join(f"{i}={name!r}" for i, name in enumerate(self.labels))
        raise InvalidTargetError(
            f"Unknown target {target!r} for model {self.model_id}. Use a label name or an "
            f"index: {valid}."
        )

    def resolve_targets(self, target: Any, n_texts: int) -> list[int | None]:
        """One class index per text (None: that text's predicted class).

        ``target`` is one target for every text, or a list, NumPy array, tensor or
        pandas Series with one per text; each is checked as by :meth:`resolve_target`.
        """
        per_text = per_text_targets(target)
        if per_text is None:
            per_text = [scalar_target(target)] * n_texts
        elif len(per_text) != n_texts:
            raise InvalidTargetError(
                f"{len(per_text)} targets were given for {n_texts} texts. Give one target "
                "per text (None for the predicted class), or a single target for all."
            )
        return [None if t is None else self.resolve_target(t, default=0) for t in per_text]

    # ------------------------------------------------------------------ encoding
    def encode(self, texts: Sequence[str | tuple[str, str]]) -> Encoding:
        """Tokenize ``texts`` with offsets; texts over ``max_length`` are truncated with a
        warning.

        A text may be a pair: a tuple ``(first, second)`` or, equivalently, one string with
        :data:`PAIR_SEPARATOR` between them (see :func:`pair_text`). Its tokens' offsets
        and word ids then refer to that one string.
        """
        texts = check_texts(texts)
        rows = [self._encode_one(i, text) for i, text in enumerate(texts)]
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        extra = {
            name: torch.zeros((len(rows), width), dtype=torch.long) for name in self._input_names
        }
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, :n] = torch.tensor(row["input_ids"])
            mask[i, :n] = 1
            for name in self._input_names:
                extra[name][i, :n] = torch.tensor(row[name])
        return Encoding(
            texts=list(texts),
            input_ids=ids,
            attention_mask=mask,
            model_inputs=extra,
            tokens=[r["tokens"] for r in rows],
            offsets=[r["offsets"] for r in rows],
            special=[r["special"] for r in rows],
            word_ids=[r["word_ids"] for r in rows],
            truncated=[r["truncated"] for r in rows],
        )

    def _encode_one(self, index: int, text: str) -> dict[str, Any]:
        full = self._tokenize(text, truncate=False)
        if all(full["special"]):
            raise InvalidInputError(
                f"Text {index} gives the model no tokens: its tokenizer drops every character "
                f"of {text[:40]!r} (invisible or control characters), so there is nothing "
                "to explain. Remove it or give some words."
            )
        pair = split_pair(text)
        for name, part in zip(("first", "second"), pair or (), strict=False):
            if not self.tokenizer(part, add_special_tokens=False, verbose=False)["input_ids"]:
                raise InvalidInputError(
                    f"The {name} text of pair {index} gives the model no tokens: its "
                    f"tokenizer drops every character of {part[:40]!r} (invisible or control "
                    "characters). Give both texts some words."
                )
        dropped = len(full["input_ids"]) - self.max_length
        if dropped <= 0:
            full["truncated"] = 0
            return full
        what = (
            f"{dropped} tokens were dropped from the end of the longer text of the pair"
            if pair
            else f"the last {dropped} tokens were dropped"
        )
        warnings.warn(
            f"Text {index} has {len(full['input_ids'])} tokens but {self.model_id} accepts at "
            f"most {self.max_length}: {what} and are not explained. Split long texts to "
            "explain all of them.",
            TruncationWarning,
            stacklevel=3,
        )
        cut = self._tokenize(text, truncate=True)
        cut["truncated"] = dropped
        return cut

    def _tokenize(self, text: str, *, truncate: bool) -> dict[str, Any]:
        pair = split_pair(text)
        enc = self.tokenizer(
            *(pair or (text,)),
            truncation=truncate,
            max_length=self.max_length if truncate else None,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            verbose=False,  # an over-long text gets our TruncationWarning, not transformers'
        )
        row = {
            "input_ids": list(enc["input_ids"]),
            "tokens": self.tokenizer.convert_ids_to_tokens(enc["input_ids"]),
            "offsets": [(int(a), int(b)) for a, b in enc["offset_mapping"]],
            "special": [bool(s) for s in enc["special_tokens_mask"]],
            "word_ids": list(enc.word_ids()),
        }
        for name in self._input_names:
            row[name] = list(enc[name])
        row["word_ids"] = [
            None if s else w for s, w in zip(row["special"], row["word_ids"], strict=True)
        ]
        row["offsets"] = [
            (0, 0) if s else o for s, o in zip(row["special"], row["offsets"], strict=True)
        ]
        if pair:
            _shift_second_segment(row, enc.sequence_ids(), len(text) - len(pair[1]))
        return row

    # ------------------------------------------------------------------ running the model
    def autocast(self, precision: str = "float32") -> contextlib.AbstractContextManager[Any]:
        """Context in which the model's calls run at ``precision`` (one of :data:`PRECISIONS`).

        'bfloat16' is torch autocast on the model's device: matrix products in bfloat16,
        reductions and normalisations in float32. On CPUs with native bfloat16
        (AVX512-BF16 or AMX) and on GPUs a call costs about half; elsewhere bfloat16 is
        emulated and slower. 'float32' changes nothing.
        """
        if precision not in PRECISIONS:
            raise InvalidParameterError(
                f"precision={precision!r} is not one of {', '.join(PRECISIONS)}."
            )
        if precision == "float32":
            return contextlib.nullcontext()
        device = torch.device(self.device).type
        if device == "cpu" and not _native_cpu_bfloat16():
            warnings.warn(
                "precision='bfloat16' on a CPU without native bfloat16 (AVX512-BF16 or AMX): "
                "it is emulated here, and slower than float32. Use float32 on this CPU.",
                SlowPrecisionWarning,
                stacklevel=3,
            )
        return torch.autocast(device_type=device, dtype=torch.bfloat16)

    def word_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The word (token) embeddings of ``input_ids``; position/segment embeddings are added
        by the model."""
        return self.model.get_input_embeddings()(input_ids.to(self.device))

    @property
    def embedding_matrix(self) -> torch.Tensor:
        """The word-embedding weight matrix ``[vocab, dim]``."""
        return self.model.get_input_embeddings().weight

    def forward(
        self,
        batch: Encoding,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        repeat: int = 1,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> Any:
        """Run the model on ``batch``, optionally on replaced ids or word embeddings.

        ``repeat`` > 1 repeats every row of the batch's masks (row-major: text 0 ``repeat``
        times, then text 1...) to match an ``inputs_embeds`` of ``repeat * len(batch)`` rows.

        Raises :class:`~textlens.errors.Cancelled` instead of running the model when this
        thread was asked to stop (see :func:`cancellable`).
        """
        check_cancelled()
        mask = batch.attention_mask
        extra = batch.model_inputs
        if repeat > 1:
            mask = mask.repeat_interleave(repeat, dim=0)
            extra = {k: v.repeat_interleave(repeat, dim=0) for k, v in extra.items()}
        kwargs: dict[str, Any] = {k: v.to(self.device) for k, v in extra.items()}
        kwargs["attention_mask"] = mask.to(self.device)
        if self._position_padding_idx is not None:
            kept = kwargs["attention_mask"]
            kwargs["position_ids"] = kept.cumsum(dim=1) * kept + self._position_padding_idx
        if self._global_attention:
            first = torch.zeros_like(kwargs["attention_mask"])
            first[:, 0] = 1
            kwargs["global_attention_mask"] = first
        if inputs_embeds is not None:
            kwargs["inputs_embeds"] = inputs_embeds
        else:
            ids = batch.input_ids if input_ids is None else input_ids
            kwargs["input_ids"] = ids.to(self.device)
        if self._bart:
            ids = batch.input_ids if input_ids is None else input_ids
            if repeat > 1 and inputs_embeds is not None:
                ids = ids.repeat_interleave(repeat, dim=0)
            return self._bart_forward(ids.to(self.device), inputs_embeds, kwargs, len(batch))
        if self.is_encoder_decoder and "input_ids" in kwargs:
            return self._forward_by_eos_count(kwargs, len(batch))
        per_position: list[torch.Tensor] = []
        handle = self._hook_last_token(mask, per_position) if self.pools_last_token else None
        try:
            with self._attention_for(output_attentions=output_attentions):
                out = self.model(
                    **kwargs,
                    output_attentions=output_attentions,
                    output_hidden_states=output_hidden_states,
                )
            if per_position:
                rows = torch.arange(mask.shape[0], device=per_position[-1].device)
                last = self.pooled_positions(mask).to(per_position[-1].device)
                out.logits = per_position[-1][rows, last]
            return out
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ExplanationError(
                f"The model {self.model_id} failed on a batch of {len(batch)} texts "
                f"(longest {max(batch.lengths)} tokens): {exc}"
            ) from exc
        finally:
            if handle is not None:
                handle.remove()

    def _hook_last_token(self, mask: torch.Tensor, per_position: list[torch.Tensor]) -> Any:
        """Make this thread's next model call classify each row's last real token.

        A ``score`` head (decoders) runs on every position: its output is kept in
        ``per_position`` for :meth:`forward` to read at the last token. An XLNet-style
        summary reads the last position: it is handed the last real token's state there.
        Other threads' calls through the same modules are left alone.
        """
        caller = threading.get_ident()

        def keep(_module: Any, _args: Any, output: torch.Tensor) -> None:
            if threading.get_ident() == caller:
                per_position.append(output)

        def last_to_end(_module: Any, args: tuple[Any, ...]) -> Any:
            if threading.get_ident() != caller:
                return None
            states = args[0]
            rows = torch.arange(states.shape[0], device=states.device)
            moved = states.clone()
            moved[:, -1] = states[rows, self.pooled_positions(mask).to(states.device)]
            return (moved, *args[1:])

        if self._score_head:
            return self.model.score.register_forward_hook(keep)
        return self.model.sequence_summary.register_forward_pre_hook(last_to_end)

    def _forward_by_eos_count(self, kwargs: dict[str, Any], n_texts: int) -> Any:
        """Logits of an encoder-decoder classifier (T5, mBART...) for rows that may hold
        different numbers of end-of-text tokens (a pair among single texts), which
        transformers refuses in one batch: one call per count."""
        from transformers.modeling_outputs import SequenceClassifierOutput

        ids = kwargs["input_ids"]
        eos = getattr(self.model.config, "eos_token_id", None)
        counts = ids.eq(int(eos)).sum(-1) if isinstance(eos, int) else torch.zeros(len(ids))
        logits: torch.Tensor | None = None
        for count in torch.unique(counts).tolist():
            rows = (counts == count).nonzero().flatten()
            part = {k: v[rows] if torch.is_tensor(v) else v for k, v in kwargs.items()}
            try:
                with self._attention_for(output_attentions=False):
                    out = self.model(**part).logits
            except (RuntimeError, ValueError, IndexError) as exc:
                raise ExplanationError(
                    f"The model {self.model_id} failed on a batch of {n_texts} texts: {exc}"
                ) from exc
            if logits is None:
                logits = out.new_zeros((len(ids), out.shape[-1]))
            logits[rows] = out
        return SequenceClassifierOutput(logits=logits)

    def _bart_forward(
        self,
        ids: torch.Tensor,
        inputs_embeds: torch.Tensor | None,
        kwargs: dict[str, Any],
        n_texts: int,
    ) -> Any:
        """BartForSequenceClassification's computation, on word embeddings as well.

        transformers' own forward refuses ``inputs_embeds`` and batches whose rows hold
        different numbers of ``</s>`` (a pair and a single text). The word embeddings
        feed both the encoder and, shifted one place right after the decoder's start
        token, the decoder (as ``shift_tokens_right`` does with the ids); the decoder's
        state at each row's last ``</s>`` goes through the classification head.
        """
        from transformers.modeling_outputs import SequenceClassifierOutput

        config = self.model.config
        embeds = self.word_embeddings(ids) if inputs_embeds is None else inputs_embeds
        start = torch.full_like(ids[:, :1], int(config.decoder_start_token_id))
        decoder_embeds = torch.cat(
            [self.word_embeddings(start).to(embeds.dtype), embeds[:, :-1]], 1
        )
        try:
            with self._attention_for(output_attentions=False):
                out = self.model.model(
                    inputs_embeds=embeds,
                    decoder_inputs_embeds=decoder_embeds,
                    attention_mask=kwargs["attention_mask"],
                    use_cache=False,
                )
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ExplanationError(
                f"The model {self.model_id} failed on a batch of {n_texts} texts: {exc}"
            ) from exc
        hidden = out.last_hidden_state
        positions = torch.arange(ids.shape[1], device=ids.device)
        last_eos = (positions * ids.eq(int(config.eos_token_id))).argmax(-1)
        rows = torch.arange(ids.shape[0], device=hidden.device)
        state = hidden[rows, last_eos.to(hidden.device)]
        return SequenceClassifierOutput(logits=self.model.classification_head(state))

    def reader_weights(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[rows, len]``: how much the classifier reads each position (rows sum to 1).

        One position ([CLS] or the last token, see :meth:`pooled_positions`), or every
        real token alike for a mean-pooling classifier (:attr:`pools_mean`).
        """
        real = (attention_mask != 0).float()
        if self.pools_mean:
            return real / real.sum(-1, keepdim=True).clamp(min=1.0)
        weights = torch.zeros_like(real)
        rows = torch.arange(real.shape[0], device=real.device)
        weights[rows, self.pooled_positions(attention_mask).to(real.device)] = 1.0
        return weights

    def pooled_positions(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """The position the classifier reads in each row: 0 ([CLS], ``<s>``) for encoders,
        the last real token for decoder classifiers (see :attr:`pools_last_token`)."""
        if not self.pools_last_token:
            return torch.zeros(attention_mask.shape[0], dtype=torch.long)
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        return (positions * (attention_mask != 0)).argmax(-1).long()

    @contextlib.contextmanager
    def _attention_for(self, *, output_attentions: bool) -> Iterator[None]:
        """Run one model call with the fastest attention that gives what the call needs.

        Calls that need no attention weights (predictions, perturbation methods,
        faithfulness curves, and the forward+backward passes of the gradient methods)
        use PyTorch's fused SDPA where the model supports it; calls that return
        attention weights use eager attention. The figures are in
        `benchmarks/results/attention.md` (`python benchmarks/bench_attention.py`).
        Results agree to float32 round-off (relative differences around 1e-6). Calls of
        one kind run concurrently; a switch waits for the calls of the other kind in
        flight to finish.
        """
        wanted = "eager"
        if self._fast_attention and not output_attentions:
            wanted = self._fast_attention
        with self._attention_switch:
            # The model's config is the truth (whoever switched it last), not a copy of it.
            switchable = hasattr(self.model, "set_attn_implementation")
            while switchable and self._attention_in_use() != wanted:
                if not self._attention_calls:
                    self.model.set_attn_implementation(wanted)
                    break
                self._attention_switch.wait()
            self._attention_calls += 1
        try:
            yield
        finally:
            with self._attention_switch:
                self._attention_calls -= 1
                self._attention_switch.notify_all()

    def _attention_in_use(self) -> str | None:
        return getattr(self.model.config, "_attn_implementation", None)

    def logits(self, batch: Encoding, **kwargs: Any) -> torch.Tensor:
        """Logits ``[rows, num_labels]``."""
        return self.forward(batch, **kwargs).logits

    def predict_logits(
        self, encoding: Encoding, *, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    ) -> np.ndarray:
        """Logits ``[len(encoding), num_labels]`` (float32), batched under a token budget."""
        out = np.zeros((len(encoding), self.num_labels), dtype=np.float32)
        with torch.no_grad():
            for indices in pack_batches(encoding.lengths, max_batch_tokens):
                out[indices] = self.logits(encoding.select(indices)).float().cpu().numpy()
        return out

    def predict_proba(
        self, encoding: Encoding, *, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    ) -> np.ndarray:
        """Class probabilities ``[len(encoding), num_labels]``, batched under a token budget.

        They are the model's reported scores, through its :attr:`output_function`.
        """
        logits = self.predict_logits(encoding, max_batch_tokens=max_batch_tokens)
        return probabilities_of(logits, self.output_function)

    def iter_batches(
        self, encoding: Encoding, max_batch_tokens: int, rows_per_item: int = 1
    ) -> Iterator[tuple[list[int], Encoding]]:
        """Yield ``(indices, sub_batch)`` packed under a token budget."""
        for indices in pack_batches(encoding.lengths, max_batch_tokens, rows_per_item):
            yield indices, encoding.select(indices)


def probabilities_of(logits: np.ndarray, function: str) -> np.ndarray:
    """Scores of float32 ``logits`` ``[rows, classes]`` through ``function``, as float64.

    Computed in float32, as the model would; ``function`` is one of :data:`OUTPUT_FUNCTIONS`.
    """
    tensor = torch.as_tensor(logits, dtype=torch.float32)
    return apply_output_function(tensor, function).numpy().astype(np.float64)


def apply_output_function(logits: torch.Tensor, function: str) -> torch.Tensor:
    """``logits`` ``[rows, classes]`` through ``function`` (see :data:`OUTPUT_FUNCTIONS`)."""
    if function == "softmax":
        return torch.softmax(logits, dim=-1)
    if function == "sigmoid":
        return torch.sigmoid(logits)
    return logits


def output_function_of(config: Any) -> str:
    """How a model's logits become its reported scores, read from its config.

    The rule of transformers' text-classification pipeline: ``problem_type`` 'regression'
    means raw values ('none'); 'multi_label_classification', or a single logit (a binary
    scorer such as a cross-encoder), means a sigmoid per label; otherwise a softmax over
    the classes.
    """
    problem_type = getattr(config, "problem_type", None)
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or int(config.num_labels) == 1:
        return "sigmoid"
    return "softmax"


def _is_bart_classifier(model: Any) -> bool:
    """A BART sequence classifier whose computation ``_bart_forward`` reproduces."""
    config = model.config
    return (
        getattr(config, "model_type", None) == "bart"
        and hasattr(model, "classification_head")
        and hasattr(getattr(model, "model", None), "encoder")
        and getattr(config, "decoder_start_token_id", None) is not None
        and getattr(config, "eos_token_id", None) is not None
    )


def _forward_parameters(model: Any) -> set[str]:
    """The names of the model's ``forward`` parameters (empty if they cannot be read)."""
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def check_texts(texts: Sequence[str | tuple[str, str]] | str) -> list[str]:
    """Validate a batch of texts: a non-empty list of non-blank strings or pairs.

    Pairs (tuples of two strings) are returned joined by :data:`PAIR_SEPARATOR`.
    """
    if isinstance(texts, str):
        raise InvalidInputError(
            "Expected a list of texts, got a single string. Wrap it in a list: [text]."
        )
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise InvalidInputError(
            f"Expected a list of texts, got {type(texts).__name__}"
            + (": decode it first, [data.decode('utf-8')]." if isinstance(texts, bytes) else ".")
        )
    texts = list(texts)
    if not texts:
        raise InvalidInputError("No texts were given; pass at least one text.")
    checked = []
    for i, text in enumerate(texts):
        if isinstance(text, (tuple, list)):
            if len(text) != 2 or not all(isinstance(t, str) for t in text):
                raise InvalidInputError(
                    f"Text {i} is a {type(text).__name__} of {len(text)} items; a pair is two "
                    "strings, e.g. (premise, hypothesis)."
                )
            text = pair_text(*text, index=i)
        if not isinstance(text, str):
            raise InvalidInputError(f"Text {i} is of type {type(text).__name__}, not a string.")
        if not text.strip():
            raise InvalidInputError(
                f"Text {i} is empty or only whitespace; there is nothing to explain. "
                "Remove it or give some words."
            )
        split_pair(text, index=i)  # a malformed pair is an error here
        checked.append(text)
    return checked


def _shift_second_segment(row: dict[str, Any], sequence_ids: list[int | None], start: int) -> None:
    """Make the second text's offsets and word ids refer to the whole pair string.

    The tokenizer counts both from 0 in each text; ``start`` is where the second text
    begins in the pair string.
    """
    first_words = [w for w, s in zip(row["word_ids"], sequence_ids, strict=True) if s == 0]
    words_before = max((w for w in first_words if w is not None), default=-1) + 1
    for i, segment in enumerate(sequence_ids):
        if segment == 1 and not row["special"][i]:
            a, b = row["offsets"][i]
            row["offsets"][i] = (a + start, b + start)
            if row["word_ids"][i] is not None:
                row["word_ids"][i] += words_before


def load_model(
    path: str | Path,
    *,
    device: str = "cpu",
    max_length: int | None = None,
    output_function: str | None = None,
) -> ModelAdapter:
    """Load a local model folder; see :meth:`ModelAdapter.from_pretrained`."""
    return ModelAdapter.from_pretrained(
        path, device=device, max_length=max_length, output_function=output_function
    )


def _check_model_folder(path: str | Path) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelLoadError(
            f"Model folder {folder} does not exist. Give the path of a folder written by "
            "model.save_pretrained() and tokenizer.save_pretrained(), or 'demo'."
        )
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is a file; give the folder that contains config.json.")
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json or vocab)")
    if missing:
        raise ModelLoadError(
            f"Model folder {folder} is missing {', '.join(missing)}. Save the model and its "
            "tokenizer there with save_pretrained()."
        )
    return folder


def _check_custom_code(folder: Path, trust_remote_code: bool) -> None:
    """Refuse, with what to do, a folder whose custom code cannot or may not be run.

    Without this, transformers asks on the terminal whether to run the code (and a
    server or a batch job would wait for an answer), or tries to fetch code that lives
    in another repository from the hub.
    """
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not read {folder / 'config.json'}: {exc}") from exc
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    if not isinstance(auto_map, dict) or not auto_map:
        return
    references = [
        v
        for value in auto_map.values()
        for v in (value if isinstance(value, list) else [value])
        if isinstance(v, str)
    ]
    elsewhere = sorted({r.split("--")[0] for r in references if "--" in r})
    if elsewhere:
        raise ModelLoadError(
            f"Model folder {folder} uses custom code kept in another repository "
            f"({', '.join(elsewhere)}; config.json auto_map), and textlens never downloads. "
            "Copy that repository's .py files into the folder and drop the 'repo--' prefix "
            "from the auto_map entries."
        )
    if trust_remote_code:
        return
    files = sorted({r.split(".")[0] + ".py" for r in references})
    raise ModelLoadError(
        f"Model folder {folder} holds custom model code ({', '.join(files)}; config.json "
        "auto_map), which textlens runs only when asked: pass trust_remote_code=True "
        "(tl.load) or --trust-remote-code (command line). That code runs with your "
        "permissions, so read it first."
    )


def _check_nothing_untrained(folder: Path, model: Any, missing_keys: Iterable[str]) -> None:
    """Refuse a model whose checkpoint lacks some of its parameters.

    transformers fills such parameters with random numbers and only logs it: a base
    encoder's folder (``BertModel``, say) loads as a classifier with a random head, whose
    predictions, and so every explanation of them, are noise.
    """
    parameters = dict(model.named_parameters())
    missing = sorted(k for k in missing_keys if k in parameters)
    if not missing:
        return
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    saved = getattr(model.config, "architectures", None) or ["an unknown architecture"]
    raise ModelLoadError(
        f"Model folder {folder} has no trained weights for {shown}: loading it would fill "
        "them with random numbers, so its predictions and their explanations would be "
        f"noise. The folder holds a {', '.join(saved)} checkpoint, not a fine-tuned "
        "sequence classifier: fine-tune it for classification and save it with "
        "save_pretrained(), or give the folder of the fine-tuned model."
    )


def _sdpa_if_supported(model: Any) -> str | None:
    """Leave ``model`` on eager attention; return 'sdpa' if it can switch to SDPA."""
    if not hasattr(model, "set_attn_implementation"):
        return None
    supported = False
    with _quiet_transformers():
        try:
            model.set_attn_implementation("sdpa")
            supported = getattr(model.config, "_attn_implementation", None) == "sdpa"
        except (ValueError, ImportError, NotImplementedError):
            supported = False  # an architecture without SDPA (e.g. DeBERTa-v2)
        model.set_attn_implementation("eager")
    return "sdpa" if supported else None


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and info logs while loading."""
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


class SlowPrecisionWarning(UserWarning):
    """bfloat16 was asked for where it is emulated, and slower than float32."""


def _native_cpu_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (True when torch cannot tell)."""
    checks = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported",
                                                   "_is_amx_tile_supported")]  # fmt: skip
    if not all(callable(check) for check in checks):
        return True
    return any(check() for check in checks)  # type: ignore[misc]


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (transformers' span paragraphs)."""
    return " ".join(str(exc).split())


def _model_load_failure(folder: Path, exc: BaseException) -> str:
    """What went wrong loading the model of ``folder``, and what to do, on one line."""
    import re

    message = _one_line(exc)
    unknown = re.search(r"has model type `([^`]*)` but Transformers does not recognize", message)
    if unknown:
        import transformers

        return (
            f"{folder}/config.json names the model type {unknown.group(1)!r}, which "
            f"transformers {transformers.__version__} does not know: check the config, or "
            "install a transformers version that has this architecture."
        )
    if "ignore_mismatched_sizes" in message:
        return (
            f"The weights in {folder} do not fit the model its config.json describes (a "
            "layer has another size, often because num_labels or id2label was edited after "
            "saving): make config.json match the weights, or save the model again."
        )
    return f"Could not load a sequence-classification model from {folder}: {message}"


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"Device {device!r} was asked for but CUDA is not available; use 'cpu'."
        )
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"Unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'."
        ) from exc
    if resolved.type not in ("cpu", "cuda"):  # mps, xpu, meta...: not supported here
        raise ModelLoadError(
            f"Device {device!r} is not supported by textlens: use 'cpu', 'cuda', 'cuda:N' "
            "or 'auto'."
        )
    return resolved


def _checked_max_length(value: Any, config: Any, model: Any, tokenizer: Any) -> int:
    """``max_length`` as given (checked against the model's position table) or the default."""
    if value is None:
        return _default_max_length(config, tokenizer, model)
    if isinstance(value, bool) or not isinstance(value, int) or value < 3:
        raise InvalidParameterError(
            f"max_length must be an int >= 3 (the special tokens and at least one more) or "
            f"None for what the model accepts; got {value!r}."
        )
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limit = positions - _position_offset(config, model)
        if value > limit:
            raise InvalidParameterError(
                f"max_length {value} is more than the model's position embeddings allow "
                f"({limit} tokens); give at most {limit}, or None."
            )
    return value


def _default_max_length(config: Any, tokenizer: Any, model: Any = None) -> int:
    candidates = []
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:  # XLNet says -1: no such limit
        candidates.append(positions - _position_offset(config, model))
    tok_max = getattr(tokenizer, "model_max_length", None)
    if tok_max and tok_max < _SANE_MAX_LENGTH:
        candidates.append(int(tok_max))
    return min(candidates) if candidates else 512


def _position_offset(config: Any, model: Any) -> int:
    """Positions a model reserves before the first token's.

    RoBERTa-style embeddings (RoBERTa, XLM-R, CamemBERT, MPNet, Longformer, Data2Vec,
    X-MOD...) number the tokens from ``padding_idx + 1``, so ``padding_idx + 1`` of
    their ``max_position_embeddings`` are never a token's.
    """
    embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
    padding_idx = getattr(embeddings, "padding_idx", None)
    if isinstance(padding_idx, int) and hasattr(embeddings, "position_embeddings"):
        return padding_idx + 1
    return 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0


def _positions_from_ids(model: Any) -> int | None:
    """The ``padding_idx`` of embeddings that number positions from the input ids.

    RoBERTa-style embeddings (RoBERTa, XLM-R, CamemBERT, MPNet, Longformer, Data2Vec...)
    give non-pad tokens the positions ``padding_idx + 1, + 2...`` and pad ids
    ``padding_idx``, by transformers' ``create_position_ids_from_input_ids``. None for
    other models, and for models whose ``forward`` takes no ``position_ids``.
    """
    if getattr(model.config, "is_encoder_decoder", False):
        return None
    embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
    padding_idx = getattr(embeddings, "padding_idx", None)
    if not isinstance(padding_idx, int) or "position_ids" not in _forward_parameters(model):
        return None
    module = sys.modules.get(type(embeddings).__module__)
    numbers_from_ids = hasattr(embeddings, "create_position_ids_from_input_ids") or hasattr(
        module, "create_position_ids_from_input_ids"
    )
    return padding_idx if numbers_from_ids else None


def _labels(config: Any) -> list[str]:
    n = int(config.num_labels)
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]


def check_model(model: Any, what: str) -> None:
    """Refuse, with the fix, what is not a loaded textlens model (a path, a bare HF model).

    ``what`` names the caller in the message (a class or function name). Anything with
    the adapter's ``resolve_targets`` passes, so test doubles and subclasses do.
    """
    if isinstance(model, ModelAdapter) or hasattr(model, "resolve_targets"):
        return
    if isinstance(model, (str, os.PathLike)):
        raise InvalidParameterError(
            f"{what} needs a loaded model, not the path {str(model)!r}: load it once "
            f"with model = textlens.load({str(model)!r}) and pass model."
        )
    if hasattr(model, "config") and hasattr(model, "forward"):  # a transformers model
        raise InvalidParameterError(
            f"{what} needs a textlens model, not a bare {type(model).__name__}: wrap it "
            "with its tokenizer, textlens.ModelAdapter(model, tokenizer)."
        )
    raise InvalidParameterError(
        f"{what} needs a textlens model; got a {type(model).__name__}. Load one with "
        "textlens.load(path) or wrap a model and tokenizer with "
        "textlens.ModelAdapter(model, tokenizer)."
    )


def scalar_target(target: Any) -> Any:
    """A 0-d array or tensor (``logits.argmax()``) as the Python value it holds."""
    if isinstance(target, (np.ndarray, np.generic, torch.Tensor)) and target.ndim == 0:
        return target.item()
    return target


def per_text_targets(target: Any) -> list[Any] | None:
    """``target`` as one entry per text, or None when it is one target for every text.

    Lists, tuples, NumPy arrays, tensors and pandas Series/arrays (anything with
    ``tolist``, or iterable other than a string) hold one target per text; a label
    name, an index, None, or a 0-d array or tensor is one target.
    """
    if target is None or isinstance(target, (str, bytes, int, float, np.generic)):
        return None
    if isinstance(target, (np.ndarray, torch.Tensor)) and target.ndim == 0:
        return None
    if hasattr(target, "tolist") and not isinstance(target, Mapping):
        values = target.tolist()
        return values if isinstance(values, list) else None
    if isinstance(target, Iterable) and not isinstance(target, Mapping):
        return list(target)
    return None
