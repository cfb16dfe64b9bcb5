"""Which explanation to trust: faithfulness, agreement, stability, plausibility, sanity, cost.

Every metric is a plain function over explanations (from any method, or made by hand)
that returns results carrying their own metadata (name, direction, range), and
:func:`leaderboard` runs methods on data and puts every applicable metric in one table
with a recommendation.

>>> import textlens as tl
>>> from textlens.evaluation import leaderboard
>>> model = tl.load("demo")
>>> board = leaderboard(model, ["what a great day", "worst service ever"],
...                     methods=["saliency", "integrated_gradients"], budget_ms=50)
>>> print(board.to_text())
"""

from __future__ import annotations

from .agreement import AgreementResult, agreement, kendall_tau, spearman, top_k_overlap
from .baselines import marked_explanations, random_explanations
from .cost import MethodRun, count_evaluations, run_method
from .faithfulness import (
    FRACTIONS,
    FaithfulnessResult,
    comprehensiveness,
    deletion_area,
    faithfulness,
    insertion_area,
    log_odds_drop,
    sufficiency,
)
from .groundtruth import hit_rates
from .leaderboard import (
    EvaluationData,
    Example,
    Leaderboard,
    Recommendation,
    evaluate_explanations,
    leaderboard,
    load_evaluation_data,
    recommend,
)
from .metrics import METRICS, Metric, MetricResult, get_metric
from .plausibility import auprc, plausibility, rationale_mask
from .sanity import SanityResult, cascading_randomization, sanity_check
from .stability import StabilityResult, has_seed, stability

__all__ = [
    "FRACTIONS",
    "METRICS",
    "AgreementResult",
    "EvaluationData",
    "Example",
    "FaithfulnessResult",
    "Leaderboard",
    "MethodRun",
    "Metric",
    "MetricResult",
    "Recommendation",
    "SanityResult",
    "StabilityResult",
    "agreement",
    "auprc",
    "cascading_randomization",
    "comprehensiveness",
    "count_evaluations",
    "deletion_area",
    "evaluate_explanations",
    "faithfulness",
    "get_metric",
    "has_seed",
    "hit_rates",
    "insertion_area",
    "kendall_tau",
    "leaderboard",
    "load_evaluation_data",
    "log_odds_drop",
    "marked_explanations",
    "plausibility",
    "random_explanations",
    "rationale_mask",
    "recommend",
    "run_method",
    "sanity_check",
    "spearman",
    "stability",
    "sufficiency",
    "top_k_overlap",
]
