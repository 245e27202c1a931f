"""A run's time limit: the timer that records it as timed out at the job's ``max_runtime``.

The run goes on on its own thread; at the deadline a timer thread records the row as
timed out, tells the signal and the monitors, and releases the job's lock, so that
every instance sees it at once and the next run of a job that may not overlap can
start. An ``async def`` job is cancelled then as well (by the pipeline's
``asyncio.wait_for``); a sync one cannot be stopped, and its row gets its real end
when it comes, still timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from django.utils import timezone

from django_oncejob import monitoring, signals
from django_oncejob.cache.locks import release_lock
from django_oncejob.db import close_own_connections
from django_oncejob.models import Run
from django_oncejob.monitoring.watch import Watch
from django_oncejob.running import handover
from django_oncejob.running.history import Ending
from django_oncejob.running.overlap import lock_token
from django_oncejob.running.steps import Fenced, Outcome, error_text, log_fields, send
from django_oncejob.running.writer import Writer

logger = logging.getLogger("django_oncejob")


class Deadline:
    """Calls ``expired`` once, ``seconds`` from now, unless the run ends first."""

    def __init__(self, seconds: float, expired: Callable[[], None]) -> None:
        self.seconds = seconds
        self._expired = expired
        self._lock = threading.Lock()
        self._ended = False
        #: Whether the run outlived its deadline.
        self.passed = False
        self._told = False
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.name = "oncejob-deadline"
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._ended = True
        self._timer.cancel()

    def tell_once(self) -> bool:
        """``True`` the first time only: whoever gets it tells the monitors of the time-out."""
        with self._lock:
            told, self._told = self._told, True
        return not told

    def _fire(self) -> None:
        with self._lock:
            if self._ended:
                return
            self.passed = True
        try:
            self._expired()
        except Exception:
            logger.exception("Could not record a run past its max_runtime as timed out.")
        finally:
            close_own_connections()


class TimeLimit:
    """The :class:`~django_oncejob.running.pipeline.Pipeline`'s part for a ``max_runtime``."""

    writer: Writer

    def _time_limit(self, step: Fenced, watch: Watch) -> Deadline | None:
        """The timer of a job with ``max_runtime``, which times the run out at its deadline."""
        if step.job.max_runtime is None:
            return None
        row = step.row
        if row.deadline is not None:
            seconds = (row.deadline - timezone.now()).total_seconds()
        else:
            seconds = float(step.job.max_runtime)
        limit = Deadline(seconds, lambda: self._expired(step, watch, limit))
        return limit

    def _expired(self, step: Fenced, watch: Watch, limit: Deadline) -> None:
        """At the deadline, on the timer's thread: the run is still going."""
        occurrence, job = step.occurrence, step.job
        error = f"Timed out: still running past its max_runtime of {job.max_runtime} s."
        marked = step.fenced and self.writer.call(
            lambda: handover.time_out(step.row, error, by_owner=True)
        )
        if job.lock_lifetime is not None:
            # The next run may start: this one counts as over.
            release_lock(job.id, lock_token(occurrence))
        if not marked or not limit.tell_once():
            return
        logger.error(
            "Job %r at %s is past its max_runtime of %s s: recorded as timed out%s.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            job.max_runtime,
            "" if inspect.iscoroutinefunction(job.resolve()) else "; it goes on running",
            extra=log_fields(occurrence, "timed-out"),
        )
        monitoring.end(watch, "timed_out", error)
        send(signals.occurrence_timed_out, occurrence)

    def _timed_out(self, step: Fenced, limit: Deadline, ending: Ending, watch: Watch) -> Outcome:
        """Record the real end of a run that its deadline had already timed out."""
        self.writer.finish(step.row, ending)
        if limit.tell_once():
            # It ended before the timer could record the time-out: tell of it now.
            monitoring.end(watch, "timed_out", ending.error)
            send(signals.occurrence_timed_out, step.occurrence)
        logger.warning(
            "Job %r at %s ended past its max_runtime: %s",
            step.occurrence.job,
            step.occurrence.scheduled_for.isoformat(),
            ending.error,
            extra=log_fields(step.occurrence, "timed-out"),
        )
        return Outcome.TIMED_OUT

    def _failure(self, exc: BaseException, prefix: str) -> Ending:
        """A timed-out run's ending, for a job that failed after its deadline."""
        return Ending(
            Run.Status.TIMED_OUT,
            f"Timed out: ran past its max_runtime, {prefix}: "
            f"{type(exc).__name__}: {error_text(exc)}",
            traceback.format_exc(),
        )


class Cancelled(Exception):
    """An ``async def`` job cancelled at its deadline."""


async def wait_for(awaitable: Awaitable[Any], seconds: float | None) -> Any:
    if seconds is None:
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=max(0.0, seconds))
    if not done:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task  # its finally blocks and cleanups run before the ending is recorded
        raise Cancelled()
    return task.result()
