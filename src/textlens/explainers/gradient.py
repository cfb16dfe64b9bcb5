"""Gradient methods: saliency, gradient x input and integrated gradients.

All three differentiate the explained output (the target's logit by default, its
probability on request) with respect to the *word* embeddings; position and segment
embeddings are added by the model and never attributed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from .._validation import Constraint, Interval, IsNone, Options
from ..errors import UninformativeScoresWarning
from ..model import DEFAULT_MAX_BATCH_TOKENS, Encoding, ModelAdapter, pack_batches
from .base import Chooser, Explainer, Scores, target_output

__all__ = ["GradientXInput", "IntegratedGradients", "Saliency"]

OUTPUTS = ("logit", "probability")
RULES = ("gauss_legendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
BASELINES = ("pad", "mask", "zero")
# Length at which a row's attention weights (heads x length^2) take about as much memory
# as its other activations during a backward pass. Measured on MiniLM-L6: peak memory per
# token 276 KB at 200 tokens and 412 KB at 510, i.e. about 1 + length / 430; larger models
# have a larger figure, so a smaller one errs on the side of less memory.
_ATTENTION_TOKENS = 400
# Most tokens (as counted by `_row_cost`) in one forward+backward pass on a CPU, whatever
# the budget: `max_batch_tokens` caps memory, but filling 8,192 tokens makes a CPU slower
# per token (the activations outgrow its caches, and large buffers are allocated afresh
# every pass). `python benchmarks/bench_pass_size.py` (1 thread, demo MiniLM, integrated
# gradients with 50 steps, mean of two runs in alternating order), seconds per text at
# passes of 2,048 / 3,072 / 4,096 / 8,192 tokens: 0.527 / 0.524 / 0.549 / 0.650 on 12
# texts of 20 tokens, 1.63 / 1.62 / 1.62 / 1.74 on 6 of 60, 6.22 / 6.27 / 6.35 / 7.72 on
# 2 of 198 and 21.0 / 22.3 / 27.3 / 32.3 on one of 510; re-measured on another machine
# (2026-11-22): on eager attention 3,072 best at 60 and 198 tokens, within 2% at 510
# and 4% at 20; on SDPA (what gradient passes use now) within 2.3% of the best size
# at every length (20 to 510 tokens). On a GPU the budget is used as given.
CPU_PASS_TOKENS = 3072
# Path rows share one model call only if the cheapest is within this share of the
# costliest (see `_row_cost`): every row is padded to the call's longest, and padding
# costs as much as real tokens. The rows of one text have one length, so they still
# fill whole calls (50 steps of a 20-token text are 1,000 tokens). On 12 tweets of
# 18-22 tokens, 50 steps, one thread, this made IG about 3% faster (0.60 vs 0.62 s/text,
# 4 alternating rounds).
_PAD_SLACK = 0.05


@dataclass
class PathPoints:
    """Model evaluations at points ``baseline + alpha * (input - baseline)``.

    ``values[r]`` is the explained output at row r; ``attributions[r]`` is the per-token
    directional derivative ``grad . (input - baseline)`` there (zero where not asked).
    """

    values: np.ndarray
    attributions: np.ndarray


class _GradientExplainer(Explainer):
    needs: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {"output": [Options(OUTPUTS)]}

    def __init__(
        self,
        model: ModelAdapter,
        *,
        output: str = "logit",
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ):
        super().__init__(model, max_batch_tokens=max_batch_tokens)
        self.output = output

    def _pass_tokens(self) -> int:
        """The budget, or ``CPU_PASS_TOKENS`` when smaller and the model runs on a CPU."""
        if torch.device(self.model.device).type == "cpu":
            return min(self.max_batch_tokens, CPU_PASS_TOKENS)
        return self.max_batch_tokens

    def _input_gradients(
        self, batch: Encoding, choose: Chooser
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Word embeddings of ``batch``, the gradient of the explained output w.r.t. them, logits.

        One forward pass: ``choose(logits)`` gives the targets whose output is differentiated.
        """
        embeds = self.model.word_embeddings(batch.input_ids).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model.logits(batch, inputs_embeds=embeds)
            values = target_output(
                logits.float(), choose(logits), self.output, self.model.output_function
            )
            (grad,) = torch.autograd.grad(values.sum(), embeds)
        return embeds.detach(), grad, logits.detach()


class Saliency(_GradientExplainer):
    """L2 norm of the gradient of the explained output w.r.t. each token's word embedding.

    Unsigned: says how sensitive the output is to a token, not in which direction.
    Simonyan et al. 2014, https://arxiv.org/abs/1312.6034.
    """

    name = "saliency"
    description = "Gradient norm w.r.t. each token's word embedding (unsigned sensitivity)."
    reference = "https://arxiv.org/abs/1312.6034"

    def __init__(
        self,
        model: ModelAdapter,
        *,
        output: str = "logit",
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ):
        super().__init__(model, output=output, max_batch_tokens=max_batch_tokens)
        self._validate()

    predicts_while_scoring = True

    def _score_predicting(
        self, batch: Encoding, choose: Chooser
    ) -> tuple[list[Scores], torch.Tensor]:
        _, grad, logits = self._input_gradients(batch, choose)
        norms = grad.norm(dim=-1).cpu().numpy()
        return [Scores(norms[i, :n]) for i, n in enumerate(batch.lengths)], logits


class GradientXInput(_GradientExplainer):
    """Gradient times input, summed over the embedding dimension (signed).

    Shrikumar et al. 2016, https://arxiv.org/abs/1605.01713.

    What it measures on transformer encoders: their embedding block normalises each
    token's ``e = word + position (+ segment)`` with a LayerNorm, which does not change
    when ``e`` is scaled, so the gradient is orthogonal to ``e``, and

        ``grad . word = -grad . (position + segment)``

    up to a term of relative size ``eps / (var(e) + eps)`` (the LayerNorm's epsilon
    over the variance of ``e`` across dimensions; 1e-12 in BERT). The word's own
    embedding enters the score only through the gradient; the score is the gradient's
    projection on the token's position and segment embeddings (BERT, RoBERTa,
    DistilBERT, ELECTRA, ALBERT, DeBERTa-v2). Where the LayerNorm sees the word
    embedding alone (ModernBERT; DeBERTa-v3, which adds no absolute positions) only
    the epsilon term is left: round-off when the epsilon is tiny (DeBERTa-v3's 1e-7),
    a score scaled by ``eps / var`` otherwise. Every result reports
    ``input_alignment``, ``sum |grad . x| / sum |grad| |x|`` over the text's words'
    tokens (0.016 and 0.025 on the two demo models, 4e-5 on a tiny DeBERTa-v3); below
    ``UNINFORMATIVE`` the result says so and an
    :class:`~textlens.errors.UninformativeScoresWarning` suggests another method.
    """

    #: ``input_alignment`` under which the scores are round-off, not signal.
    UNINFORMATIVE = 1e-3

    name = "grad_x_input"
    description = "Gradient x word embedding, summed over dimensions (signed, one backward pass)."
    reference = "https://arxiv.org/abs/1605.01713"

    def __init__(
        self,
        model: ModelAdapter,
        *,
        output: str = "logit",
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ):
        super().__init__(model, output=output, max_batch_tokens=max_batch_tokens)
        self._validate()

    predicts_while_scoring = True

    def _score_predicting(
        self, batch: Encoding, choose: Chooser
    ) -> tuple[list[Scores], torch.Tensor]:
        embeds, grad, logits = self._input_gradients(batch, choose)
        products = (grad * embeds).sum(-1)
        scale = grad.norm(dim=-1) * embeds.norm(dim=-1)
        counted = (~batch.special_mask() & (batch.attention_mask == 1)).to(products.device)
        aligned = (products.abs() * counted).sum(-1) / (scale * counted).sum(-1)
        scores, alignment = products.cpu().numpy(), aligned.cpu().numpy()
        results = []
        for i, n in enumerate(batch.lengths):
            quality: dict[str, object] = {}
            if np.isfinite(alignment[i]):  # not for a text without words or gradient
                quality["input_alignment"] = float(alignment[i])
                if alignment[i] < self.UNINFORMATIVE:
                    quality["uninformative"] = True
            results.append(Scores(scores[i, :n], quality))
        if any(r.quality.get("uninformative") for r in results):
            warnings.warn(
                f"grad_x_input scores are numerically zero on {self.model.model_id}: the "
                "gradient is orthogonal to the word embeddings, as where an embedding "
                "LayerNorm sees each word embedding alone (DeBERTa-v3). Use "
                "integrated_gradients (pad or mask baseline), saliency or a perturbation "
                "method on this model.",
                UninformativeScoresWarning,
                stacklevel=4,
            )
        return results, logits


class IntegratedGradients(_GradientExplainer):
    """Integrated gradients on the word embeddings, with a completeness check.

    Attributions are ``(x - x') . integral_0^1 grad f(x' + a (x - x')) da`` per token,
    where ``x'`` is the baseline. Every result reports the completeness delta
    ``sum(attributions) - (f(x) - f(x'))``, absolute and relative to ``|f(x) - f(x')|``.

    With ``target_delta`` set, the number of steps is chosen per text by adaptive
    Simpson quadrature on dyadic nodes (see ``_AdaptiveText``): it starts from 5 nodes
    and halves the intervals with the largest completeness errors, which are exact
    because ``f`` is known at every node, until
    ``|delta| <= target_delta * |f(x) - f(x')|``. The steps of all texts of a batch are
    evaluated together, in passes of at most ``max_batch_tokens`` (at most
    ``CPU_PASS_TOKENS`` on a CPU, where larger passes are slower per token).

    Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365.

    Parameters
    ----------
    baseline : {'pad', 'mask', 'zero'}
        The reference input: every non-special token replaced by [PAD], by [MASK], or a
        zero word embedding. Special tokens ([CLS], [SEP]...) are kept as they are.
    n_steps : int
        Number of gradient evaluations along the path (fixed-step mode).
    rule : str
        Quadrature rule of the fixed-step mode: 'gauss_legendre' or a Riemann rule
        ('riemann_left', 'riemann_right', 'riemann_middle', 'riemann_trapezoid').
    target_delta : float or None
        If set, adaptive mode: refine each text's path until its relative completeness
        delta is at most this (and the intervals' errors do not cancel each other by
        more than a factor 10). ``n_steps`` and ``rule`` are then ignored.
    max_steps : int
        Cap on gradient evaluations per text in adaptive mode; results that stop at
        the cap report ``converged: False``.
    output : {'logit', 'probability'}
        The explained scalar.
    """

    name = "integrated_gradients"
    description = (
        "Integrated gradients on word embeddings with completeness delta (fixed or adaptive steps)."
    )
    reference = "https://arxiv.org/abs/1703.01365"
    parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "baseline": [Options(BASELINES)],
        "n_steps": [Interval(int, 1, None)],
        "rule": [Options(RULES)],
        "target_delta": [IsNone(), Interval(float, 0, 1, low_open=True, high_open=True)],
        "max_steps": [Interval(int, 5, None)],
    }

    def __init__(
        self,
        model: ModelAdapter,
        *,
        baseline: str = "pad",
        n_steps: int = 50,
        rule: str = "gauss_legendre",
        target_delta: float | None = None,
        max_steps: int = 1025,
        output: str = "logit",
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ):
        super().__init__(model, output=output, max_batch_tokens=max_batch_tokens)
        self.baseline = baseline
        self.n_steps = n_steps
        self.rule = rule
        self.target_delta = target_delta
        self.max_steps = max_steps
        self._validate()
        if rule == "riemann_trapezoid" and n_steps < 2 and target_delta is None:
            from ..errors import InvalidParameterError

            raise InvalidParameterError(
                "The 'n_steps' parameter of IntegratedGradients must be >= 2 with "
                f"rule='riemann_trapezoid'. Got {n_steps}."
            )

    def get_params(self) -> dict[str, object]:
        params = super().get_params()
        if self.target_delta is None:
            del params["max_steps"]
        else:
            del params["n_steps"]
            params["rule"] = "adaptive_simpson"
        return params

    # ------------------------------------------------------------------ scoring
    # The prediction comes from the path's own evaluation at alpha = 1 (the unchanged
    # input), which every mode needs for f(x): no separate forward pass for it.
    predicts_while_scoring = True

    def _text_batch_tokens(self) -> int:
        return self.max_batch_tokens  # _Path packs the rows of a group in smaller passes

    def _score_predicting(
        self, batch: Encoding, choose: Chooser
    ) -> tuple[list[Scores], torch.Tensor]:
        return self._integrate(_Path(self.model, batch, self._baseline_ids(batch), self, choose))

    def _score(self, batch: Encoding, targets: torch.Tensor) -> list[Scores]:
        path = _Path(self.model, batch, self._baseline_ids(batch), self, targets=targets)
        return self._integrate(path)[0]

    def _integrate(self, path: _Path) -> tuple[list[Scores], torch.Tensor]:
        if self.target_delta is None:
            return self._fixed(path)
        return self._adaptive(path)

    def _baseline_ids(self, batch: Encoding) -> torch.Tensor | None:
        if self.baseline == "zero":
            return None
        fill = self.model.pad_token_id if self.baseline == "pad" else self.model.mask_token_id
        keep = batch.special_mask() | (batch.attention_mask == 0)
        return torch.where(keep, batch.input_ids, torch.full_like(batch.input_ids, fill))

    def _fixed(self, path: _Path) -> tuple[list[Scores], torch.Tensor]:
        alphas, weights = quadrature(self.rule, self.n_steps)
        n_texts = len(path.batch)
        inputs, logits = path.predict(with_gradients=False)
        rows = [(i, a) for i in range(n_texts) for a in alphas]
        points = path.evaluate(rows, with_gradients=True)
        per_text = points.attributions.reshape(n_texts, len(alphas), -1)
        attributions = np.einsum("k,ikt->it", weights, per_text)
        baselines = path.evaluate([(i, 0.0) for i in range(n_texts)], with_gradients=False)
        scores = [
            Scores(
                attributions[i, :n],
                _completeness(
                    attributions[i, :n],
                    inputs.values[i],
                    baselines.values[i],
                    self.n_steps,
                    path.evaluations[i],
                ),
            )
            for i, n in enumerate(path.batch.lengths)
        ]
        return scores, logits

    def _adaptive(self, path: _Path) -> tuple[list[Scores], torch.Tensor]:
        assert self.target_delta is not None
        texts = [_AdaptiveText() for _ in range(len(path.batch))]
        inputs, logits = path.predict(with_gradients=True)
        for i, t in enumerate(texts):
            t.nodes[1.0] = (float(inputs.values[i]), inputs.attributions[i])
        pending = [(i, a) for i, t in enumerate(texts) for a in t.initial_nodes() if a != 1.0]
        while pending:
            points = path.evaluate(pending, with_gradients=True)
            for r, (i, alpha) in enumerate(pending):
                texts[i].nodes[alpha] = (float(points.values[r]), points.attributions[r])
            pending = [
                (i, a)
                for i, t in enumerate(texts)
                for a in t.refine(self.target_delta, self.max_steps)
            ]
        results = []
        for i, (t, n) in enumerate(zip(texts, path.batch.lengths, strict=True)):
            attributions = t.attributions()[:n]
            quality = _completeness(
                attributions, t.nodes[1.0][0], t.nodes[0.0][0], len(t.nodes), path.evaluations[i]
            )
            quality["converged"] = t.converged
            quality["intervals"] = len(t.intervals)
            results.append(Scores(attributions, quality))
        return results, logits


class _Path:
    """Evaluates the explained output (and its path derivative) at points on the IG path."""

    def __init__(
        self,
        model: ModelAdapter,
        batch: Encoding,
        baseline_ids: torch.Tensor | None,
        owner: IntegratedGradients,
        choose: Chooser | None = None,
        *,
        targets: torch.Tensor | None = None,
    ):
        """The explained class of each text is ``targets``, or picked by ``choose(logits)``
        from the logits at ``alpha = 1`` in ``predict`` (the predicted class, say)."""
        if (choose is None) == (targets is None):
            raise ValueError("_Path takes either targets or a way to choose them")
        self.model = model
        self.batch = batch
        self.choose = choose
        self.targets = torch.zeros(len(batch), dtype=torch.long)
        if targets is not None:
            self.targets[:] = targets.cpu()
        self.owner = owner
        # Special tokens and padding are kept as they are in every baseline.
        keep = batch.special_mask() | (batch.attention_mask == 0)
        with torch.no_grad():
            self.inputs = model.word_embeddings(batch.input_ids)
            if baseline_ids is None:
                self.base = torch.where(
                    keep.unsqueeze(-1).to(self.inputs.device),
                    self.inputs,
                    torch.zeros_like(self.inputs),
                )
            else:
                self.base = model.word_embeddings(baseline_ids)
        self.direction = self.inputs - self.base
        # What determines the model's input at alpha = 0: texts with the same key have
        # the very same baseline input and target, so one evaluation serves them all.
        ids = baseline_ids
        if ids is None:  # zero baseline: the kept tokens, then zeros (-1 in the key)
            ids = torch.where(keep, batch.input_ids, torch.full_like(batch.input_ids, -1))
        self._baseline_inputs = [
            (
                tuple(ids[i, :n].tolist()),
                *(tuple(v[i, :n].tolist()) for v in batch.model_inputs.values()),
            )
            for i, n in enumerate(batch.lengths)
        ]
        # Gradient evaluations charged to each text; one shared by k texts counts 1/k.
        self.evaluations = np.zeros(len(batch))

    def predict(self, *, with_gradients: bool) -> tuple[PathPoints, torch.Tensor]:
        """Evaluate every text at ``alpha = 1`` (its unchanged input), first of all points.

        With ``choose``, the targets are picked there from the logits, and then hold for
        every other point of the path. Returns the points and the logits
        ``[texts, classes]``, which are the model's prediction.
        """
        logits = torch.zeros(len(self.batch), self.model.num_labels)
        rows = [(i, 1.0) for i in range(len(self.batch))]
        points = self.evaluate(rows, with_gradients=with_gradients, logits=logits)
        self.choose = None  # the targets are known from here on
        return points, logits

    def evaluate(
        self,
        rows: Sequence[tuple[int, float]],
        *,
        with_gradients: bool,
        logits: torch.Tensor | None = None,
    ) -> PathPoints:
        """Explained output (and per-token derivative) for each ``(text index, alpha)`` row.

        Rows at ``alpha = 0`` of texts whose baseline inputs and targets are identical
        (same length and special tokens, with a 'pad', 'mask' or 'zero' baseline) are
        evaluated once: the model's output and gradient there are the same, and only
        the dot product with each text's own direction differs. With ``logits``, the rows'
        logits go there, indexed by row (``predict``).
        """
        width = self.inputs.shape[1]
        values = np.zeros(len(rows))
        attributions = np.zeros((len(rows), width))
        shared_by: dict[int, list[int]] = {}  # evaluated row -> rows that reuse it
        first: dict[tuple[object, ...], int] = {}
        for r, (i, a) in enumerate(rows):
            if a == 0.0:
                key = (int(self.targets[i]), *self._baseline_inputs[i])
                owner = first.setdefault(key, r)
                if owner != r:
                    shared_by.setdefault(owner, []).append(r)
        reused = {r for rs in shared_by.values() for r in rs}
        todo = [r for r in range(len(rows)) if r not in reused]
        kept: dict[int, torch.Tensor] = {}  # gradients of the rows that others reuse
        row_costs = [_row_cost(self.batch.lengths[rows[r][0]]) for r in todo]
        budget = self.owner._pass_tokens()
        for packed in pack_batches(row_costs, budget, pad_slack=_PAD_SLACK):
            chunk = [todo[c] for c in packed]
            index = torch.tensor([rows[r][0] for r in chunk], device=self.inputs.device)
            alpha = torch.tensor(
                [rows[r][1] for r in chunk], dtype=self.inputs.dtype, device=self.inputs.device
            )
            sub = self.batch.select([rows[r][0] for r in chunk])
            w = max(sub.lengths)
            direction = self.direction[index, :w]
            embeds = (self.base[index, :w] + alpha.view(-1, 1, 1) * direction).detach()
            # At alpha = 1 the unchanged input itself, not base + (input - base), which
            # can differ from it in the last bit: f(x) is then the model's prediction.
            ends = alpha == 1.0
            if bool(ends.any()):
                embeds[ends] = self.inputs[index[ends], :w]
            if with_gradients:
                embeds.requires_grad_(True)
                with torch.enable_grad():
                    out = self._output(sub, embeds, index, chunk, logits)
                    (grad,) = torch.autograd.grad(out.sum(), embeds)
                attributions[chunk, :w] = (grad * direction).sum(-1).cpu().double().numpy()
                for c, r in enumerate(chunk):
                    if r in shared_by:
                        kept[r] = grad[c]
            else:
                with torch.no_grad():
                    out = self._output(sub, embeds, index, chunk, logits)
            values[chunk] = out.detach().cpu().double().numpy()
        for owner, others in shared_by.items():
            values[others] = values[owner]
            if with_gradients:
                for r in others:
                    i = rows[r][0]
                    n = self.batch.lengths[i]
                    product = kept[owner][:n] * self.direction[i, :n]
                    attributions[r, :n] = product.sum(-1).cpu().double().numpy()
        if with_gradients:
            for r in todo:
                group = [r, *shared_by.get(r, [])]
                for g in group:
                    self.evaluations[rows[g][0]] += 1 / len(group)
        return PathPoints(values, attributions)

    def _output(
        self,
        sub: Encoding,
        embeds: torch.Tensor,
        index: torch.Tensor,
        chunk: list[int],
        logits: torch.Tensor | None,
    ) -> torch.Tensor:
        """The explained output of one pass's rows (their targets picked first if asked)."""
        out = self.model.logits(sub, inputs_embeds=embeds).float()
        if self.choose is not None:
            self.targets[index.cpu()] = self.choose(out.detach(), index.tolist()).cpu()
        if logits is not None:
            logits[chunk] = out.detach().cpu()
        return target_output(
            out, self.targets[index.cpu()], self.owner.output, self.owner.model.output_function
        )


def _row_cost(length: int) -> int:
    """What one path row of ``length`` tokens counts against ``max_batch_tokens``.

    Its tokens, plus the attention weights a backward pass keeps, which grow with the
    square of the length: without this term a 512-token row would need about twice
    the memory per token of a 50-token one.
    """
    return length + -(-length * length // _ATTENTION_TOKENS)


class _AdaptiveText:
    """Adaptive Simpson integration of one text's path, with exact per-interval errors.

    Nodes sit at dyadic fractions, so halving an interval re-uses its three nodes and
    costs two new gradient evaluations. Since ``f`` is known at every node, each
    interval's completeness error ``e_j`` (Simpson's sum of the attributions minus the
    change of ``f`` across the interval) is exact, and the errors add up to exactly
    the reported delta. The path starts as ``INITIAL_INTERVALS`` intervals (5 nodes);
    each round halves the intervals whose ``|e_j|`` is at least ``SPLIT_FRACTION`` of
    the largest one, until

    * ``|sum_j e_j| <= target_delta * |f(x) - f(x')|`` (the reported relative delta is
      then within the target, by construction), and
    * ``sum_j |e_j| <= GUARD * target_delta * |f(x) - f(x')|``, a safeguard against
      errors of opposite signs on distant intervals hiding each other.

    Why these choices (measured on the demo model, 30 texts of 20, 60 and 200 tokens,
    ``target_delta=0.01``, see ``benchmarks/bench_gradients.py``):

    * Neighbouring Simpson errors have opposite signs wherever the integrand bends
      (its fourth derivative changes sign across every bump), so ``sum_j |e_j|`` is
      often several times ``|sum_j e_j|`` although the composite rule is accurate. A
      guard of 2 (an earlier version) made every interval meet the tolerance on its
      own and cost 22-25% more evaluations without more accurate attributions per
      evaluation: the per-token error against 100-step Gauss-Legendre is, per text,
      a median 0.2-0.7 times that of uniform Gauss-Legendre with the same number of
      evaluations with a guard of 10, and 0.2-0.95 times with a guard of 2.
    * Starting from 5 nodes instead of 9 saves evaluations on the easiest texts (no
      text converged on the initial nodes of either layout; the easiest took 9).
    * Higher-order and non-dyadic variants (nested Clenshaw-Curtis, Gauss-Lobatto and
      Gauss-Legendre panels, Romberg/Boole on the same dyadic nodes, hp splits,
      coordinate maps clustering nodes near ``alpha = 0``) were no better for a 1%
      tolerance: the integrands have features over most of the path, which a
      low-order rule refined two nodes at a time follows cheaply.
    """

    INITIAL_INTERVALS = 2
    SPLIT_FRACTION = 0.8
    GUARD = 10.0
    NOISE = 1e-6  # relative precision of float32 model outputs, with margin
    #: Narrowest interval that is split: far below what any step budget reaches evenly,
    #: but it stops refinement chasing float32 noise down to intervals of width 0.
    MIN_WIDTH = 2.0**-24

    def __init__(self, initial_intervals: int = INITIAL_INTERVALS):
        n = initial_intervals
        self.intervals = [(k / n, (k + 1) / n) for k in range(n)]
        self.nodes: dict[float, tuple[float, np.ndarray]] = {}
        self.converged = False

    def initial_nodes(self) -> list[float]:
        points = {a for a, b in self.intervals} | {(a + b) / 2 for a, b in self.intervals}
        return sorted(points | {1.0})

    def _simpson(self, a: float, b: float) -> np.ndarray:
        m = (a + b) / 2
        return (b - a) / 6 * (self.nodes[a][1] + 4 * self.nodes[m][1] + self.nodes[b][1])

    def _error(self, a: float, b: float) -> float:
        return float(self._simpson(a, b).sum() - (self.nodes[b][0] - self.nodes[a][0]))

    def refine(self, target_delta: float, max_steps: int) -> list[float]:
        """Split the intervals with the largest errors; return the new nodes (none: stop)."""
        if self.converged or not self.nodes:
            return []
        errors = np.array([self._error(a, b) for a, b in self.intervals])
        f_x, f_base = self.nodes[1.0][0], self.nodes[0.0][0]
        tolerance = target_delta * abs(f_x - f_base)
        if abs(errors.sum()) <= tolerance and np.abs(errors).sum() <= self.GUARD * tolerance:
            self.converged = True
            return []
        noise = self.NOISE * max(abs(f_x), abs(f_base), 1.0)
        if np.abs(errors).sum() <= noise:
            return []  # f(x) ~ f(x'): the target is below float32 noise; stop, not converged
        budget = (max_steps - len(self.nodes)) // 2
        order = np.argsort(-np.abs(errors), kind="stable")
        cut = self.SPLIT_FRACTION * abs(errors[order[0]])
        worst = order[: max(budget, 0)]
        # An interval whose error is float32 noise, or that is too narrow to halve, is
        # not split: halving it again would only measure the noise again.
        chosen = {
            int(j)
            for j in worst
            if abs(errors[j]) >= cut
            and abs(errors[j]) > noise
            and self.intervals[j][1] - self.intervals[j][0] >= self.MIN_WIDTH
        }
        if not chosen:
            return []  # out of steps, or only noise left to split: stop, not converged
        new_nodes: list[float] = []
        intervals = []
        for j, (a, b) in enumerate(self.intervals):
            if j in chosen:
                m = (a + b) / 2
                intervals += [(a, m), (m, b)]
                new_nodes += [(a + m) / 2, (m + b) / 2]
            else:
                intervals.append((a, b))
        self.intervals = intervals
        return new_nodes

    def attributions(self) -> np.ndarray:
        return np.sum([self._simpson(a, b) for a, b in self.intervals], axis=0)


def quadrature(rule: str, n_steps: int) -> tuple[list[float], np.ndarray]:
    """Points in [0, 1] and weights (summing to 1) of a quadrature rule.

    The points are Captum's; so are the weights, except for 'riemann_trapezoid', where
    Captum's sum to (n - 1) / n and ours are the trapezoid rule's (spacing 1 / (n - 1)).
    """
    if rule == "gauss_legendre":
        x, w = np.polynomial.legendre.leggauss(n_steps)
        return [float(a) for a in 0.5 * (x + 1)], 0.5 * w
    if rule == "riemann_trapezoid":
        alphas = np.linspace(0, 1, n_steps)
        weights = np.full(n_steps, 1 / (n_steps - 1))
        weights[[0, -1]] /= 2
        return [float(a) for a in alphas], weights
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    alphas = (np.arange(n_steps) + offsets[rule]) / n_steps
    return [float(a) for a in alphas], np.full(n_steps, 1 / n_steps)


def _completeness(
    attributions: np.ndarray, f_x: float, f_base: float, n_steps: int, evaluations: float
) -> dict[str, object]:
    gap = float(f_x - f_base)
    delta = float(np.sum(attributions) - gap)
    return {
        "delta": delta,
        # None when f(x) == f(baseline): a relative figure is then undefined.
        "relative_delta": abs(delta) / abs(gap) if gap != 0 else None,
        "f_x": float(f_x),
        "f_baseline": float(f_base),
        # Points on the path (quadrature nodes) ...
        "n_steps": int(n_steps),
        # ... and the model gradient evaluations they cost this text: fewer when its
        # baseline evaluation (alpha = 0) was shared with other texts of the batch,
        # which counts 1/k for each of the k texts sharing it.
        "gradient_evaluations": round(float(evaluations), 6),
    }
