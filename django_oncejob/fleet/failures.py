"""A job's failures in a row: the signals when it starts failing and recovers, and its pause.

The count is the history's (the failed, abandoned and timed-out occurrences since
the job's last success), kept on the job's JobState row. Every instance looks at
the jobs that ended here since its last look, and at the jobs the row says are
failing; each change is one conditional UPDATE of that row, so each signal goes
out once across the fleet, from the instance that made the change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime

from django.db.models.functions import Now
from django.dispatch import Signal

from django_oncejob import signals
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import JobState, Run

logger = logging.getLogger("django_oncejob")

#: Who the JobState row says paused a job after its failures.
PAUSED_BY = "django-oncejob"


class Failures:
    """The jobs whose occurrences ended on this instance since the last :meth:`check`."""

    def __init__(self, jobs: Mapping[str, JobSpec]) -> None:
        self.jobs = jobs
        self._lock = threading.Lock()
        self._ended: set[str] = set()

    def failed(self, job_id: str) -> None:
        """An occurrence of the job failed here: count its failures at the next check."""
        with self._lock:
            self._ended.add(job_id)

    def check(self, failing: Iterable[str]) -> None:
        """Count the failures in a row of the jobs that failed here, and of the ``failing``
        ones (by their JobState rows) whose latest occurrence succeeded."""
        with self._lock:
            failed, self._ended = self._ended, set()
        failing = [job_id for job_id in failing if job_id in self.jobs]
        latest = Run.objects.latest_per_job(failing, Run.ENDED) if failing else {}
        recovered = {job_id for job_id, row in latest.items() if row.status == Run.Status.SUCCEEDED}
        for job_id in sorted(failed | recovered):
            job = self.jobs.get(job_id)
            if job is not None:
                count(job)


def count(job: JobSpec) -> int:
    """Bring the job's JobState row up to date with its failures in a row; returns them."""
    last_success = (
        Run.objects.filter(job=job.id, status=Run.Status.SUCCEEDED)
        .order_by("-scheduled_for")
        .values_list("scheduled_for", flat=True)
        .first()
    )
    failures = Run.objects.filter(job=job.id, status__in=Run.FAILURES)
    if last_success is not None:
        failures = failures.filter(scheduled_for__gt=last_success)
    times = list(failures.order_by("scheduled_for").values_list("scheduled_for", flat=True))
    state, _ = JobState.objects.get_or_create(job=job.id)
    if not times:
        if state.failing_since is not None and JobState.objects.filter(
            pk=state.pk, failing_since__isnull=False
        ).update(failures=0, failing_since=None):
            logger.info("Job %r succeeded again after %d failure(s).", job.id, state.failures)
            _send(signals.job_recovered, job, failures=state.failures)
        return 0
    if JobState.objects.filter(pk=state.pk, failing_since__isnull=True).update(
        failures=len(times), failing_since=times[0]
    ):
        logger.warning("Job %r is failing: its occurrence at %s failed.", job.id, times[-1])
        _send(signals.job_failing, job, failures=len(times))
    elif state.failures != len(times):
        JobState.objects.filter(pk=state.pk).update(failures=len(times))
    _pause(job, state, times)
    return len(times)


def _pause(job: JobSpec, state: JobState, times: list[datetime]) -> None:
    """Pause the job after its ``pause_after_failures``, counted since it was last resumed."""
    if job.pause_after_failures is None or state.paused:
        return
    since = state.changed_at
    failures = len([time for time in times if since is None or time > since])
    if failures < job.pause_after_failures:
        return
    note = f"Paused after {failures} failures in a row; resume it once the cause is fixed."
    if JobState.objects.filter(pk=state.pk, paused=False).update(
        paused=True, paused_until=None, changed_at=Now(), changed_by=PAUSED_BY, note=note
    ):
        logger.error("Job %r paused after %d failures in a row.", job.id, failures)
        _send(signals.job_paused, job, failures=failures)


def _send(signal: Signal, job: JobSpec, **kwargs: object) -> None:
    for receiver, response in signal.send_robust(sender=job.id, job=job, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "Signal receiver %r failed for job %r.", receiver, job.id, exc_info=response
            )
