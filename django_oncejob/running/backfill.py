"""Occurrences run after their time on purpose: a job's catch-up, and a backfill of a range.

Each goes through its own claim key and its history row, as a scheduled occurrence
does: two instances catching up after an outage, a backfill run twice at once, or
a backfill of a range the schedule also runs, run each occurrence once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.db.models import Q

from django_oncejob.cache.claim import ClaimResult, claim_many
from django_oncejob.jobs import triggers
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import JobState, Run
from django_oncejob.monitoring import metrics
from django_oncejob.running.pipeline import Pipeline
from django_oncejob.running.steps import Claimed, Fenced, Outcome

logger = logging.getLogger("django_oncejob")

#: Occurrences of one job that a catch-up or a backfill takes at most.
MOST = 10_000
#: Occurrences claimed and fenced together by a backfill.
BATCH = 50


def scheduled_between(job: JobSpec, start: datetime, end: datetime) -> list[datetime]:
    """The job's scheduled times from ``start`` to ``end``, both included, at most :data:`MOST`."""
    times = []
    for fire_time in triggers.fire_times(job.trigger, start, MOST):
        if fire_time > end:
            break
        times.append(fire_time)
    return times


def to_catch_up(jobs: Sequence[JobSpec], started_at: datetime) -> dict[str, list[datetime]]:
    """The occurrences of the jobs with ``catchup`` that were due while no instance ran.

    Those before ``started_at`` (when this instance started), within the job's
    ``catchup_window``, after the last time the history was checked for misses (nothing
    before a job's first check was anyone's to run), and not in the history: ``"all"``
    of them, or the ``"latest"`` only if it is not in the history.
    """
    catching = [job for job in jobs if job.catchup != "none"]
    if not catching:
        return {}
    marks = dict(
        JobState.objects.filter(job__in=[job.id for job in catching]).values_list(
            "job", "checked_until"
        )
    )
    wanted: dict[str, list[datetime]] = {}
    for job in catching:
        mark = marks.get(job.id)
        if mark is None:
            continue
        start = max(mark, started_at - timedelta(seconds=job.catchup_window))
        times = [
            time
            for time in scheduled_between(job, start + timedelta(microseconds=1), started_at)
            if time < started_at
        ]
        wanted[job.id] = times[-1:] if job.catchup == "latest" else times
    return _not_in_history(wanted)


def _not_in_history(wanted: dict[str, list[datetime]]) -> dict[str, list[datetime]]:
    ranges = [
        Q(job=job_id, scheduled_for__gte=times[0], scheduled_for__lte=times[-1])
        for job_id, times in wanted.items()
        if times
    ]
    if not ranges:
        return {}
    match = ranges[0]
    for more in ranges[1:]:
        match |= more
    have = set(Run.objects.filter(match).values_list("job", "scheduled_for"))
    return {
        job_id: missing
        for job_id, times in wanted.items()
        if (missing := [time for time in times if (job_id, time) not in have])
    }


def claim_and_fence(
    pipeline: Pipeline,
    job: JobSpec,
    times: Sequence[datetime],
    *,
    paused: bool = False,
    requested_by: str = "",
) -> list[Fenced]:
    """Claim ``job``'s occurrences at ``times`` and fence the ones won, to run them later.

    Those another instance claimed, or that the history holds already, are left out.
    """
    fenced: list[Fenced] = []
    for start in range(0, len(times), BATCH):
        chunk = times[start : start + BATCH]
        results = claim_many([(job.id, time) for time in chunk], pipeline.owner)
        for result in results:
            metrics.claimed(job.id, result.value)
        claimed = [
            Claimed(job, time, result, paused, requested_by)
            for time, result in zip(chunk, results, strict=True)
            if result is not ClaimResult.LOST
        ]
        fenced += [step for step in pipeline.fence(claimed) if isinstance(step, Fenced)]
    return fenced


def run_all(
    pipeline: Pipeline,
    job: JobSpec,
    times: Sequence[datetime],
    requested_by: str,
    ran: Callable[[Outcome], None] | None = None,
) -> int:
    """Run ``job``'s occurrences at ``times``, one after another, each once across the fleet.

    Returns how many ran here. ``ran`` is told each outcome as it comes.
    """
    count = 0
    for start in range(0, len(times), BATCH):
        chunk = times[start : start + BATCH]
        for step in claim_and_fence(pipeline, job, chunk, requested_by=requested_by):
            outcome = pipeline.run(step)
            count += 1
            if ran is not None:
                ran(outcome)
    return count
