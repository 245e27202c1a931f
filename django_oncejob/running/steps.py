"""What passes along an occurrence's way: its steps, its outcome, and how it is told.

:mod:`~django_oncejob.running.pipeline` and the parts it delegates to
(:mod:`~django_oncejob.running.overlap`, :mod:`~django_oncejob.running.deadline`,
:mod:`~django_oncejob.running.retries`) share these.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.dispatch import Signal

from django_oncejob import signals
from django_oncejob.cache.claim import ClaimResult
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Run
from django_oncejob.monitoring.watch import Watch
from django_oncejob.occurrence import Occurrence

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
    #: The attempt failed; the next is due later, on whichever instance claims it.
    RETRYING = "retrying"
    #: It ran past the job's ``max_runtime``.
    TIMED_OUT = "timed_out"
    #: A previous run of the job goes on: it starts once that ends (``overlap="buffer_one"``).
    WAITING = "waiting"


#: Outcomes that do not settle the occurrence: another attempt, or its start, comes later.
UNSETTLED = frozenset({Outcome.RETRYING, Outcome.WAITING})


@dataclass(frozen=True)
class Claimed:
    """An occurrence this instance did not lose the claim of: the cache answered ``result``."""

    job: JobSpec
    #: In UTC.
    scheduled_for: datetime
    result: ClaimResult
    #: Paused in the admin: the occurrence is recorded as skipped, once, not run.
    paused: bool = False
    #: Who asked for it to run after its time (a backfill); ``""`` for the schedule.
    requested_by: str = ""


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
            self.occurrence.attempt,
            claimed_at=self.row.claimed_at,
            handed_off=self.handed_off,
            trace=self.trace,
        )


def error_text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose str() raised>"


def skip(
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
        extra=log_fields(occurrence, event),
    )
    send(signals.occurrence_skipped, occurrence, reason=reason)
    return outcome


def log_fields(occurrence: Occurrence, event: str) -> dict[str, Any]:
    """Structured fields for log records, for handlers that format or ship them."""
    return {
        "oncejob_event": event,
        "oncejob_job": occurrence.job,
        "oncejob_scheduled_for": occurrence.scheduled_for.isoformat(),
        "oncejob_owner": occurrence.owner,
    }


def send(signal: Signal, occurrence: Occurrence, **kwargs: Any) -> None:
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
