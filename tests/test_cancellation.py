"""Stopping model work on request: ``textlens.model.cancellable`` and ``Cancelled``.

Every model pass goes through ``ModelAdapter.forward``, which asks the thread's stop
predicate first; the counts here are of real passes through the torch model (a forward
pre-hook), not of time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import PassCounter

from textlens.errors import Cancelled, TextlensError
from textlens.explainers import REGISTRY, make_explainer
from textlens.model import ModelAdapter, cancellable, check_cancelled

#: 40 words: 42 tokens, within the tiny model's 64.
LONG_TEXT = " ".join(["the movie was wonderful and the city was awful"] * 4)
#: One model pass per evaluation or step (the tiny model's texts are < 64 tokens).
SLOW_WORK: dict[str, dict[str, Any]] = {
    "lime": {"budget": 256, "max_batch_tokens": 64},
    "shap": {"budget": 256, "max_batch_tokens": 64},
    "occlusion": {"max_batch_tokens": 64},
    "information": {"max_steps": 256, "window": 256, "use_cache": False},
    "integrated_gradients": {"n_steps": 64, "max_batch_tokens": 64},
}


@pytest.fixture
def counter(tiny_adapter: ModelAdapter) -> Iterator[PassCounter]:
    counting = PassCounter(tiny_adapter.model)
    yield counting
    counting.remove()


def _explainer(name: str, model: ModelAdapter) -> Any:
    return make_explainer(name, model, **SLOW_WORK.get(name, {}))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_method_stops_before_its_first_pass(
    name: str, tiny_adapter: ModelAdapter, counter: PassCounter
) -> None:
    explainer = _explainer(name, tiny_adapter)
    with pytest.raises(Cancelled), cancellable(lambda: True):
        explainer.explain([LONG_TEXT])
    assert counter.passes == 0


@pytest.mark.parametrize("name", sorted(SLOW_WORK))
def test_long_work_stops_at_the_next_pass(
    name: str, tiny_adapter: ModelAdapter, counter: PassCounter
) -> None:
    _explainer(name, tiny_adapter).explain([LONG_TEXT])
    full = counter.passes
    assert full > 20, f"{name} should take many passes here, not {full}"
    counter.passes = 0
    explainer = _explainer(name, tiny_adapter)  # a fresh one: no cached outputs
    stop_after_five = cancellable(lambda: counter.passes >= 5)
    with pytest.raises(Cancelled, match="stopped before its next model pass"), stop_after_five:
        explainer.explain([LONG_TEXT])
    assert counter.passes == 5


def test_cancelled_is_a_textlens_error_but_not_a_model_failure() -> None:
    assert issubclass(Cancelled, TextlensError)
    assert not issubclass(Cancelled, (RuntimeError, ValueError))  # not wrapped by forward


def test_nothing_changes_outside_the_block(tiny_adapter: ModelAdapter) -> None:
    explainer = make_explainer("grad_x_input", tiny_adapter)
    before = explainer.explain([LONG_TEXT])[0]
    with pytest.raises(Cancelled), cancellable(lambda: True):
        explainer.explain([LONG_TEXT])
    check_cancelled()  # no block: never raises
    after = explainer.explain([LONG_TEXT])[0]
    assert after.scores == before.scores


def test_blocks_nest() -> None:
    stop_outer, stop_inner = threading.Event(), threading.Event()
    with cancellable(stop_outer.is_set):
        with cancellable(stop_inner.is_set):
            check_cancelled()
            stop_outer.set()
            with pytest.raises(Cancelled):
                check_cancelled()
            stop_outer.clear()
        stop_inner.set()
        check_cancelled()  # the inner block is over


def test_the_stop_is_per_thread(tiny_adapter: ModelAdapter, counter: PassCounter) -> None:
    """While one thread is told to stop, another thread on the same adapter runs on."""
    stop, stopped, done = threading.Event(), threading.Event(), threading.Event()

    def told_to_stop() -> None:
        with cancellable(stop.is_set):
            stop.set()
            try:
                _explainer("lime", tiny_adapter).explain([LONG_TEXT])
            except Cancelled:
                stopped.set()
            done.wait(30)  # still inside its block while the other thread works

    thread = threading.Thread(target=told_to_stop)
    thread.start()
    try:
        assert stopped.wait(30)
        [explanation] = _explainer("lime", tiny_adapter).explain([LONG_TEXT])
    finally:
        done.set()
        thread.join()
    assert len(explanation.scores) == len(explanation.tokens) and counter.passes > 20


@pytest.mark.parametrize("name", ["lime", "shap"])
def test_the_fits_after_the_last_pass_stop_too(
    name: str, tiny_adapter: ModelAdapter, monkeypatch
) -> None:
    """LIME's and SHAP's fits can take as long as a pass: each text's asks first."""
    explainer = _explainer(name, tiny_adapter)
    done = {"passes": False}
    evaluate = explainer.engine.evaluate

    def evaluate_then_leave(*args: Any, **kwargs: Any) -> Any:
        values = evaluate(*args, **kwargs)
        done["passes"] = True  # every model pass is behind us: only the fits are left
        return values

    fits = []
    estimate = explainer._estimate
    monkeypatch.setattr(explainer.engine, "evaluate", evaluate_then_leave)
    monkeypatch.setattr(explainer, "_estimate", lambda *a: fits.append(1) or estimate(*a))
    with pytest.raises(Cancelled), cancellable(lambda: done["passes"]):
        explainer.explain([LONG_TEXT, "an awful plot"])
    assert fits == []
