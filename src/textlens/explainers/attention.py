"""Attention-based scores: raw attention from [CLS] and attention rollout.

Both ignore the target class: attention is computed before the classifier head, so the
scores are the same for every class (their ``quality`` says so).
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import torch

from .._validation import Constraint, InstanceOf, Options
from ..errors import InvalidParameterError
from ..model import DEFAULT_MAX_BATCH_TOKENS, Encoding, ModelAdapter
from .base import Chooser, Explainer, Scores

__all__ = ["Attention", "AttentionRollout"]

_TARGET_INDEPENDENT = {"target_independent": True}


def _attention_pass(model: ModelAdapter, batch: Encoding) -> Any:
    """One forward pass that returns attention weights."""
    with torch.no_grad():
        out = model.forward(batch, output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise InvalidParameterError(
            f"The model {model.model_id} returned no attention weights; load it with "
            "attn_implementation='eager'."
        )
    return out


def _square(out: Any, length: int) -> bool:
    """Whether ``out`` holds full ``[len, len]`` attention matrices.

    Longformer-style outputs (with ``global_attentions``) never do: their local weights
    are ``[len, window + 1 + globals]``, which can look square for a short text.
    """
    if getattr(out, "global_attentions", None):
        return False
    return all(a.dim() == 4 and a.shape[-2:] == (length, length) for a in out.attentions)


def _not_full_attention(model: ModelAdapter, method: str, out: Any, length: int) -> Exception:
    shapes = sorted({tuple(a.shape[-2:]) for a in out.attentions})
    kind = getattr(model.model.config, "model_type", "this kind of model")
    return InvalidParameterError(
        f"{method} needs token-to-token attention weights, and the model {model.model_id} "
        f"({kind}) does not compute full self-attention: for {length} tokens its layers give "
        f"attention weights of shape {', '.join(map(str, shapes))} (sliding-window, sparse "
        "or pooled attention). Use a gradient or perturbation method instead, e.g. "
        "integrated_gradients or occlusion."
    )


def _attentions(
    model: ModelAdapter, batch: Encoding, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention weights ``[layers, batch, heads, len, len]`` and the logits of the same pass."""
    out = _attention_pass(model, batch)
    length = batch.input_ids.shape[1]
    if not _square(out, length):
        raise _not_full_attention(model, method, out, length)
    return torch.stack([a.float() for a in out.attentions]), out.logits


def _cls_attentions(
    model: ModelAdapter, batch: Encoding, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention paid by the position the classifier reads (the first, [CLS]; the last
    token of a decoder classifier; the mean over tokens for a mean-pooling one),
    ``[layers, batch, heads, len]``, and the logits.

    Models with full self-attention give it as that row of every attention matrix.
    Longformer-style models attend locally, but their first token attends globally (their
    classification heads make it so, and textlens passes that mask), and its weights over
    all tokens are the first column of their ``global_attentions``.
    """
    out = _attention_pass(model, batch)
    length = batch.input_ids.shape[1]
    if _square(out, length):
        # [CLS], a decoder's last token, or every token for a mean-pooling classifier
        reader = model.reader_weights(batch.attention_mask)  # [batch, queries]
        weights = [
            torch.einsum("bq,bhqk->bhk", reader.to(a.device), a.float())  # [batch, heads, keys]
            for a in out.attentions
        ]
        return torch.stack(weights), out.logits
    global_ = getattr(out, "global_attentions", None)
    if global_ and all(g is not None and g.dim() == 4 and g.shape[-2] >= length for g in global_):
        return torch.stack([g[:, :, :length, 0].float() for g in global_]), out.logits
    raise _not_full_attention(model, method, out, length)


def _reader(model: ModelAdapter) -> str:
    """Whose attention the scores are: what the classifier reads."""
    if model.pools_mean:
        return "mean of the tokens"
    return "last token" if model.pools_last_token else "first token"


def _check_index(owner: str, name: str, value: int | str, size: int) -> None:
    if isinstance(value, int) and not -size <= value < size:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be 'mean' or an int in "
            f"[{-size}, {size - 1}] for this model ({size} {name}s). Got {value}."
        )


class Attention(Explainer):
    """Attention paid by the [CLS] position (position 0) to each token: by the position the
    classifier reads, so for a decoder classifier (GPT-2, Llama) the last token, and for
    a mean-pooling one the mean over the tokens (``quality["read_from"]`` says which).

    Parameters
    ----------
    layer : int or 'mean'
        Which layer (0-based; negative counts from the top; default the last), or the
        mean over layers.
    head : int or 'mean'
        Which head, or the mean over heads (default).

    Jain & Wallace 2019 discuss what attention does and does not explain,
    https://arxiv.org/abs/1902.10186.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"attention"})
    name = "attention"
    description = (
        "Attention from [CLS] (or the token the classifier reads) to each token, for one "
        "layer/head or the mean."
    )
    reference = "https://arxiv.org/abs/1902.10186"
    parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "layer": [InstanceOf(int, "an int"), Options(("mean",))],
        "head": [InstanceOf(int, "an int"), Options(("mean",))],
    }

    def __init__(
        self,
        model: ModelAdapter,
        *,
        layer: int | str = -1,
        head: int | str = "mean",
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ):
        super().__init__(model, max_batch_tokens=max_batch_tokens)
        self.layer = layer
        self.head = head
        self._validate()
        config = model.model.config
        _check_index(type(self).__name__, "layer", layer, model.num_layers)
        _check_index(type(self).__name__, "head", head, int(config.num_attention_heads))

    predicts_while_scoring = True

    def _score_predicting(
        self, batch: Encoding, choose: Chooser
    ) -> tuple[list[Scores], torch.Tensor]:
        att, logits = _cls_attentions(self.model, batch, self.name)  # [layers, batch, heads, keys]
        att = att.mean(0) if self.layer == "mean" else att[cast(int, self.layer)]
        att = att.mean(1) if self.head == "mean" else att[:, cast(int, self.head)]
        scores = att.cpu().numpy()
        explained = [
            Scores(scores[i, :n], {**_TARGET_INDEPENDENT, "read_from": _reader(self.model)})
            for i, n in enumerate(batch.lengths)
        ]
        return explained, logits


class AttentionRollout(Explainer):
    """Attention rollout: attention multiplied through the layers, with the residual path.

    Each layer's head-averaged attention ``A`` becomes ``0.5 A + 0.5 I`` (the residual
    connection), rows renormalised; the product over layers gives how much the [CLS]
    position at the top draws from each input token. Abnar & Zuidema 2020,
    https://arxiv.org/abs/2005.00928.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"attention"})
    name = "attention_rollout"
    description = (
        "Attention rollout (Abnar & Zuidema 2020): residual-aware attention through all layers."
    )
    reference = "https://arxiv.org/abs/2005.00928"
    parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {}

    def __init__(self, model: ModelAdapter, *, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS):
        super().__init__(model, max_batch_tokens=max_batch_tokens)
        self._validate()

    predicts_while_scoring = True

    def _score_predicting(
        self, batch: Encoding, choose: Chooser
    ) -> tuple[list[Scores], torch.Tensor]:
        weights, logits = _attentions(self.model, batch, self.name)
        att = weights.mean(2)  # [layers, batch, len, len]
        eye = torch.eye(att.shape[-1], device=att.device)
        rollout = eye.expand_as(att[0]).clone()
        for layer_att in att:
            mixed = 0.5 * layer_att + 0.5 * eye
            mixed = mixed / mixed.sum(-1, keepdim=True)
            rollout = mixed @ rollout
        reader = self.model.reader_weights(batch.attention_mask).to(rollout.device)
        scores = torch.einsum("bq,bqk->bk", reader, rollout).cpu().numpy()
        explained = [
            Scores(scores[i, :n], {**_TARGET_INDEPENDENT, "read_from": _reader(self.model)})
            for i, n in enumerate(batch.lengths)
        ]
        return explained, logits
