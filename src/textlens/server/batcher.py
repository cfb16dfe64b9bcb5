"""Micro-batching: concurrent requests that want the same computation share one model call.

Each request becomes one :class:`Job` per method: its texts and a hashable *key* (what
is computed: e.g. method, parameters and target). A single worker coroutine takes the
queued jobs, waits at most ``max_wait_s`` for more while the batch holds fewer than
``max_batch`` texts, groups the jobs by key, runs **one** call over the union of each
group's texts in the model thread, and hands every job its own slice of the results.
Requests that arrive while the model is busy queue up and form the next batch, so
batches grow with load and an idle server adds no more than ``max_wait_s`` of latency.

Isolation: if a union call raises, each of its jobs is re-run alone, so one bad job
cannot fail the others. Jobs whose caller stopped waiting (time budget, disconnect) are
dropped before their turn; once every job of a running call has been dropped, the
call's *stop* event is set, and the model thread stops at its next model pass (the
call raises, and is neither reported nor re-run). With ``enabled=False`` every job runs
alone (the batching-off baseline).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from .metrics import Counter, Histogram

__all__ = ["BatchMetrics", "Job", "MicroBatcher", "OverloadedError"]

#: ``run(key, texts, stop) -> results``; ``stop`` is set once nobody waits for the results.
RunFn = Callable[[Hashable, list[str], threading.Event], Sequence[Any]]


class OverloadedError(Exception):
    """More texts are queued than the server accepts; the caller should retry later."""


@dataclass
class Job:
    """Texts waiting for one computation (``key``) and the future of their results."""

    key: Hashable
    texts: list[str]
    future: asyncio.Future[list[Any]]
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class BatchMetrics:
    """Counters the batcher updates (all owned by the app's metrics registry)."""

    calls: Counter  # labels: kind
    batch_texts: Histogram  # labels: kind
    batch_jobs: Histogram  # labels: kind
    call_seconds: Histogram  # labels: kind
    queue_seconds: Histogram  # labels: kind
    stopped: Counter  # labels: kind


class MicroBatcher:
    """Group queued jobs by key and run each group as one call (see the module docstring).

    Parameters
    ----------
    run : callable
        ``run(key, texts, stop) -> results`` (one result per text, in order); runs in
        ``executor``. ``stop`` (a :class:`threading.Event`) is set when every job of the
        call has been dropped: ``run`` should then stop soon, by raising.
    executor : concurrent.futures.Executor
        Where model calls run (one thread: calls never overlap).
    max_batch : int
        Most texts in one call (a single job larger than this still runs, alone).
    max_wait_s : float
        Longest wait for more jobs once one is queued.
    max_pending : int
        Most texts queued at once; :meth:`submit` raises :class:`OverloadedError` beyond.
    enabled : bool
        False: one job per call, no waiting.
    kind_of : callable
        Metric label of a key (e.g. the method name).
    metrics : BatchMetrics, optional
    """

    def __init__(
        self,
        run: RunFn,
        executor: Executor,
        *,
        max_batch: int,
        max_wait_s: float,
        max_pending: int,
        enabled: bool = True,
        kind_of: Callable[[Hashable], str] = str,
        metrics: BatchMetrics | None = None,
    ) -> None:
        self.run = run
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_pending = max_pending
        self.enabled = enabled
        self.kind_of = kind_of
        self.metrics = metrics
        self._queue: collections.deque[Job] = collections.deque()
        self._pending_texts = 0
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending_texts(self) -> int:
        """Texts queued and not yet taken into a model call."""
        return self._pending_texts

    # ------------------------------------------------------------------ public
    async def submit(self, key: Hashable, texts: list[str]) -> list[Any]:
        """Queue ``texts`` for ``key``; return their results (one per text).

        Cancelling the awaiting task (time budget, client gone) withdraws the job.
        """
        self._ensure_worker()
        if self._pending_texts + len(texts) > self.max_pending and self._pending_texts > 0:
            raise OverloadedError(
                f"The server has {self._pending_texts} texts waiting (limit "
                f"{self.max_pending}); retry shortly."
            )
        assert self._loop is not None and self._wakeup is not None
        job = Job(key, list(texts), self._loop.create_future())
        self._queue.append(job)
        self._pending_texts += len(job.texts)
        self._wakeup.set()
        try:
            return await job.future
        finally:
            if not job.future.done():
                job.future.cancel()

    async def close(self) -> None:
        """Stop the worker (a running model call stops at its next pass); queued jobs are
        cancelled."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._worker
        for job in self._queue:
            job.future.cancel()
        self._queue.clear()
        self._pending_texts = 0
        self._worker = None

    # ------------------------------------------------------------------ worker
    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            # First use, or a new event loop (e.g. a second test client): start afresh.
            self._loop = loop
            self._queue.clear()
            self._pending_texts = 0
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._work(), name="textlens-microbatcher")

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = await self._collect()
            for key, jobs in self._group(batch):
                await self._run_group(key, jobs)

    async def _collect(self) -> list[Job]:
        """Take the next batch: up to ``max_batch`` texts, waiting at most ``max_wait_s``."""
        assert self._wakeup is not None
        batch = [self._take()]
        if not self.enabled:
            return batch
        size = len(batch[0].texts)
        deadline = time.perf_counter() + self.max_wait_s
        while size < self.max_batch:
            if self._queue:
                if size + len(self._queue[0].texts) > self.max_batch:
                    break
                job = self._take()
                batch.append(job)
                size += len(job.texts)
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return batch

    def _take(self) -> Job:
        job = self._queue.popleft()
        self._pending_texts -= len(job.texts)
        return job

    @staticmethod
    def _group(batch: list[Job]) -> list[tuple[Hashable, list[Job]]]:
        groups: dict[Hashable, list[Job]] = {}
        for job in batch:
            groups.setdefault(job.key, []).append(job)
        return list(groups.items())

    async def _run_group(self, key: Hashable, jobs: list[Job]) -> None:
        jobs = [job for job in jobs if not job.future.done()]  # callers that gave up
        if not jobs:
            return
        loop = asyncio.get_running_loop()
        texts = [text for job in jobs for text in job.texts]
        kind = self.kind_of(key)
        started = time.perf_counter()
        if self.metrics is not None:
            for job in jobs:
                self.metrics.queue_seconds.observe(started - job.queued_at, kind)
        stop = _stop_when_all_dropped(jobs)
        try:
            results = await loop.run_in_executor(self.executor, self.run, key, texts, stop)
        except asyncio.CancelledError:  # closing: the model thread need not finish the call
            stop.set()
            raise
        except Exception as exc:
            self._record(kind, len(texts), len(jobs), started)
            if stop.is_set():  # every caller gave up: the call stopped early, nobody to tell
                if self.metrics is not None:
                    self.metrics.stopped.inc(kind)
                return
            if len(jobs) == 1:
                _settle(jobs[0].future, error=exc)
            else:
                for job in jobs:  # isolate the failure: each job on its own
                    await self._run_group(key, [job])
            return
        self._record(kind, len(texts), len(jobs), started)
        position = 0
        for job in jobs:
            _settle(job.future, result=list(results[position : position + len(job.texts)]))
            position += len(job.texts)

    def _record(self, kind: str, texts: int, jobs: int, started: float) -> None:
        if self.metrics is None:
            return
        self.metrics.calls.inc(kind)
        self.metrics.batch_texts.observe(texts, kind)
        self.metrics.batch_jobs.observe(jobs, kind)
        self.metrics.call_seconds.observe(time.perf_counter() - started, kind)


def _stop_when_all_dropped(jobs: list[Job]) -> threading.Event:
    """An event set (from the event loop) once every job's future is done, i.e. dropped
    while the call runs (results are only set after it)."""
    stop = threading.Event()

    def check(_: asyncio.Future[list[Any]]) -> None:
        if all(job.future.done() for job in jobs):
            stop.set()

    for job in jobs:
        job.future.add_done_callback(check)
    return stop


def _settle(
    future: asyncio.Future[list[Any]],
    *,
    result: list[Any] | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result or [])
