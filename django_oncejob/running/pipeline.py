"""The one path of an occurrence: claim it, fence it in the history, run it, record its ending.

``runjobs`` (through :mod:`~django_oncejob.scheduling.executor`), a manual run, a re-run of
an abandoned occurrence and a task worker's run of a handed-off one all go
through :class:`Pipeline`; only the writer differs, a thread of its own in
``runjobs`` and the calling thread elsewhere.
"""

from __future__ import annotations

import enum
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from django.dispatch import Signal
from django.utils import timezone

from django_oncejob import monitoring, signals
from django_oncejob.cache.claim import ClaimResult, claim
from django_oncejob.cache.locks import LockResult, break_lock, lock_holder, release_lock, take_lock
from django_oncejob.conf import conf
from django_oncejob.db import close_old_connections
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Run
from django_oncejob.monitoring import metrics, tracing
from django_oncejob.monitoring.watch import Watch
from django_oncejob.occurrence import Occurrence, _current
from django_oncejob.running import history
from django_oncejob.running.history import Ending, result_text
from django_oncejob.running.writer import InlineWriter, Writer

logger = logging.getLogger("django_oncejob")

#: Sends an occurrence to its job's task queue, with the trace context to carry, and returns
#: the task id, or ``None`` if another instance took its row (``None`` for a row the history
#: could not record).
Sender = Callable[[JobSpec, Occurrence, Run | None, Writer, Mapping[str, str]], str | None]
#: The senders by a job's ``enqueue``, added by :mod:`django_oncejob.handoff.enqueue` when the
#: app is ready: the pipeline does not import the task queues whose workers run it.
SENDERS: dict[str, Sender] = {}


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: Another instance holds the claim key.
    LOST = "lost"
    #: The key was free, but the history already holds the occurrence.
    FENCED = "fenced"
    #: Nothing could fence the occurrence safely, so it did not run here.
    SKIPPED = "skipped"
    #: The job is paused: this instance recorded the occurrence as such, once.
    PAUSED = "paused"
    #: Handed to the job's task queue; a worker runs it.
    ENQUEUED = "enqueued"


@dataclass(frozen=True)
class Claimed:
    """An occurrence this instance did not lose the claim of: the cache answered ``result``."""

    job: JobSpec
    #: In UTC.
    scheduled_for: datetime
    result: ClaimResult
    #: Paused in the admin: the occurrence is recorded as skipped, once, not run.
    paused: bool = False


@dataclass(frozen=True)
class Fenced:
    """An occurrence this instance runs, and its history row."""

    job: JobSpec
    occurrence: Occurrence
    row: Run
    #: Whether the row is in the history; if not, the cache claim alone holds the
    #: occurrence, and the row goes in with its ending.
    fenced: bool = True
    #: A task worker's run of an occurrence that ``runjobs`` handed off.
    handed_off: bool = False
    #: The trace context it was handed off with.
    trace: Mapping[str, str] = field(default_factory=dict)

    def watch(self) -> Watch:
        return Watch(
            self.job,
            self.occurrence,
            self.row.attempts or 1,
            claimed_at=self.row.claimed_at,
            handed_off=self.handed_off,
            trace=self.trace,
        )


class Pipeline:
    """Takes occurrences from their claim to their recorded ending, for one ``owner``."""

    def __init__(self, owner: str, writer: Writer | None = None) -> None:
        self.owner = owner
        self.writer = writer if writer is not None else InlineWriter()

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
                    _skip(occurrence, Outcome.PAUSED, "paused", message, logging.INFO, "paused")
                )
            elif item.result is ClaimResult.UNAVAILABLE and conf.ON_CACHE_ERROR == "skip":
                message = (
                    "Skipped job %r at %s: the claim cache failed and ON_CACHE_ERROR is 'skip'."
                )
                steps.append(_skip(occurrence, Outcome.SKIPPED, "cache-error", message))
            else:
                row = history.running(item.job.id, item.scheduled_for, self.owner, claimed_at)
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
            return _skip(occurrence, Outcome.FENCED, "fenced", message, logging.INFO, "fenced")
        if item.result is not ClaimResult.WON:
            error = "Skipped: neither the cache nor the history database could fence it."
            row.started_at = None
            self.writer.finish(row, Ending(Run.Status.SKIPPED, error))
            message = (
                "Skipped job %r at %s: neither the cache nor the history database could fence it."
            )
            return _skip(occurrence, Outcome.SKIPPED, "history-error", message)
        # The cache claim alone still keeps other instances out.
        logger.error(
            "Could not record job %r at %s in the history; running it on the cache claim "
            "alone, and recording it once the database answers.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            extra=_fields(occurrence, "history-error"),
        )
        return Fenced(item.job, occurrence, row, fenced=False)

    def run_manual(self, job: JobSpec, requested_at: datetime, requested_by: str) -> Outcome:
        """Run a job once on request: a request this instance won, or ``runjobs --run``."""
        scheduled_for = requested_at.astimezone(UTC)
        occurrence = Occurrence(job.id, scheduled_for, self.owner)
        row = history.running(
            job.id, scheduled_for, self.owner, timezone.now(), requested_by=requested_by
        )
        inserted = self.writer.fence([row])
        if inserted is None:
            message = "Job %r at %s was not run: the history database did not answer."
            return _skip(occurrence, Outcome.SKIPPED, "history-error", message)
        if not inserted[0]:
            return Outcome.FENCED
        logger.info(
            "Running job %r now, as %s asked.",
            job.id,
            requested_by,
            extra=_fields(occurrence, "manual"),
        )
        return self.run(Fenced(job, occurrence, row))

    def rerun(self, job: JobSpec, row: Run) -> Outcome:
        """Run again an occurrence whose row this instance took over from a dead one."""
        occurrence = Occurrence(job.id, row.scheduled_for, row.owner)
        self.writer.adopt(row)
        return self.run(Fenced(job, occurrence, row))

    def run(self, step: Fenced, call: Callable[[], Any] | None = None) -> Outcome:
        """Run an occurrence this instance holds: hand it off, or call the job here.

        ``call`` runs instead of the job's ``func``: a task worker's Celery task.
        """
        if step.job.enqueue is not None and call is None:
            outcome = self._hand_off(step, step.job.enqueue)
        elif step.job.lock_timeout is None:
            outcome = self._call(step, call)
        else:
            outcome = self._call_locked(step, step.job.lock_timeout, call)
        metrics.settled(step.job.id, outcome.value)
        return outcome

    def _hand_off(self, step: Fenced, enqueue: str) -> Outcome:
        occurrence, row = step.occurrence, step.row
        _send(signals.occurrence_claimed, occurrence)
        watch = monitoring.start(step.watch())
        try:
            send = SENDERS[enqueue]
            fenced_row = row if step.fenced else None
            task_id = send(step.job, occurrence, fenced_row, self.writer, tracing.trace_context())
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
                extra=_fields(occurrence, "taken-over"),
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
            extra=_fields(occurrence, "enqueued"),
        )
        return Outcome.ENQUEUED

    def _call_locked(
        self, step: Fenced, timeout: int, call: Callable[[], Any] | None = None
    ) -> Outcome:
        occurrence = step.occurrence
        token = lock_token(occurrence)
        locked = take_lock(step.job.id, token, timeout)
        if locked is LockResult.HELD and self._lock_left_behind(step.job):
            locked = take_lock(step.job.id, token, timeout)
        reason = "Skipped: a previous run of this job still holds its lock."
        if locked is LockResult.TAKEN and self._running_elsewhere(step):
            # The lock's key was lost (a Redis restart, an eviction), not the run.
            release_lock(step.job.id, token)
            locked = LockResult.HELD
            reason = "Skipped: a previous run of this job is still running, by the history."
        if locked is not LockResult.TAKEN:
            if locked is LockResult.UNAVAILABLE:
                metrics.cache_error()
                reason = "Skipped: the job's lock could not be taken, the cache failed."
            logger.warning(
                "Job %r at %s: %s",
                step.job.id,
                occurrence.scheduled_for.isoformat(),
                reason,
                extra=_fields(occurrence, "skipped"),
            )
            self.writer.finish(step.row, Ending(Run.Status.SKIPPED, reason))
            _send(signals.occurrence_skipped, occurrence, reason="locked")
            return Outcome.SKIPPED
        try:
            return self._call(step, call)
        finally:
            release_lock(step.job.id, token)

    def _lock_left_behind(self, job: JobSpec) -> bool:
        """Break the job's lock if the run that holds it has ended, by the history.

        A run whose release failed (a Redis hiccup) would otherwise keep the job from
        running until its lock expired.
        """
        holder = lock_holder(job.id)
        if holder is None or "@" not in holder:
            return False
        _, _, when = holder.rpartition("@")
        try:
            scheduled_for = datetime.fromisoformat(when)
            statuses = self.writer.call(
                lambda: list(
                    Run.objects.filter(job=job.id, scheduled_for=scheduled_for).values_list(
                        "status", flat=True
                    )
                )
            )
        except Exception:
            logger.warning("Could not look up the run that holds the lock of job %r.", job.id)
            return False
        ended = bool(statuses) and statuses[0] not in (Run.Status.RUNNING, Run.Status.ENQUEUED)
        if ended and break_lock(job.id, holder):
            logger.warning(
                "Job %r: broke the lock left behind by its run at %s, which has ended.",
                job.id,
                when,
            )
            return True
        return False

    def _running_elsewhere(self, step: Fenced) -> bool:
        """Whether the history has another run of the job going, which the lock would stop."""
        others = Run.objects.filter(
            job=step.job.id, status__in=[Run.Status.RUNNING, Run.Status.ENQUEUED]
        ).exclude(scheduled_for=step.occurrence.scheduled_for)
        try:
            return bool(self.writer.call(others.exists))
        except Exception:
            logger.warning(
                "Could not check the history for another run of job %r; the lock alone decides.",
                step.job.id,
                exc_info=True,
            )
            return False

    def _call(self, step: Fenced, call: Callable[[], Any] | None = None) -> Outcome:
        occurrence, job = step.occurrence, step.job
        _send(signals.occurrence_claimed, occurrence)
        logger.info(
            "Job %r at %s started on %s.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            occurrence.owner,
            extra=_fields(occurrence, "started"),
        )
        _send(signals.occurrence_started, occurrence)
        watch = monitoring.start(step.watch())
        token = _current.set(occurrence)
        # The job's own queries get what a request's get: a connection checked before,
        # and closed after as CONN_MAX_AGE says.
        close_old_connections()
        started_at = timezone.now()
        try:
            value = call() if call is not None else job.resolve()(*job.args, **job.kwargs)
            if inspect.isawaitable(value):
                # In this thread's own event loop, whose sync_to_async() calls (the ORM's
                # async methods) come back to this thread and its connection.
                value = async_to_sync(_wait)(value)
        except Exception as exc:
            return self._fail(step, exc, "Job %r at %s failed.", started_at=started_at, watch=watch)
        except BaseException as exc:
            # KeyboardInterrupt, SystemExit, CancelledError: recorded, then left to go on.
            message = "Job %r at %s was interrupted."
            self._fail(step, exc, message, started_at=started_at, watch=watch)
            raise
        finally:
            _current.reset(token)
            close_old_connections()
        logger.info(
            "Job %r at %s succeeded.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            extra=_fields(occurrence, "succeeded"),
        )
        ending = Ending(Run.Status.SUCCEEDED, result=result_text(value), started_at=started_at)
        self.writer.finish(step.row, ending)
        monitoring.end(watch, "succeeded")
        _send(signals.occurrence_succeeded, occurrence, result=value)
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
    ) -> Outcome:
        """Log, record and signal a failure; called inside the ``except`` that caught ``exc``.

        ``message`` takes the job id, the scheduled time, then ``args``.
        """
        occurrence = step.occurrence
        logger.exception(
            message,
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            *args,
            extra=_fields(occurrence, "failed"),
        )
        error = f"{prefix}{type(exc).__name__}: {_text(exc)}"
        ending = Ending(Run.Status.FAILED, error, traceback.format_exc(), started_at=started_at)
        self.writer.finish(step.row, ending)
        if watch is not None:
            monitoring.end(watch, "failed", error)
        _send(signals.occurrence_failed, occurrence, exception=exc)
        return Outcome.FAILED


def claim_and_run(
    job: JobSpec, scheduled_for: datetime, owner: str, *, paused: bool = False
) -> Outcome:
    """:meth:`Pipeline.claim_and_run` in this thread, on its own database connection."""
    return Pipeline(owner).claim_and_run(job, scheduled_for, paused=paused)


def lock_token(occurrence: Occurrence) -> str:
    """What a run of a job with ``lock_timeout`` writes in the job's lock: whose run it is."""
    return f"{occurrence.owner}@{occurrence.scheduled_for.isoformat()}"


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose str() raised>"


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _skip(
    occurrence: Occurrence,
    outcome: Outcome,
    reason: str,
    message: str,
    level: int = logging.ERROR,
    event: str = "skipped",
) -> Outcome:
    """Log why an occurrence does not run here and tell ``occurrence_skipped`` receivers.

    ``message`` takes the job id and the scheduled time.
    """
    logger.log(
        level,
        message,
        occurrence.job,
        occurrence.scheduled_for.isoformat(),
        extra=_fields(occurrence, event),
    )
    _send(signals.occurrence_skipped, occurrence, reason=reason)
    return outcome


def _fields(occurrence: Occurrence, event: str) -> dict[str, Any]:
    """Structured fields for log records, for handlers that format or ship them."""
    return {
        "oncejob_event": event,
        "oncejob_job": occurrence.job,
        "oncejob_scheduled_for": occurrence.scheduled_for.isoformat(),
        "oncejob_owner": occurrence.owner,
    }


def _send(signal: Signal, occurrence: Occurrence, **kwargs: Any) -> None:
    for receiver, response in signal.send_robust(
        sender=occurrence.job, occurrence=occurrence, **kwargs
    ):
        if isinstance(response, Exception):
            logger.error(
                "Signal receiver %r failed for job %r.",
                receiver,
                occurrence.job,
                exc_info=response,
            )
