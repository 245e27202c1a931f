"""A job's ``overlap``: the job-wide lock that keeps its runs from overlapping.

With ``"skip"`` an occurrence that finds a run going on is recorded as skipped;
with ``"buffer_one"`` it waits, one at most, and starts when that run ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django_oncejob import signals
from django_oncejob.cache.locks import LockResult, break_lock, lock_holder, release_lock, take_lock
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Run
from django_oncejob.monitoring import metrics
from django_oncejob.occurrence import Occurrence
from django_oncejob.running import handover
from django_oncejob.running.history import Ending
from django_oncejob.running.steps import Fenced, Outcome, log_fields, send
from django_oncejob.running.writer import Writer

logger = logging.getLogger("django_oncejob")


class Overlap:
    """The :class:`~django_oncejob.running.pipeline.Pipeline`'s runs of a job that holds a lock."""

    writer: Writer

    if TYPE_CHECKING:

        def _call(self, step: Fenced, call: Callable[[], Any] | None = None) -> Outcome: ...

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
        if locked is LockResult.HELD and step.job.overlap == "buffer_one" and self._wait(step):
            return Outcome.WAITING
        if locked is not LockResult.TAKEN:
            if locked is LockResult.UNAVAILABLE:
                metrics.cache_error()
                reason = "Skipped: the job's lock could not be taken, the cache failed."
            elif step.job.overlap == "buffer_one":
                reason = (
                    "Skipped: a previous run of this job is still running, and another "
                    "occurrence already waits for it."
                )
            logger.warning(
                "Job %r at %s: %s",
                step.job.id,
                occurrence.scheduled_for.isoformat(),
                reason,
                extra=log_fields(occurrence, "skipped"),
            )
            self.writer.finish(step.row, Ending(Run.Status.SKIPPED, reason))
            send(signals.occurrence_skipped, occurrence, reason="locked")
            return Outcome.SKIPPED
        try:
            return self._call(step, call)
        finally:
            release_lock(step.job.id, token)

    def _wait(self, step: Fenced) -> bool:
        """Leave the occurrence waiting for the job's running one, unless another waits."""
        occurrence = step.occurrence
        try:
            waits = step.fenced and self.writer.call(lambda: handover.wait(step.row))
        except Exception:
            logger.warning(
                "Could not leave job %r at %s waiting for the run before it.",
                occurrence.job,
                occurrence.scheduled_for.isoformat(),
                exc_info=True,
            )
            return False
        if waits:
            self.writer.forget(step.row)
            logger.info(
                "Job %r at %s waits: a previous run of it is still running.",
                occurrence.job,
                occurrence.scheduled_for.isoformat(),
                extra=log_fields(occurrence, "waiting"),
            )
        return waits

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


def lock_token(occurrence: Occurrence) -> str:
    """What a run of a job with ``lock_timeout`` writes in the job's lock: whose run it is."""
    return f"{occurrence.owner}@{occurrence.scheduled_for.isoformat()}"
