"""Runs one occurrence: claim it, fence it in the history, call the job, record the outcome."""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from django.db import DatabaseError, close_old_connections
from django.dispatch import Signal
from django.utils import timezone

from django_oncejob import handoff, history, signals
from django_oncejob.claim import ClaimResult, acquire_lock, claim, release_lock
from django_oncejob.conf import conf
from django_oncejob.models import Claim
from django_oncejob.occurrence import Occurrence, _current
from django_oncejob.registry import JobSpec

logger = logging.getLogger("django_oncejob")


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
    """An occurrence claimed and fenced in the history: this instance runs it."""

    job: JobSpec
    occurrence: Occurrence
    #: Its history row; ``None`` when the database failed and the cache claim alone holds it.
    row: Claim | None


def run_occurrence(
    job: JobSpec, scheduled_for: datetime, owner: str, *, paused: bool = False
) -> Outcome:
    """Run ``job``'s occurrence at ``scheduled_for`` here, unless another instance has it.

    A ``paused`` job's occurrence is still claimed, so that exactly one instance
    records it as skipped. ``runjobs`` goes through the same steps for all the jobs
    due at once: :func:`~django_oncejob.claim.claim_many`, :func:`fence`, then
    :func:`run_fenced` for each.
    """
    scheduled_for = scheduled_for.astimezone(UTC)
    result = claim(job.id, scheduled_for, owner)
    if result is ClaimResult.LOST:
        return Outcome.LOST
    [step] = fence([Claimed(job, scheduled_for, result, paused)], owner)
    return step if isinstance(step, Outcome) else run_fenced(step)


def fence(
    claimed: Sequence[Claimed], owner: str, *, keep_connection: bool = False
) -> list[Fenced | Outcome]:
    """Insert the history rows of claimed occurrences: one INSERT for all where possible.

    Each occurrence comes back as the one to run, or as the outcome that ends it
    here: paused, skipped, or fenced by a row another instance wrote first.
    ``keep_connection`` leaves this thread's database connection open after a
    successful insert, for the run that follows on the same thread
    (:func:`run_fenced` with ``connected=True``) or for the caller to close.
    """
    claimed_at = timezone.now()
    occurrences = [
        Occurrence(job=item.job.id, scheduled_for=item.scheduled_for, owner=owner)
        for item in claimed
    ]
    steps: list[Fenced | Outcome | None] = []
    to_fence: list[int] = []
    for item, occurrence in zip(claimed, occurrences, strict=True):
        if item.paused:
            steps.append(_record_paused(occurrence))
        elif item.result is ClaimResult.UNAVAILABLE and conf.ON_CACHE_ERROR == "skip":
            message = "Skipped job %r at %s: the claim cache failed and ON_CACHE_ERROR is 'skip'."
            steps.append(_skip(occurrence, Outcome.SKIPPED, "cache-error", message))
        else:
            to_fence.append(len(steps))
            steps.append(None)
    if not to_fence:
        return cast("list[Fenced | Outcome]", steps)
    close_old_connections()
    error: DatabaseError | None = None
    try:
        rows: list[Claim | None] = history.open_claims(
            [(occurrences[i].job, occurrences[i].scheduled_for) for i in to_fence],
            owner,
            claimed_at,
        )
    except DatabaseError as exc:
        rows, error = [None] * len(to_fence), exc
    finally:
        if not keep_connection or error is not None:
            close_old_connections()
    for i, row in zip(to_fence, rows, strict=True):
        steps[i] = _fenced(claimed[i], occurrences[i], row, error)
    return cast("list[Fenced | Outcome]", steps)


def _fenced(
    item: Claimed, occurrence: Occurrence, row: Claim | None, error: DatabaseError | None
) -> Fenced | Outcome:
    if error is None and row is None:
        message = "Job %r at %s is already in the history; not running it again."
        return _skip(occurrence, Outcome.FENCED, "fenced", message, logging.INFO, event="fenced")
    if error is not None and item.result is not ClaimResult.WON:
        message = "Skipped job %r at %s: neither the cache nor the history database could fence it."
        return _skip(occurrence, Outcome.SKIPPED, "history-error", message, exc_info=error)
    if error is not None:
        # The cache claim alone still keeps other instances out.
        logger.error(
            "Could not record job %r at %s in the history; running it on the cache claim alone.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            exc_info=error,
            extra=_fields(occurrence, "history-error"),
        )
    return Fenced(item.job, occurrence, row)


def _skip(
    occurrence: Occurrence,
    outcome: Outcome,
    reason: str,
    message: str,
    level: int = logging.ERROR,
    *,
    event: str = "skipped",
    exc_info: BaseException | None = None,
) -> Outcome:
    """Log why an occurrence does not run here and tell ``occurrence_skipped`` receivers.

    ``message`` takes the job id and the scheduled time.
    """
    logger.log(
        level,
        message,
        occurrence.job,
        occurrence.scheduled_for.isoformat(),
        exc_info=exc_info,
        extra=_fields(occurrence, event),
    )
    _send(signals.occurrence_skipped, occurrence, reason=reason)
    return outcome


def run_fenced(step: Fenced, *, connected: bool = False) -> Outcome:
    """Run an occurrence fenced for this instance: hand it off, or call the job here.

    ``connected``: this thread's connection was opened by the fence just now, so the
    run uses it as it is; with ``CONN_MAX_AGE = 0``, that is one connection less.
    """
    if not connected:
        close_old_connections()
    try:
        return _run(step.job, step.occurrence, step.row)
    finally:
        close_old_connections()


def _run(job: JobSpec, occurrence: Occurrence, row: Claim | None) -> Outcome:
    if job.enqueue is not None:
        return _hand_off(job, occurrence, row)
    if job.lock_timeout is None:
        return _call(job, occurrence, row)
    return _call_locked(job, occurrence, row, job.lock_timeout)


def run_manual(job: JobSpec, requested_at: datetime, requested_by: str, owner: str) -> Outcome:
    """Run a job once on request; this instance already won the request in the database."""
    scheduled_for = requested_at.astimezone(UTC)
    occurrence = Occurrence(job=job.id, scheduled_for=scheduled_for, owner=owner)
    close_old_connections()
    try:
        row = history.open_claim(
            job.id, scheduled_for, owner, timezone.now(), requested_by=requested_by
        )
        if row is None:
            return Outcome.FENCED
        logger.info(
            "Running job %r now, as %s asked.",
            job.id,
            requested_by,
            extra=_fields(occurrence, "manual"),
        )
        return _run(job, occurrence, row)
    finally:
        close_old_connections()


def _record_paused(occurrence: Occurrence) -> Outcome:
    close_old_connections()
    try:
        history.record_not_run(
            occurrence.job,
            occurrence.scheduled_for,
            occurrence.owner,
            Claim.Status.PAUSED,
            "Skipped: the job was paused.",
        )
    except DatabaseError:
        logger.exception(
            "Could not record the paused occurrence of job %r at %s.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            extra=_fields(occurrence, "paused"),
        )
    finally:
        close_old_connections()
    message = "Job %r at %s skipped: the job is paused."
    return _skip(occurrence, Outcome.PAUSED, "paused", message, logging.INFO, event="paused")


def rerun_occurrence(job: JobSpec, row: Claim) -> Outcome:
    """Run again an occurrence whose row this instance took over from a dead one."""
    occurrence = Occurrence(job=job.id, scheduled_for=row.scheduled_for, owner=row.owner)
    history.hold(row)
    return run_fenced(Fenced(job, occurrence, row))


def run_taken(
    job: JobSpec, occurrence: Occurrence, row: Claim | None, call: Callable[[], Any] | None = None
) -> Outcome:
    """Run an occurrence whose row this process holds: in a task worker, a handed-off one.

    ``call`` runs instead of the job's ``func``.
    """
    if job.lock_timeout is None:
        return _call(job, occurrence, row, call)
    return _call_locked(job, occurrence, row, job.lock_timeout, call)


def _hand_off(job: JobSpec, occurrence: Occurrence, row: Claim | None) -> Outcome:
    _send(signals.occurrence_claimed, occurrence)
    try:
        task_id = handoff.enqueue(job, occurrence, row)
    except Exception as exc:
        message = "Job %r at %s could not be handed off (enqueue=%r)."
        return _fail(occurrence, row, exc, message, job.enqueue, error_prefix="Could not enqueue: ")
    if task_id is None:
        logger.warning(
            "Job %r at %s was taken over by another instance before it was handed off.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            extra=_fields(occurrence, "taken-over"),
        )
        return Outcome.SKIPPED
    logger.info(
        "Job %r at %s handed off to %s as task %s.",
        occurrence.job,
        occurrence.scheduled_for.isoformat(),
        job.enqueue,
        task_id,
        extra=_fields(occurrence, "enqueued"),
    )
    return Outcome.ENQUEUED


def _call_locked(
    job: JobSpec,
    occurrence: Occurrence,
    row: Claim | None,
    timeout: int,
    call: Callable[[], Any] | None = None,
) -> Outcome:
    token = f"{occurrence.owner}@{occurrence.scheduled_for.isoformat()}"
    locked = acquire_lock(job.id, token, timeout)
    if locked is not ClaimResult.WON:
        reason = (
            "Skipped: a previous run of this job still holds its lock."
            if locked is ClaimResult.LOST
            else "Skipped: the job's lock could not be taken, the cache failed."
        )
        logger.warning(
            "Job %r at %s: %s",
            job.id,
            occurrence.scheduled_for.isoformat(),
            reason,
            extra=_fields(occurrence, "skipped"),
        )
        _record(row, occurrence, Claim.Status.SKIPPED, error=reason)
        _send(signals.occurrence_skipped, occurrence, reason="locked")
        return Outcome.SKIPPED
    try:
        return _call(job, occurrence, row, call)
    finally:
        release_lock(job.id, token)


def _call(
    job: JobSpec,
    occurrence: Occurrence,
    row: Claim | None,
    call: Callable[[], Any] | None = None,
) -> Outcome:
    _send(signals.occurrence_claimed, occurrence)
    logger.info(
        "Job %r at %s started on %s.",
        occurrence.job,
        occurrence.scheduled_for.isoformat(),
        occurrence.owner,
        extra=_fields(occurrence, "started"),
    )
    _send(signals.occurrence_started, occurrence)
    token = _current.set(occurrence)
    try:
        value = call() if call is not None else job.resolve()(*job.args, **job.kwargs)
        if inspect.isawaitable(value):
            value = asyncio.run(_wait(value))
    except BaseException as exc:
        return _fail(occurrence, row, exc, "Job %r at %s failed.")
    finally:
        _current.reset(token)
    logger.info(
        "Job %r at %s succeeded.",
        occurrence.job,
        occurrence.scheduled_for.isoformat(),
        extra=_fields(occurrence, "succeeded"),
    )
    _record(row, occurrence, Claim.Status.SUCCEEDED)
    _send(signals.occurrence_succeeded, occurrence, result=value)
    return Outcome.SUCCEEDED


def _fail(
    occurrence: Occurrence,
    row: Claim | None,
    exc: BaseException,
    message: str,
    *args: object,
    error_prefix: str = "",
) -> Outcome:
    """Log, record and signal a failure; called inside the ``except`` that caught ``exc``.

    ``message`` takes the job id, the scheduled time, then ``args``.
    """
    logger.exception(
        message,
        occurrence.job,
        occurrence.scheduled_for.isoformat(),
        *args,
        extra=_fields(occurrence, "failed"),
    )
    _record(
        row,
        occurrence,
        Claim.Status.FAILED,
        error=f"{error_prefix}{type(exc).__name__}: {exc}",
        traceback=traceback.format_exc(),
    )
    _send(signals.occurrence_failed, occurrence, exception=exc)
    return Outcome.FAILED


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _record(row: Claim | None, occurrence: Occurrence, status: str, **details: str) -> None:
    if row is None:
        logger.warning(
            "Job %r at %s ended %s; no history row holds it.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            status,
            extra=_fields(occurrence, "history-error"),
        )
        return
    try:
        if not history.close_claim(row, status, **details):
            logger.warning(
                "Job %r at %s ended %s here, but another instance had taken it over; "
                "its record stands.",
                occurrence.job,
                occurrence.scheduled_for.isoformat(),
                status,
                extra=_fields(occurrence, "taken-over"),
            )
    except DatabaseError:
        logger.exception(
            "Job %r at %s ended %s, but the history could not be updated.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            status,
            extra=_fields(occurrence, "history-error"),
        )


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
