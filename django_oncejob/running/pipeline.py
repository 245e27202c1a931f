"""The one path of an occurrence: claim it, fence it in the history, run it, record its ending.

``runjobs`` (through :mod:`~django_oncejob.scheduling.executor`), a manual run, a re-run of
an abandoned occurrence and a task worker's run of a handed-off one all go
through :class:`Pipeline`; only the writer differs, a thread of its own in
``runjobs`` and the calling thread elsewhere.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from django.utils import timezone

from django_oncejob import monitoring, signals
from django_oncejob.cache.claim import ClaimResult, claim
from django_oncejob.conf import conf
from django_oncejob.db import close_old_connections
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Run
from django_oncejob.monitoring import metrics, tracing
from django_oncejob.monitoring.watch import Watch
from django_oncejob.occurrence import Occurrence, _current
from django_oncejob.running import handover, history
from django_oncejob.running.deadline import Cancelled, TimeLimit, wait_for
from django_oncejob.running.history import Ending, result_text
from django_oncejob.running.overlap import Overlap
from django_oncejob.running.retries import Retries
from django_oncejob.running.steps import (
    UNSETTLED,
    Claimed,
    Fenced,
    Outcome,
    error_text,
    log_fields,
    send,
    skip,
)
from django_oncejob.running.writer import InlineWriter, Writer

logger = logging.getLogger("django_oncejob")

#: Sends an occurrence to its job's task queue, with the trace context to carry, and returns
#: the task id, or ``None`` if another instance took its row (``None`` for a row the history
#: could not record).
Sender = Callable[[JobSpec, Occurrence, Run | None, Writer, Mapping[str, str]], str | None]
#: The senders by a job's ``enqueue``, added by :mod:`django_oncejob.handoff.enqueue` when the
#: app is ready: the pipeline does not import the task queues whose workers run it.
SENDERS: dict[str, Sender] = {}


class Pipeline(Overlap, TimeLimit, Retries):
    """Takes occurrences from their claim to their recorded ending, for one ``owner``."""

    def __init__(self, owner: str, writer: Writer | None = None) -> None:
        self.owner = owner
        self.writer = writer if writer is not None else InlineWriter()
        #: Told of each row this instance recorded as retrying, to try it again when due.
        self.retrying: Callable[[Run], None] | None = None
        #: Told the job id of each occurrence that failed or timed out here.
        self.failed: Callable[[str], None] | None = None

    def claim_and_run(
        self, job: JobSpec, scheduled_for: datetime, *, paused: bool = False
    ) -> Outcome:
        """Run ``job``'s occurrence at ``scheduled_for`` here, unless another instance has it.

        A ``paused`` job's occurrence is still claimed, so that exactly one instance
        records it as skipped. ``runjobs`` takes the same steps for all the jobs due
        at once: :func:`~django_oncejob.cache.claim.claim_many`, :meth:`fence`, then
        :meth:`run` for each.
        """
        scheduled_for = scheduled_for.astimezone(UTC)
        result = claim(job.id, scheduled_for, self.owner)
        metrics.claimed(job.id, result.value)
        if result is ClaimResult.LOST:
            return Outcome.LOST
        [step] = self.fence([Claimed(job, scheduled_for, result, paused)])
        return step if isinstance(step, Outcome) else self.run(step)

    def fence(self, claimed: Sequence[Claimed]) -> list[Fenced | Outcome]:
        """Insert the history rows of claimed occurrences, all in one go where possible.

        Each occurrence comes back as the one to run, or as the outcome that ends it
        here: paused, skipped, or fenced by a row another instance wrote first.
        """
        claimed_at = timezone.now()
        steps: list[Fenced | Outcome] = []
        to_fence: list[tuple[int, Claimed, Run]] = []
        for item in claimed:
            occurrence = Occurrence(item.job.id, item.scheduled_for, self.owner)
            if item.paused:
                row = history.not_run(item.job.id, item.scheduled_for, self.owner, claimed_at)
                self.writer.finish(row, Ending(Run.Status.PAUSED, "Skipped: the job was paused."))
                message = "Job %r at %s skipped: the job is paused."
                steps.append(
                    skip(occurrence, Outcome.PAUSED, "paused", message, logging.INFO, "paused")
                )
            elif item.result is ClaimResult.UNAVAILABLE and conf.ON_CACHE_ERROR == "skip":
                message = (
                    "Skipped job %r at %s: the claim cache failed and ON_CACHE_ERROR is 'skip'."
                )
                steps.append(skip(occurrence, Outcome.SKIPPED, "cache-error", message))
            else:
                row = history.running(
                    item.job.id,
                    item.scheduled_for,
                    self.owner,
                    claimed_at,
                    requested_by=item.requested_by,
                    max_runtime=item.job.max_runtime,
                )
                to_fence.append((len(steps), item, row))
                steps.append(Outcome.SKIPPED)
        if to_fence:
            inserted = self.writer.fence([row for _, _, row in to_fence])
            answers: list[bool | None] = [None] * len(to_fence) if inserted is None else [*inserted]
            for (i, item, row), done in zip(to_fence, answers, strict=True):
                steps[i] = self._fenced(item, row, done)
        for item, step in zip(claimed, steps, strict=True):
            if step is Outcome.FENCED:
                metrics.claimed(item.job.id, "fenced")
            elif isinstance(step, Outcome):
                metrics.settled(item.job.id, step.value)
        return steps

    def _fenced(self, item: Claimed, row: Run, inserted: bool | None) -> Fenced | Outcome:
        occurrence = Occurrence(item.job.id, item.scheduled_for, self.owner)
        if inserted:
            return Fenced(item.job, occurrence, row)
        if inserted is False:
            message = "Job %r at %s is already in the history; not running it again."
            return skip(occurrence, Outcome.FENCED, "fenced", message, logging.INFO, "fenced")
        if item.result is not ClaimResult.WON:
            error = "Skipped: neither the cache nor the history database could fence it."
            row.started_at = None
            self.writer.finish(row, Ending(Run.Status.SKIPPED, error))
            message = (
                "Skipped job %r at %s: neither the cache nor the history database could fence it."
            )
            return skip(occurrence, Outcome.SKIPPED, "history-error", message)
        # The cache claim alone still keeps other instances out.
        logger.error(
            "Could not record job %r at %s in the history; running it on the cache claim "
            "alone, and recording it once the database answers.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            extra=log_fields(occurrence, "history-error"),
        )
        return Fenced(item.job, occurrence, row, fenced=False)

    def run_manual(self, job: JobSpec, requested_at: datetime, requested_by: str) -> Outcome:
        """Run a job once on request: a request this instance won, or ``runjobs --run``."""
        scheduled_for = requested_at.astimezone(UTC)
        occurrence = Occurrence(job.id, scheduled_for, self.owner)
        row = history.running(
            job.id,
            scheduled_for,
            self.owner,
            timezone.now(),
            requested_by=requested_by,
            max_runtime=job.max_runtime,
        )
        inserted = self.writer.fence([row])
        if inserted is None:
            message = "Job %r at %s was not run: the history database did not answer."
            return skip(occurrence, Outcome.SKIPPED, "history-error", message)
        if not inserted[0]:
            return Outcome.FENCED
        logger.info(
            "Running job %r now, as %s asked.",
            job.id,
            requested_by,
            extra=log_fields(occurrence, "manual"),
        )
        return self.run(Fenced(job, occurrence, row))

    def rerun(self, job: JobSpec, row: Run) -> Outcome:
        """Run again an occurrence whose row this instance took over from a dead one, or
        the next attempt of one that failed: either way, a row it holds in the history."""
        occurrence = Occurrence(job.id, row.scheduled_for, row.owner, row.attempts)
        self.writer.adopt(row)
        return self.run(Fenced(job, occurrence, row))

    def run(self, step: Fenced, call: Callable[[], Any] | None = None) -> Outcome:
        """Run an occurrence this instance holds: hand it off, or call the job here.

        ``call`` runs instead of the job's ``func``: a task worker's Celery task. After a
        run of a job whose ``overlap`` is ``"buffer_one"``, the occurrence that waited for
        it runs next, on this thread.
        """
        outcome = self._run_once(step, call)
        if step.job.overlap == "buffer_one" and call is None and outcome is not Outcome.WAITING:
            while (waiting := self._take_waiting(step.job)) is not None:
                if self._run_once(waiting) is Outcome.WAITING:
                    break
        return outcome

    def _run_once(self, step: Fenced, call: Callable[[], Any] | None = None) -> Outcome:
        lifetime = step.job.lock_lifetime
        if step.job.enqueue is not None and call is None:
            outcome = self._hand_off(step, step.job.enqueue)
        elif lifetime is None:
            outcome = self._call(step, call)
        else:
            outcome = self._call_locked(step, lifetime, call)
        if outcome not in UNSETTLED:
            metrics.settled(step.job.id, outcome.value)
        if outcome in (Outcome.FAILED, Outcome.TIMED_OUT) and self.failed is not None:
            self.failed(step.job.id)
        return outcome

    def _take_waiting(self, job: JobSpec) -> Fenced | None:
        """The occurrence of ``job`` that waited for the run that just ended, now this one's."""
        try:
            row = self.writer.call(
                lambda: handover.take_waiting(job.id, self.owner, job.max_runtime)
            )
        except Exception:
            logger.warning(
                "Could not look for an occurrence of job %r waiting to run; another instance "
                "will start it.",
                job.id,
                exc_info=True,
            )
            return None
        if row is None:
            return None
        self.writer.adopt(row)
        return Fenced(job, Occurrence(job.id, row.scheduled_for, self.owner, row.attempts), row)

    def _hand_off(self, step: Fenced, enqueue: str) -> Outcome:
        occurrence, row = step.occurrence, step.row
        send(signals.occurrence_claimed, occurrence)
        watch = monitoring.start(step.watch())
        try:
            hand = SENDERS[enqueue]
            fenced_row = row if step.fenced else None
            task_id = hand(step.job, occurrence, fenced_row, self.writer, tracing.trace_context())
        except Exception as exc:
            message = "Job %r at %s could not be handed off (enqueue=%r)."
            return self._fail(
                step, exc, message, step.job.enqueue, prefix="Could not enqueue: ", watch=watch
            )
        monitoring.end(watch, "enqueued")
        if task_id is None:
            logger.warning(
                "Job %r at %s was taken over by another instance before it was handed off.",
                occurrence.job,
                occurrence.scheduled_for.isoformat(),
                extra=log_fields(occurrence, "taken-over"),
            )
            self.writer.forget(row)
            return Outcome.SKIPPED
        # The worker settles the row from here, or writes it if it never went in.
        self.writer.forget(row)
        logger.info(
            "Job %r at %s handed off to %s as task %s.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            step.job.enqueue,
            task_id,
            extra=log_fields(occurrence, "enqueued"),
        )
        return Outcome.ENQUEUED

    def _call(self, step: Fenced, call: Callable[[], Any] | None = None) -> Outcome:
        occurrence, job = step.occurrence, step.job
        send(signals.occurrence_claimed, occurrence)
        logger.info(
            "Job %r at %s started on %s.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            occurrence.owner,
            extra=log_fields(occurrence, "started"),
        )
        send(signals.occurrence_started, occurrence)
        watch = monitoring.start(step.watch())
        token = _current.set(occurrence)
        # The job's own queries get what a request's get: a connection checked before,
        # and closed after as CONN_MAX_AGE says.
        close_old_connections()
        started_at = timezone.now()
        limit = self._time_limit(step, watch)
        try:
            with limit or contextlib.nullcontext():
                value = call() if call is not None else job.resolve()(*job.args, **job.kwargs)
                if inspect.isawaitable(value):
                    # In this thread's own event loop, whose sync_to_async() calls (the ORM's
                    # async methods) come back to this thread and its connection.
                    seconds = None if limit is None else limit.seconds
                    value = async_to_sync(wait_for)(value, seconds)
        except Cancelled:
            assert limit is not None
            error = f"Timed out: cancelled at its max_runtime of {job.max_runtime} s."
            return self._timed_out(step, limit, Ending(Run.Status.TIMED_OUT, error), watch)
        except Exception as exc:
            if limit is not None and limit.passed:
                return self._timed_out(step, limit, self._failure(exc, "then failed"), watch)
            return self._fail(step, exc, "Job %r at %s failed.", started_at=started_at, watch=watch)
        except BaseException as exc:
            # KeyboardInterrupt, SystemExit, CancelledError: recorded, then left to go on.
            message = "Job %r at %s was interrupted."
            self._fail(step, exc, message, started_at=started_at, watch=watch, retry=False)
            raise
        finally:
            _current.reset(token)
            close_old_connections()
        if limit is not None and limit.passed:
            ending = Ending(
                Run.Status.TIMED_OUT,
                f"Timed out: ran past its max_runtime of {job.max_runtime} s, then succeeded "
                f"after {(timezone.now() - started_at).total_seconds():.1f} s.",
                result=result_text(value),
                started_at=started_at,
            )
            return self._timed_out(step, limit, ending, watch)
        logger.info(
            "Job %r at %s succeeded.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            extra=log_fields(occurrence, "succeeded"),
        )
        ending = Ending(Run.Status.SUCCEEDED, result=result_text(value), started_at=started_at)
        self.writer.finish(step.row, ending)
        monitoring.end(watch, "succeeded")
        send(signals.occurrence_succeeded, occurrence, result=value)
        return Outcome.SUCCEEDED

    def _fail(
        self,
        step: Fenced,
        exc: BaseException,
        message: str,
        *args: object,
        prefix: str = "",
        started_at: datetime | None = None,
        watch: Watch | None = None,
        retry: bool = True,
    ) -> Outcome:
        """Log, record and signal a failure; called inside the ``except`` that caught ``exc``.

        ``message`` takes the job id, the scheduled time, then ``args``. A job with
        ``retries`` left records the attempt and leaves the occurrence retrying.
        """
        occurrence = step.occurrence
        logger.exception(
            message,
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            *args,
            extra=log_fields(occurrence, "failed"),
        )
        error = f"{prefix}{type(exc).__name__}: {error_text(exc)}"
        ending = Ending(Run.Status.FAILED, error, traceback.format_exc(), started_at=started_at)
        retrying = retry and self._retry(step, ending)
        if not retrying:
            self.writer.finish(step.row, ending)
        if watch is not None:
            monitoring.end(watch, "failed", error)
        send(signals.occurrence_failed, occurrence, exception=exc, retrying=retrying)
        return Outcome.RETRYING if retrying else Outcome.FAILED


def claim_and_run(
    job: JobSpec, scheduled_for: datetime, owner: str, *, paused: bool = False
) -> Outcome:
    """:meth:`Pipeline.claim_and_run` in this thread, on its own database connection."""
    return Pipeline(owner).claim_and_run(job, scheduled_for, paused=paused)
