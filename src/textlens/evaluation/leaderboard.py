"""Which explanation to trust: every applicable metric for every method, on your model and data.

:func:`leaderboard` runs the chosen methods (all registered ones by default) on the
data, measuring their cost, and hands the explanations to
:func:`evaluate_explanations`, which works as well on precomputed explanations
(any ``{name: [Explanation, ...]}``). It computes:

- faithfulness (always): comprehensiveness and sufficiency AOPC, deletion and insertion
  areas, log-odds drop (:mod:`.faithfulness`), every method through one shared,
  cached evaluation engine;
- ground truth, when the data marks planted words (field ``planted``): hit rate at 1
  and at k (:mod:`.groundtruth`);
- plausibility, when the data has human rationales (field ``rationale``): token F1,
  IOU F1, AUPRC (:mod:`.plausibility`);
- agreement between every pair of methods (:mod:`.agreement`);
- stability over seeds, for methods with a ``seed`` (:mod:`.stability`);
- the cascading-randomisation sanity check (:mod:`.sanity`);
- cost: seconds and model evaluations per text (:mod:`.cost`).

A random-scores baseline is added as a reference row. The recommendation names the most
faithful method -- the best mean rank over comprehensiveness AOPC, sufficiency AOPC,
deletion area and insertion area, among methods that pass the sanity check -- and the
most faithful one whose time per text fits ``budget_ms``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import (
    ExplanationError,
    InputFileError,
    InvalidInputError,
    InvalidParameterError,
    TextlensError,
)
from ..explainers import REGISTRY
from ..explainers.perturbation.engine import MASKINGS, OUTPUTS, Engine
from ..explanation import Explanation
from ..model import DEFAULT_MAX_BATCH_TOKENS, ModelAdapter, check_model
from ._units import LEVELS, RANKINGS, Annotation, check_aligned, check_option, units
from .agreement import AgreementResult, agreement
from .baselines import random_explanations
from .cost import MethodRun, explainer_class, run_method
from .faithfulness import FRACTIONS, FaithfulnessResult, faithfulness
from .groundtruth import hit_rates
from .metrics import METRICS, Metric, MetricResult, get_metric
from .plausibility import plausibility
from .sanity import DEFAULT_THRESHOLD, MIN_UNITS, SanityResult, sanity_check
from .stability import StabilityResult, has_seed, stability

__all__ = [
    "FAITHFULNESS_RANKING",
    "EvaluationData",
    "Example",
    "Leaderboard",
    "Recommendation",
    "evaluate_explanations",
    "leaderboard",
    "load_evaluation_data",
]

#: The metrics whose mean rank decides "most faithful".
FAITHFULNESS_RANKING: tuple[str, ...] = (
    "comprehensiveness_aopc",
    "sufficiency_aopc",
    "deletion_area",
    "insertion_area",
)
_COLUMN_ORDER: tuple[str, ...] = (
    "comprehensiveness_aopc",
    "sufficiency_aopc",
    "deletion_area",
    "insertion_area",
    "log_odds_drop",
    "hit_at_1",
    "hit_at_k",
    "token_f1",
    "iou_f1",
    "auprc",
    "seed_rank_correlation",
    "seed_spread",
    "randomization_similarity",
    "seconds_per_text",
    "evaluations_per_text",
)
RANDOM = "random"

Progress = Callable[[str], None]


# ---------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class Example:
    """One text to evaluate on, with what the data knows about it.

    Attributes
    ----------
    text : str
    label : str or None
        The true label (used for the model's accuracy in the settings only).
    rationale : list or None
        Human rationale: character spans ``[[start, end], ...]`` or words.
    planted : str, list or None
        Planted decisive word(s), or their character spans.
    """

    text: str
    label: str | None = None
    rationale: Annotation = None
    planted: Annotation = None


@dataclasses.dataclass
class EvaluationData:
    """Examples read from a file, and the lines that could not be used."""

    examples: list[Example]
    problems: list[str]


def load_evaluation_data(
    path: str | Path,
    *,
    limit: int | None = None,
    fmt: str = "auto",
    pair_field: str | None = None,
) -> EvaluationData:
    """Read examples from a JSONL (fields ``text``, optional ``label``, ``rationale``,
    ``planted``), CSV (``text`` column) or plain-text file (one text per line).

    Bad lines are skipped and listed in ``problems``; ``limit`` keeps the first N good ones.

    Pairs of texts (for a pair classifier): with ``pair_field``, each row's field of that
    name is the second text of its pair (a row without it is a bad line); a ``text`` that
    holds the pair mark (see :mod:`textlens.pairs`) is a pair too. Spans in ``rationale``
    and ``planted`` refer to the first text when ``pair_field`` is given (to the
    one-string form of the pair otherwise), spans in ``pair_rationale`` and
    ``pair_planted`` to the second text; words match in both texts.
    """
    from ..io import read_records

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidParameterError(
            f"The 'limit' parameter must be None or an int >= 1. Got {limit!r}."
        )
    examples: list[Example] = []
    problems: list[str] = []
    for record in read_records(path, fmt):
        if record.error or record.text is None:
            problems.append(record.error or f"line {record.line}: no text")
            continue
        try:
            example = _example(record, pair_field)
        except InvalidInputError as exc:
            problems.append(f"line {record.line}: {exc}")
            continue
        bad = _annotation_problem(example)
        if bad:
            problems.append(f"line {record.line}: {bad}")
            continue
        examples.append(example)
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        raise InputFileError(
            f"{path} has no usable text ({len(problems)} bad lines"
            + (f", first: {problems[0]}" if problems else "")
            + '). Give JSONL lines like {"text": "...", "rationale": [[0, 5]]}.'
        )
    return EvaluationData(examples, problems)


def _example(record: Any, pair_field: str | None) -> Example:
    """One row as an :class:`Example`, its pair joined and its pair annotations shifted."""
    from ..pairs import pair_text, split_pair

    text = record.text
    rationale, planted = record.extra.get("rationale"), record.extra.get("planted")
    if pair_field is not None:
        second = record.extra.get(pair_field)
        if not isinstance(second, str) or not second.strip():
            got = f" (got {second!r})" if second is not None else ""
            raise InputFileError(f"it has no text in its pair field {pair_field!r}{got}")
        for field, value in (("rationale", rationale), ("planted", planted)):
            bad = _spans_problem(field, value, text, words=False)
            if bad:
                raise InputFileError(bad)
        text = pair_text(text, second)
    pair = split_pair(text)
    extra = {f: record.extra.get(f"pair_{f}") for f in ("rationale", "planted")}
    if any(v is not None for v in extra.values()):
        if pair is None:
            raise InputFileError(
                "'pair_rationale' and 'pair_planted' annotate the second text of a pair, and "
                "this row's text is not a pair (use --pair-field)"
            )
        start = len(text) - len(pair[1])
        for field, value in extra.items():
            if value is None:
                continue
            bad = _spans_problem(f"pair_{field}", value, pair[1], words=False)
            if bad:
                raise InputFileError(bad)
            shifted = _shift_spans(value, start)
            own = rationale if field == "rationale" else planted
            merged = ([own] if isinstance(own, str) else list(own or [])) + shifted
            if field == "rationale":
                rationale = merged
            else:
                planted = merged
    return Example(text, record.label, rationale, planted)


def _shift_spans(value: Annotation, start: int) -> list[Any]:
    """Spans ``[a, b]`` moved by ``start`` characters; words unchanged."""
    items = [value] if isinstance(value, str) else list(value or [])
    return [item if isinstance(item, str) else [item[0] + start, item[1] + start] for item in items]


def _annotation_problem(example: Example) -> str | None:
    for field in ("rationale", "planted"):
        bad = _spans_problem(field, getattr(example, field), example.text)
        if bad:
            return bad
    return None


def _spans_problem(field: str, value: Annotation, text: str, words: bool = True) -> str | None:
    """Why ``value`` (of the field ``field``) is not words or spans of ``text``, or None.

    ``words=False`` leaves words unchecked (a pair's words may stand in either text).
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return f"the {field!r} field must be a list of [start, end] spans or of words"
    for item in value:
        if isinstance(item, str):
            if words and item.strip().casefold() not in text.casefold():  # matches nothing
                return f"the {field!r} word {item!r} does not occur in the text"
            continue
        ok = (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in item)
            and 0 <= item[0] <= item[1] <= len(text)
        )
        if not ok:
            return (
                f"the {field!r} field must hold words or spans [start, end] with "
                f"0 <= start <= end <= {len(text)}; got {item!r}"
            )
    return None


def as_examples(
    data: Sequence[str | Example | Mapping[str, Any]] | EvaluationData,
) -> list[Example]:
    """Examples from texts, pairs of texts (tuples), :class:`Example` objects or dicts with
    a ``text`` field."""
    if isinstance(data, EvaluationData):
        return list(data.examples)
    if isinstance(data, str):
        raise InvalidInputError(
            "Expected a list of texts or examples, got a single string; wrap it in a list."
        )
    out = []
    for i, item in enumerate(data):
        if isinstance(item, Example):
            out.append(item)
        elif isinstance(item, str):
            out.append(Example(item))
        elif isinstance(item, tuple) and len(item) == 2 and all(isinstance(t, str) for t in item):
            from ..pairs import pair_text

            out.append(Example(pair_text(*item, index=i)))  # a pair of texts
        elif isinstance(item, Mapping) and isinstance(item.get("text"), str):
            label = item.get("label")
            out.append(
                Example(
                    item["text"],
                    None if label is None else str(label),
                    item.get("rationale"),
                    item.get("planted"),
                )
            )
        else:
            raise InvalidInputError(
                f"Item {i} of the data is a {type(item).__name__}; give texts, pairs of texts, "
                "Example objects or dicts with a 'text' field."
            )
        bad = _annotation_problem(out[-1])
        if bad:
            raise InvalidInputError(f"Item {i} of the data: {bad}.")
    if not out:
        raise InvalidInputError("No texts were given to evaluate on.")
    return out


# ---------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class Recommendation:
    """Which method to use on this model and data.

    Attributes
    ----------
    most_faithful : str or None
        Best mean rank over :data:`FAITHFULNESS_RANKING` among the methods that pass
        the sanity check.
    within_budget : str or None
        The most faithful method whose seconds per text fit ``budget_ms`` (None if no
        budget was given or nothing fits).
    budget_ms : float or None
    order : tuple of str
        Candidates, most faithful first.
    mean_ranks : dict of str to float
    lines : tuple of str
        The recommendation in words.
    """

    most_faithful: str | None
    within_budget: str | None
    budget_ms: float | None
    order: tuple[str, ...]
    mean_ranks: dict[str, float]
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "most_faithful": self.most_faithful,
            "within_budget": self.within_budget,
            "budget_ms": self.budget_ms,
            "order": list(self.order),
            "mean_ranks": {k: _finite(v) for k, v in self.mean_ranks.items()},
            "ranked_by": list(FAITHFULNESS_RANKING),
            "text": self.text,
        }


@dataclasses.dataclass
class Leaderboard:
    """Every applicable metric for every method: rows are methods, columns metrics.

    Attributes
    ----------
    methods : list of str
        Rows, methods first, baselines (``random``) last.
    columns : list of Metric
        The metrics with a value for at least one method, in a fixed order.
    rows : dict of str to dict of str to MetricResult
    baselines : list of str
        Reference rows (not recommended, not in bold).
    faithfulness : dict of str to FaithfulnessResult
        With the averaged curves, for plots.
    agreement : AgreementResult or None
        Between the methods (baselines excluded).
    stability, sanity : dict
        Per method, where applicable.
    recommendation : Recommendation
    failed : dict of str to str
        Methods that raised, with the message.
    settings : dict
        Model, data size, masking, level, threads, parameters...
    """

    methods: list[str]
    columns: list[Metric]
    rows: dict[str, dict[str, MetricResult]]
    baselines: list[str]
    faithfulness: dict[str, FaithfulnessResult]
    agreement: AgreementResult | None
    stability: dict[str, StabilityResult]
    sanity: dict[str, SanityResult]
    recommendation: Recommendation
    failed: dict[str, str]
    settings: dict[str, Any]

    def value(self, method: str, metric: str) -> float:
        """The value of ``metric`` for ``method`` (NaN when not measured)."""
        result = self.rows.get(method, {}).get(metric)
        return math.nan if result is None else result.value

    def shown(self, method: str, metric: str) -> float:
        """The value as the table shows it (rounded): what ranks and bold marks compare."""
        return displayed(get_metric(metric), self.value(method, metric))

    def best(self, metric: str, *, include_baselines: bool = False) -> list[str]:
        """Methods with the best shown value of ``metric`` (ties all listed)."""
        info = get_metric(metric)
        if info.higher_is_better is None:
            return []
        pool = [m for m in self.methods if include_baselines or m not in self.baselines]
        finite = {m: self.shown(m, metric) for m in pool if math.isfinite(self.value(m, metric))}
        if not finite:
            return []
        target = max(finite.values()) if info.higher_is_better else min(finite.values())
        return [m for m, v in finite.items() if v == target]

    def ranking(self, metric: str, *, include_baselines: bool = True) -> list[str]:
        """Methods from best to worst on ``metric`` (unmeasured last, ties in row order)."""
        info = get_metric(metric)
        pool = [m for m in self.methods if include_baselines or m not in self.baselines]
        sign = -1.0 if info.higher_is_better else 1.0

        def key(method: str) -> tuple[bool, float]:
            value = self.shown(method, metric)
            return (not math.isfinite(value), sign * value if math.isfinite(value) else 0.0)

        return sorted(pool, key=key)

    # ------------------------------------------------------------------ output
    def to_dict(self, per_text: bool = False) -> dict[str, Any]:
        """JSON-ready: settings, columns with their metadata, rows, curves, agreement, checks."""
        return {
            "settings": _jsonable(self.settings),
            "columns": [m.to_dict() for m in self.columns],
            "methods": list(self.methods),
            "baselines": list(self.baselines),
            "rows": {
                method: {name: r.to_dict(per_text) for name, r in row.items()}
                for method, row in self.rows.items()
            },
            "best": {m.name: self.best(m.name) for m in self.columns},
            "faithfulness": {k: v.to_dict(per_text) for k, v in self.faithfulness.items()},
            "agreement": None if self.agreement is None else self.agreement.to_dict(per_text),
            "stability": {k: v.to_dict(per_text) for k, v in self.stability.items()},
            "sanity": {k: v.to_dict(per_text) for k, v in self.sanity.items()},
            "recommendation": self.recommendation.to_dict(),
            "failed": dict(self.failed),
        }

    def table(self) -> tuple[list[str], list[list[str]], list[list[bool]]]:
        """Header, formatted cells and which cells are best (for any renderer)."""
        header = ["method"] + [f"{m.short_name} {m.arrow}".strip() for m in self.columns]
        best = {m.name: set(self.best(m.name)) for m in self.columns}
        cells, bold = [], []
        for method in self.methods:
            label = method + (" (baseline)" if method in self.baselines else "")
            row, marks = [label], [False]
            for metric in self.columns:
                text = format_value(metric, self.value(method, metric.name))
                if (
                    metric.name == "randomization_similarity"
                    and self.sanity.get(method)
                    and self.sanity[method].flagged
                ):
                    text += " ⚠"
                row.append(text)
                marks.append(method in best[metric.name])
            cells.append(row)
            bold.append(marks)
        return header, cells, bold

    def to_markdown(self) -> str:
        """The leaderboard, agreement matrices and recommendation as Markdown (best in bold)."""
        header, cells, bold = self.table()
        lines = [_md_row(header), _md_row(["---"] + ["---:"] * (len(header) - 1))]
        for row, marks in zip(cells, bold, strict=True):
            lines.append(
                _md_row(
                    [f"**{c}**" if b and c != "–" else c for c, b in zip(row, marks, strict=True)]
                )
            )
        out = [self._caption(), "", *lines, ""]
        if self.agreement is not None and len(self.agreement.methods) > 1:
            for name in ("spearman", "kendall", "top_k_overlap"):
                out += [self._agreement_title(name), "", *_md_matrix(self.agreement, name), ""]
        flagged = [s.message for s in self.sanity.values() if s.flagged]
        if flagged:
            out += ["Sanity check:", "", *[f"- ⚠ {m}" for m in flagged], ""]
        for name, message in self.failed.items():
            out.append(f"- {name} failed: {message}")
        out += ["**Recommendation.** " + " ".join(self.recommendation.lines), ""]
        return "\n".join(out)

    def to_text(self, color: bool = False) -> str:
        """A terminal table; the best value of each column in bold (ANSI) or marked ``*``."""
        header, cells, bold = self.table()
        shown = [
            [
                (f"*{c}" if b and not color and c != "–" else c)
                for c, b in zip(row, marks, strict=True)
            ]
            for row, marks in zip(cells, bold, strict=True)
        ]
        widths = [max(len(r[i]) for r in [header, *shown]) for i in range(len(header))]

        def line(row: list[str], marks: list[bool] | None = None) -> str:
            parts = []
            for i, cell in enumerate(row):
                text = cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                if color and marks is not None and marks[i] and cell != "–":
                    text = f"\x1b[1m{text}\x1b[0m"
                parts.append(text)
            return "  ".join(parts)

        out = [self._caption(), "", line(header), line(["-" * w for w in widths])]
        out += [line(row, marks) for row, marks in zip(shown, bold, strict=True)]
        if not color:
            out.append("(* best of its column)")
        if self.agreement is not None and len(self.agreement.methods) > 1:
            out += [
                "",
                self._agreement_title("spearman"),
                *_text_matrix(self.agreement, "spearman"),
            ]
        for s in self.sanity.values():
            if s.flagged:
                out.append(f"warning: {s.message}")
        for name, message in self.failed.items():
            out.append(f"failed: {name}: {message}")
        out += ["", *self.recommendation.lines]
        return "\n".join(out)

    def to_html(self, *, title: str = "textlens: which explanation to trust") -> str:
        """A self-contained HTML report (see :mod:`textlens.report.evaluation`)."""
        from ..report.evaluation import render_evaluation_html

        return render_evaluation_html(self, title=title)

    def write_html(self, path: str | Path, **kwargs: Any) -> Path:
        """Write :meth:`to_html` to ``path``; returns the absolute path."""
        from ..report.evaluation import write_evaluation_html

        return write_evaluation_html(path, self, **kwargs)

    def _caption(self) -> str:
        s = self.settings
        return (
            f"Leaderboard: {s.get('model_id')} on {s.get('n_texts')} texts; "
            f"{s.get('level')} level, "
            f"masking '{s.get('masking')}', explained output: target {s.get('output')}; "
            f"torch threads {s.get('threads')}."
        )

    def _agreement_title(self, name: str) -> str:
        metric = get_metric(name)
        extra = f" (k = {self.agreement.k})" if name == "top_k_overlap" and self.agreement else ""
        return f"Agreement, {metric.short_name}{extra}, mean over texts:"


def displayed(metric: Metric, value: float) -> float:
    """``value`` rounded as :func:`format_value` shows it (NaN stays NaN)."""
    if not math.isfinite(value):
        return value
    return float(format_value(metric, value))


def format_value(metric: Metric, value: float) -> str:
    """A table cell: '–' when not measured, else a precision that suits the metric."""
    if not math.isfinite(value):
        return "–"
    if metric.name == "seconds_per_text":
        return f"{value:.3g}" if value >= 0.001 else f"{value:.1e}"
    if metric.name == "evaluations_per_text":
        return f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return f"{value:.3f}"


# ---------------------------------------------------------------------- entry points
def leaderboard(
    model: ModelAdapter,
    data: Sequence[str | Example | Mapping[str, Any]] | EvaluationData,
    methods: Sequence[str] | str | None = None,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    target: int | str | None = None,
    budget_ms: float | None = None,
    masking: str = "mask",
    level: str = "word",
    output: str = "probability",
    fractions: Sequence[float] = FRACTIONS,
    ranking: str = "signed",
    curve_steps: int | None = 20,
    top_k: int = 5,
    planted_k: int = 3,
    include_random: bool = True,
    stability_seeds: int = 3,
    stability_texts: int = 16,
    sanity_texts: int = 8,
    sanity_steps: int | None = 3,
    sanity_threshold: float = DEFAULT_THRESHOLD,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    progress: Progress | None = None,
) -> Leaderboard:
    """Run methods on ``data`` and compute every applicable metric.

    Parameters
    ----------
    model : ModelAdapter
    data : list of str, Example or dict, or EvaluationData
        The texts, optionally with ``rationale`` and ``planted`` annotations (see
        :class:`Example` and :func:`load_evaluation_data`).
    methods : list of str, optional
        Registered method names (one name alone is a list of one); default every
        registered method.
    params : dict of str to dict, optional
        Parameters per method, e.g. ``{"lime": {"budget": 256}}``.
    target : int, str or None
        Class to explain; None explains each text's predicted class.
    budget_ms : float, optional
        Time budget per text for the second recommendation.
    masking, level, output, fractions, ranking, curve_steps
        See :func:`~textlens.evaluation.faithfulness`.
    top_k : int
        ``k`` of the agreement's top-k overlap.
    planted_k : int
        ``k`` of the hit rate at k.
    include_random : bool
        Add the random-scores baseline row.
    stability_seeds, stability_texts : int
        Seeds (>= 2, or 0 to skip) and texts (the first ones) of the stability check.
    sanity_texts : int
        Texts (the first ones) of the sanity check; 0 skips it.
    sanity_steps : int or None
        Stages of the cascade (None: every layer).
    sanity_threshold : float
        Flag level of the sanity check.
    max_batch_tokens : int
        Token budget of the evaluation's model batches.
    progress : callable, optional
        Called with a short line before each step (e.g. ``print``).

    Returns
    -------
    Leaderboard
    """
    check_model(model, "leaderboard()")
    _check_options(masking, level, output, ranking, budget_ms)
    examples = as_examples(data)
    texts = [e.text for e in examples]
    if isinstance(methods, str):  # one method, not its letters
        methods = [methods]
    chosen = list(dict.fromkeys(methods if methods is not None else list(REGISTRY)))
    if not chosen:
        raise InvalidParameterError("No method was chosen; name at least one registered method.")
    for name in chosen:
        explainer_class(name)  # UnknownMethodError lists the registered ones
    params = {k: dict(v) for k, v in (params or {}).items()}
    unknown = sorted(set(params) - set(chosen))
    if unknown:
        raise InvalidParameterError(
            f"Parameters were given for {', '.join(unknown)}, which is not among the chosen "
            f"methods ({', '.join(chosen)})."
        )
    for name in chosen:  # bad parameters fail here, not after the slower methods ran
        known = REGISTRY[name]._all_constraints()
        extra = sorted(set(params.get(name, {})) - set(known))
        if extra:
            raise InvalidParameterError(
                f"{REGISTRY[name].__name__} has no parameter {', '.join(map(repr, extra))}. "
                f"Its parameters are: {', '.join(sorted(known))}."
            )
        REGISTRY[name].check_parameters(**params.get(name, {}))
    say = progress or (lambda line: None)
    runs: dict[str, MethodRun] = {}
    failed: dict[str, str] = {}
    for name in chosen:
        say(f"explaining {len(texts)} texts with {name}")
        try:
            runs[name] = run_method(model, name, texts, params=params.get(name), target=target)
        except TextlensError as exc:
            failed[name] = str(exc)
    if not runs:
        raise ExplanationError(
            "Every method failed, so there is nothing to evaluate: "
            + "; ".join(f"{name}: {message}" for name, message in failed.items())
        )
    stability_results: dict[str, StabilityResult] = {}
    sanity_results: dict[str, SanityResult] = {}
    if stability_seeds >= 2 and stability_texts > 0:
        for name, run in runs.items():
            if not has_seed(name):
                continue
            say(
                f"stability of {name} over {stability_seeds} seeds on "
                f"{min(stability_texts, len(texts))} texts"
            )
            stability_results[name] = _stability(
                model, name, run, texts[:stability_texts], stability_seeds
            )
    sanity_rows = _sanity_rows(runs, sanity_texts, level)
    if sanity_rows:
        for name, run in runs.items():
            say(f"sanity check of {name} on {len(sanity_rows)} texts")
            try:
                sanity_results[name] = sanity_check(
                    model,
                    name,
                    [texts[i] for i in sanity_rows],
                    params=run.params,
                    explanations=[run.explanations[i] for i in sanity_rows],
                    steps=sanity_steps,
                    threshold=sanity_threshold,
                    level=level,
                )
            except TextlensError as exc:
                failed[f"{name} (sanity check)"] = str(exc)
    board = evaluate_explanations(
        model,
        {name: run.explanations for name, run in runs.items()},
        data=examples,
        runs=runs,
        stability=stability_results,
        sanity=sanity_results,
        include_random=include_random,
        budget_ms=budget_ms,
        masking=masking,
        level=level,
        output=output,
        fractions=fractions,
        ranking=ranking,
        curve_steps=curve_steps,
        top_k=top_k,
        planted_k=planted_k,
        max_batch_tokens=max_batch_tokens,
        progress=progress,
    )
    board.failed.update(failed)
    board.settings["params"] = {name: _jsonable(run.params) for name, run in runs.items()}
    board.settings["stability"] = {
        "seeds": stability_seeds,
        "texts": min(stability_texts, len(texts)),
    }
    board.settings["sanity"] = {
        "texts": len(sanity_rows),
        "steps": sanity_steps,
        "threshold": sanity_threshold,
    }
    board.settings["target"] = target
    return board


def _sanity_rows(runs: Mapping[str, MethodRun], n: int, level: str) -> list[int]:
    """The first ``n`` texts long enough for the sanity check (``MIN_UNITS`` units), or
    the first ``n`` texts when too few are."""
    if n <= 0 or not runs:
        return []
    explanations = next(iter(runs.values())).explanations
    long_enough = [i for i, e in enumerate(explanations) if len(units(e, level)) >= MIN_UNITS]
    return long_enough[:n] if long_enough else list(range(min(n, len(explanations))))


def evaluate_explanations(
    model: ModelAdapter,
    explanations: Mapping[str, Sequence[Explanation]],
    *,
    data: Sequence[str | Example | Mapping[str, Any]] | EvaluationData | None = None,
    runs: Mapping[str, MethodRun] | None = None,
    stability: Mapping[str, StabilityResult] | None = None,
    sanity: Mapping[str, SanityResult] | None = None,
    include_random: bool = True,
    baselines: Sequence[str] = (),
    budget_ms: float | None = None,
    masking: str = "mask",
    level: str = "word",
    output: str = "probability",
    fractions: Sequence[float] = FRACTIONS,
    ranking: str = "signed",
    curve_steps: int | None = 20,
    top_k: int = 5,
    planted_k: int = 3,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    progress: Progress | None = None,
) -> Leaderboard:
    """A leaderboard of explanations already made (by any method, or by hand).

    Parameters
    ----------
    model : ModelAdapter
        The model the explanations are of.
    explanations : dict of str to list of Explanation
        Each method's explanations of the same texts, in the same order.
    data : list, optional
        Aligned with the explanations: examples carrying ``rationale`` / ``planted``.
    runs : dict of str to MethodRun, optional
        Cost measurements (from :func:`~textlens.evaluation.run_method`).
    stability, sanity : dict, optional
        Results of :func:`~textlens.evaluation.stability` /
        :func:`~textlens.evaluation.sanity_check` to show in the rows.
    include_random : bool
        Add the random-scores baseline (made from the first method's explanations).
    baselines : sequence of str
        Names in ``explanations`` that are references, not candidates (e.g. an oracle).
    budget_ms, masking, level, output, fractions, ranking, curve_steps, top_k, planted_k
        See :func:`leaderboard`.
    max_batch_tokens, progress
        See :func:`leaderboard`.

    Returns
    -------
    Leaderboard
    """
    check_model(model, "evaluate_explanations()")
    _check_options(masking, level, output, ranking, budget_ms)
    groups = {name: list(items) for name, items in explanations.items()}
    if not groups:
        raise InvalidInputError(
            "No explanations to evaluate: give {method name: [Explanation, ...]}."
        )
    n_texts = check_aligned(groups)
    if n_texts == 0:
        raise InvalidInputError("The explanations are empty: nothing to evaluate.")
    examples = as_examples(data) if data is not None else None
    if examples is not None:
        if len(examples) != n_texts:
            raise InvalidInputError(
                f"The data has {len(examples)} examples but the explanations cover {n_texts} "
                f"texts; "
                "give the examples the explanations were made of, in the same order."
            )
        first = next(iter(groups.values()))
        for i, (example, e) in enumerate(zip(examples, first, strict=True)):
            if example.text != e.text:
                raise InvalidInputError(
                    f"Example {i} is not the text of explanation {i}: keep them aligned."
                )
    reference = list(baselines)
    if include_random and RANDOM not in groups:
        groups[RANDOM] = random_explanations(next(iter(groups.values())), seed=0, method=RANDOM)
        reference.append(RANDOM)
    candidates = [m for m in groups if m not in reference]
    say = progress or (lambda line: None)
    if not model.has_probabilities:  # no output function: the scores are the raw logits
        output = "logit"
    engine = Engine(model, masking=masking, output=output, max_batch_tokens=max_batch_tokens)
    faith: dict[str, FaithfulnessResult] = {}
    rows: dict[str, dict[str, MetricResult]] = {}
    for name, items in groups.items():
        say(f"faithfulness of {name}")
        faith[name] = faithfulness(
            model,
            items,
            level=level,
            masking=masking,
            output=output,
            fractions=fractions,
            ranking=ranking,
            curve_steps=curve_steps,
            engine=engine,
        )
        rows[name] = dict(faith[name].metrics())
    planted = [e.planted for e in examples] if examples else None
    if planted is not None and any(p is not None for p in planted):
        for name, items in groups.items():
            rows[name].update(hit_rates(items, planted, k=planted_k, level=level, ranking=ranking))
    rationales = [e.rationale for e in examples] if examples else None
    if rationales is not None and any(r is not None for r in rationales):
        for name, items in groups.items():
            rows[name].update(plausibility(items, rationales, level=level, ranking=ranking))
    for name, result in (stability or {}).items():
        if name in rows:
            rows[name].update(result.metrics())
    for name, check in (sanity or {}).items():
        if name in rows:
            rows[name]["randomization_similarity"] = check.final
    for name, run in (runs or {}).items():
        if name in rows:
            rows[name].update(run.cost())
    agreement_result = None
    if len(candidates) > 1:
        say("agreement between methods")
        agreement_result = agreement(
            {m: groups[m] for m in candidates}, level=level, k=top_k, ranking=ranking
        )
    columns = [
        METRICS[name]
        if name
        not in ("comprehensiveness_aopc", "sufficiency_aopc", "deletion_area", "insertion_area")
        else get_metric(name, output=output)
        for name in _COLUMN_ORDER
        if any(name in row and math.isfinite(row[name].value) for row in rows.values())
    ]
    methods = candidates + reference
    labels = [e.label for e in examples] if examples else []
    settings = {
        "model_id": model.model_id,
        "labels": list(model.labels),
        "n_texts": n_texts,
        "masking": masking,
        "level": level,
        "output": output,
        "ranking": ranking,
        "fractions": list(fractions),
        "curve_steps": curve_steps,
        "top_k": top_k,
        "planted_k": planted_k,
        "threads": torch.get_num_threads(),
        "evaluation_model_evaluations": engine.model_evaluations,
        "accuracy": _accuracy(labels, next(iter(groups.values())), model.labels),
        # Gold labels the accuracy could use, and those that are none of the model's.
        "labelled_texts": sum(label in model.labels for label in labels),
        "unknown_labels": sorted({str(x) for x in labels if x is not None} - set(model.labels)),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    board = Leaderboard(
        methods=methods,
        columns=columns,
        rows={m: rows[m] for m in methods},
        baselines=reference,
        faithfulness={m: faith[m] for m in methods},
        agreement=agreement_result,
        stability=dict(stability or {}),
        sanity={k: v for k, v in (sanity or {}).items() if k in rows},
        recommendation=Recommendation(None, None, budget_ms, (), {}, ()),
        failed={},
        settings=settings,
    )
    board.recommendation = recommend(board, budget_ms)
    return board


# ---------------------------------------------------------------------- recommendation
def recommend(board: Leaderboard, budget_ms: float | None = None) -> Recommendation:
    """Rank the candidates by mean rank over :data:`FAITHFULNESS_RANKING` and pick.

    Ranks compare the values as the table shows them (3 decimals), so a difference a
    reader cannot see does not decide; equal mean ranks go to the faster method.
    """
    _check_budget(budget_ms)
    flagged = [m for m, s in board.sanity.items() if s.flagged]
    candidates = [m for m in board.methods if m not in board.baselines and m not in flagged]
    ranks: dict[str, list[float]] = {m: [] for m in candidates}
    for metric in FAITHFULNESS_RANKING:
        values = np.array([board.shown(m, metric) for m in candidates], dtype=np.float64)
        if not np.isfinite(values).any():
            continue
        sign = -1.0 if get_metric(metric).higher_is_better else 1.0
        keyed = np.where(np.isfinite(values), sign * values, np.inf)
        for m, r in zip(candidates, _average_ranks(keyed), strict=True):
            ranks[m].append(r)
    mean_ranks = {m: float(np.mean(r)) if r else math.nan for m, r in ranks.items()}
    order = sorted(
        candidates,
        key=lambda m: (
            mean_ranks[m] if math.isfinite(mean_ranks[m]) else math.inf,
            _or(board.value(m, "seconds_per_text"), math.inf),
        ),
    )
    most = order[0] if order else None
    lines = []
    if most is None:
        lines.append(
            "No method can be recommended: none was evaluated or all failed the sanity check."
        )
    else:
        tied = [m for m in order if mean_ranks[m] == mean_ranks[most]]
        rank = (
            f"mean rank {mean_ranks[most]:.1f} of {len(order)} over comprehensiveness, "
            "sufficiency, deletion and insertion"
        )
        if len(tied) > 1:
            timed = math.isfinite(board.value(most, "seconds_per_text"))
            why = "the fastest of them" if timed else "listed first"
            lines.append(
                f"Most faithful on this model and data: {', '.join(tied)} tie ({rank}); "
                f"{most} is {why} ({_summary(board, most)})."
            )
        else:
            lines.append(
                f"Most faithful on this model and data: {most} ({rank}; {_summary(board, most)})."
            )
        if RANDOM in board.methods:
            worse = [
                get_metric(m).short_name
                for m in FAITHFULNESS_RANKING
                if get_metric(m).better(board.shown(RANDOM, m), board.shown(most, m))
            ]
            if worse:
                lines.append(
                    f"Warning: the random baseline beats it on {', '.join(worse)}; "
                    "its explanations are barely better than chance here."
                )
    within = None
    if budget_ms is not None:
        fits = [
            m
            for m in order
            if math.isfinite(board.value(m, "seconds_per_text"))
            and board.value(m, "seconds_per_text") * 1000.0 <= budget_ms
        ]
        within = fits[0] if fits else None
        if within is not None:
            seconds = board.value(within, "seconds_per_text")
            lines.append(
                f"Best within {budget_ms:g} ms per text: {within} ({seconds * 1000:.0f} ms per "
                f"text, {_summary(board, within)})."
            )
        else:
            timed_methods = [
                m for m in candidates if math.isfinite(board.value(m, "seconds_per_text"))
            ]
            if timed_methods:
                fastest = min(timed_methods, key=lambda m: board.value(m, "seconds_per_text"))
                lines.append(
                    f"No method fits {budget_ms:g} ms per text; the fastest is {fastest} "
                    f"({board.value(fastest, 'seconds_per_text') * 1000:.0f} ms)."
                )
            else:
                lines.append(
                    f"No cost was measured, so no method can be matched to {budget_ms:g} ms "
                    "per text."
                )
    if flagged:
        lines.append(f"Not considered (failed the sanity check): {', '.join(flagged)}.")
    return Recommendation(
        most,
        within,
        None if budget_ms is None else float(budget_ms),
        tuple(order),
        mean_ranks,
        tuple(lines),
    )


def _summary(board: Leaderboard, method: str) -> str:
    parts = []
    for name in ("comprehensiveness_aopc", "sufficiency_aopc"):
        value = board.value(method, name)
        if math.isfinite(value):
            parts.append(f"{get_metric(name).short_name} {value:.3f}")
    return ", ".join(parts)


def _average_ranks(keys: np.ndarray) -> list[float]:
    """Ranks from 1 (smallest key first); ties share the mean rank."""
    from .agreement import rankdata

    return [float(r) for r in rankdata(keys)]


def _or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


# ---------------------------------------------------------------------- internals
def _check_options(
    masking: str, level: str, output: str, ranking: str, budget_ms: float | None
) -> None:
    """Fail on a bad evaluation option before any method runs."""
    owner = "leaderboard"
    check_option("masking", masking, MASKINGS, owner)
    check_option("level", level, LEVELS, owner)
    check_option("output", output, OUTPUTS, owner)
    check_option("ranking", ranking, RANKINGS, owner)
    _check_budget(budget_ms)


def _check_budget(budget_ms: float | None) -> None:
    if budget_ms is not None and (
        isinstance(budget_ms, bool)
        or not isinstance(budget_ms, (int, float))
        or not 0 < budget_ms < math.inf
    ):
        raise InvalidParameterError(
            f"The 'budget_ms' parameter must be a finite number > 0 (milliseconds per text; "
            f"leave it out for no budget). Got {budget_ms!r}."
        )


def _stability(
    model: ModelAdapter, name: str, run: MethodRun, texts: list[str], n_seeds: int
) -> StabilityResult:
    base = run.params.get("seed", _default(name, "seed"))
    start = int(base) if isinstance(base, int) else 0
    seeds = [start + i for i in range(n_seeds)]
    reuse = {start: run.explanations[: len(texts)]} if isinstance(base, int) else {}
    return stability(model, name, texts, seeds=seeds, params=run.params, runs=reuse)


def _default(name: str, parameter: str) -> Any:
    cls = REGISTRY[name]
    found = inspect.signature(cls.__init__).parameters.get(parameter)
    return None if found is None or found.default is inspect.Parameter.empty else found.default


def _accuracy(
    labels: Sequence[str | None], explanations: Sequence[Explanation], names: Sequence[str]
) -> float | None:
    pairs = [
        (label, e.predicted_label)
        for label, e in zip(labels, explanations, strict=False)
        if label is not None and label in names
    ]
    if not pairs:
        return None
    return sum(a == b for a, b in pairs) / len(pairs)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _md_matrix(result: AgreementResult, name: str) -> list[str]:
    methods = list(result.methods)
    lines = [_md_row(["", *methods]), _md_row(["---"] + ["---:"] * len(methods))]
    for i, m in enumerate(methods):
        lines.append(_md_row([m] + [_cell(v) for v in result.matrices[name][i]]))
    return lines


def _text_matrix(result: AgreementResult, name: str) -> list[str]:
    methods = list(result.methods)
    width = max(len(m) for m in methods)
    col = max(6, *(len(m) for m in methods))
    lines = [" " * width + "  " + "  ".join(m.rjust(col) for m in methods)]
    for i, m in enumerate(methods):
        lines.append(
            m.ljust(width) + "  " + "  ".join(_cell(v).rjust(col) for v in result.matrices[name][i])
        )
    return lines


def _cell(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "–"


def _finite(value: float) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    from .metrics import _jsonable as convert

    if isinstance(value, Path):
        return str(value)
    converted = convert(value)
    if isinstance(converted, dict):
        return {k: _jsonable(v) for k, v in converted.items()}
    if isinstance(converted, list):
        return [_jsonable(v) for v in converted]
    if isinstance(converted, (str, int, float, bool)) or converted is None:
        return converted
    return repr(converted)
