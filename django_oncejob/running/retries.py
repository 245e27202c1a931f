"""A job's ``retries``: a failed attempt kept, and the occurrence left for the next one.

Any instance may run the next attempt
(:mod:`~django_oncejob.fleet.followups`), claimed under its own key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.utils import timezone

from django_oncejob.jobs import triggers
from django_oncejob.models import Run
from django_oncejob.running import handover
from django_oncejob.running.history import Ending
from django_oncejob.running.steps import Fenced, log_fields
from django_oncejob.running.writer import Writer

logger = logging.getLogger("django_oncejob")


class Retries:
    """The :class:`~django_oncejob.running.pipeline.Pipeline`'s part for jobs with ``retries``."""

    writer: Writer
    #: Told of each row this instance recorded as retrying, to try it again when due.
    retrying: Callable[[Run], None] | None

    def _retry(self, step: Fenced, ending: Ending) -> bool:
        """Leave a failed attempt to be tried again, if the job has retries left before its
        next occurrence; ``False`` to record it failed."""
        job, row, occurrence = step.job, step.row, step.occurrence
        failed_at = timezone.now()
        due = job.retry_at(occurrence.attempt, failed_at)
        if due is None or not step.fenced or row.pk is None:
            return False
        following = triggers.next_fire_time(job.trigger, occurrence.scheduled_for)
        if following is not None and due >= following:
            logger.warning(
                "Job %r at %s is not tried again: its next attempt, at %s, would be after its "
                "next occurrence.",
                occurrence.job,
                occurrence.scheduled_for.isoformat(),
                due.isoformat(),
            )
            return False
        ending.status, ending.next_attempt_at, ending.finished_at = (
            Run.Status.RETRYING,
            due,
            failed_at,
        )
        try:
            self.writer.call(lambda: handover.record_failed_attempt(row, ending))
        except Exception:
            logger.warning(
                "Could not record attempt %d of job %r at %s; recording it failed instead of "
                "trying again.",
                occurrence.attempt,
                occurrence.job,
                occurrence.scheduled_for.isoformat(),
                exc_info=True,
            )
            ending.status, ending.next_attempt_at = Run.Status.FAILED, None
            return False
        self.writer.finish(row, ending)
        logger.warning(
            "Job %r at %s: attempt %d of %d failed; the next is due at %s.",
            occurrence.job,
            occurrence.scheduled_for.isoformat(),
            occurrence.attempt,
            job.retries + 1,
            due.isoformat(),
            extra=log_fields(occurrence, "retrying"),
        )
        if self.retrying is not None:
            row.status, row.next_attempt_at = Run.Status.RETRYING, due
            self.retrying(row)
        return True
