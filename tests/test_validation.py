"""Parameter constraints and the one message form every bad parameter gets."""

from __future__ import annotations

import math

import pytest

from textlens._validation import InstanceOf, Interval, IsNone, Options, check_params
from textlens.errors import InvalidParameterError, TextlensError


@pytest.mark.parametrize(
    "constraint, description",
    [
        (Interval(int, 1, None), "an int >= 1"),
        (Interval(float, 0, 1, low_open=True, high_open=True), "a number > 0 and < 1"),
        (Interval(float, None, 2.5), "a number <= 2.5"),
        (Interval(float), "a number"),
        (Options(("pad", "mask")), "one of 'pad', 'mask'"),
        (IsNone(), "None"),
        (InstanceOf(int, "an int"), "an int"),
    ],
)
def test_descriptions(constraint, description: str) -> None:
    assert constraint.describe() == description


def test_interval_accepts() -> None:
    steps = Interval(int, 1, None)
    assert steps.accepts(1) and steps.accepts(10**6)
    assert not any(steps.accepts(v) for v in (0, -3, 1.0, True, "2", None))
    fraction = Interval(float, 0, 1, low_open=True, high_open=True)
    assert fraction.accepts(0.5) and fraction.accepts(1e-9)
    assert Interval(float, 0, 2).accepts(1)  # an int is a number
    assert not any(fraction.accepts(v) for v in (0, 0.0, 1.0, -0.1, math.nan, math.inf, False))
    closed = Interval(float, 0, 1)
    assert closed.accepts(0.0) and closed.accepts(1.0)


def test_options_compare_types_too() -> None:
    options = Options((1, "a"))
    assert options.accepts(1) and options.accepts("a")
    assert not options.accepts(True)  # True == 1 but is no option
    assert not options.accepts(1.0)
    assert not options.accepts("A")


def test_instance_of_rejects_bools() -> None:
    assert InstanceOf(int, "an int").accepts(-2)
    assert not InstanceOf(int, "an int").accepts(False)


def test_check_params_message_forms() -> None:
    constraints = {
        "n_steps": [Interval(int, 1, None)],
        "target_delta": [IsNone(), Interval(float, 0, 1, low_open=True, high_open=True)],
        "layer": [InstanceOf(int, "an int"), Options(("mean",))],
    }
    good = {"n_steps": 5, "target_delta": None, "layer": "mean"}
    check_params("IntegratedGradients", good, constraints)
    cases = [
        (
            {"n_steps": 0},
            "The 'n_steps' parameter of IntegratedGradients must be an int >= 1. Got 0.",
        ),
        (
            {"target_delta": 0.0},
            "The 'target_delta' parameter of IntegratedGradients must be None or a number > 0 "
            "and < 1. Got 0.0.",
        ),
        (
            {"layer": "top"},
            "The 'layer' parameter of IntegratedGradients must be an int or one of 'mean'. "
            "Got 'top'.",
        ),
    ]
    for change, message in cases:
        with pytest.raises(InvalidParameterError) as info:
            check_params("IntegratedGradients", {**good, **change}, constraints)
        assert str(info.value) == message
        assert isinstance(info.value, ValueError) and isinstance(info.value, TextlensError)


def test_check_params_three_constraints() -> None:
    constraints = {"x": [IsNone(), Options(("a",)), Interval(int, 0, None)]}
    with pytest.raises(InvalidParameterError) as info:
        check_params("Thing", {"x": -1}, constraints)
    assert str(info.value) == (
        "The 'x' parameter of Thing must be None, one of 'a' or an int >= 0. Got -1."
    )


def test_integers_past_64_bits_are_refused_with_the_way_out() -> None:
    """JSON integers have no size limit; torch and numpy tensors do (a server got 500s)."""
    constraints = {"lam": [Interval(float, 0, None, low_open=True)]}
    for fine in (2**63 - 1, 1e20, float(2**70)):
        check_params("Information", {"lam": fine}, constraints)
    for huge in (2**63, 10**20):
        with pytest.raises(InvalidParameterError, match=r"within ±2\*\*63: write it as a float"):
            check_params("Information", {"lam": huge}, constraints)
    with pytest.raises(InvalidParameterError, match=r"an int >= 0 \(integers must lie within"):
        check_params("Information", {"seed": 2**64}, {"seed": [Interval(int, 0, None)]})
    with pytest.raises(InvalidParameterError, match=r"> 0 and <= 1\. Got 100000000000000000000"):
        check_params(
            "Information", {"rate": 10**20}, {"rate": [Interval(float, 0, 1, low_open=True)]}
        )
    assert not Interval(int, 0, None).accepts(2**63)


def test_numpy_and_torch_scalars_are_told_to_pass_plain_values() -> None:
    """np.int64(8) 'must be an int' read as a contradiction; parameters stay plain JSON."""
    import numpy as np
    import torch

    steps = {"n_steps": [Interval(int, 1, None)]}
    for scalar in (np.int64(8), torch.tensor(8)):
        with pytest.raises(InvalidParameterError, match=r"scalar: pass int\(x\)\)\.$"):
            check_params("IntegratedGradients", {"n_steps": scalar}, steps)
    with pytest.raises(InvalidParameterError, match=r"Got np.float32\(0.5\)\.$"):  # not an int
        check_params("IntegratedGradients", {"n_steps": np.float32(0.5)}, steps)
    rate = {"rate": [Interval(float, 0, 1)]}
    with pytest.raises(InvalidParameterError, match=r"numpy scalar: pass float\(x\)"):
        check_params("Lime", {"rate": np.float32(0.5)}, rate)
