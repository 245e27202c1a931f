"""Finds occurrences that no instance ran and records them as missed.

With every instance down, or all of them late past the misfire grace time, an
occurrence leaves no trace at all. Each instance sweeps the recent past now
and then: every fire time with no history row becomes a "missed" row, so the
gap shows in the admin and to the health command.

An occurrence whose claim key exists but that has no history row was won by
an instance that then recorded nothing: it died between the claim and the
insert, or ran while the database was down. Those are recorded as abandoned,
since whether they ran is unknown.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from operator import or_

from django.core.cache import caches
from django.db.models import Min, Q
from django.utils import timezone

from django_oncejob.cache.atomic import KEY_VERSION
from django_oncejob.cache.claim import claim_key
from django_oncejob.conf import conf
from django_oncejob.jobs import triggers
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Instance, JobState, Run

logger = logging.getLogger("django_oncejob")

#: Past the misfire grace time, how long an occurrence may still take to reach
#: the history (a queued worker, a slow insert) before it counts as missed.
SETTLE = timedelta(seconds=5)
#: Fire times looked at per job and sweep; a longer gap is caught up over several sweeps.
MAX_PER_SWEEP = 10_000
#: Jobs whose history one query reads: a sweep costs a few queries per this many jobs,
#: not a few per job.
JOBS_PER_QUERY = 200


@dataclass
class _Window:
    """The stretch of one job's schedule a sweep checks: ``(start, until]``."""

    job: JobSpec
    mark: datetime
    start: datetime
    until: datetime
    due: list[datetime]


def sweep(
    jobs: Iterable[JobSpec], owner: str, now: datetime | None = None, timeout: int = 60
) -> int:
    """Record the missed occurrences of ``jobs``; returns how many were found.

    ``now`` is the database's time. An occurrence counts as missed only once every
    live instance could have run it by its own clock: past its misfire grace time
    for the instance whose clock is furthest behind. ``timeout`` stands in for an
    instance's own HEARTBEAT_TIMEOUT where it recorded none.
    """
    now = now or timezone.now()
    lag = _slowest_clock(timeout)
    found = 0
    for chunk in _chunks(list(jobs), JOBS_PER_QUERY):
        found += _sweep_chunk(chunk, owner, now, lag)
    return found


def _slowest_clock(timeout: int) -> timedelta:
    """How far the live instance whose clock is furthest behind the database's lags."""
    behind = Instance.objects.alive(timeout).aggregate(least=Min("clock_offset")).get("least")
    return timedelta(seconds=max(0.0, -(behind or 0.0)))


def _sweep_chunk(jobs: Sequence[JobSpec], owner: str, now: datetime, lag: timedelta) -> int:
    windows = [
        window for job, mark in _marks(jobs, now) if (window := _window(job, mark, now, lag))
    ]
    if not windows:
        return 0
    ran = _ran([window for window in windows if window.due])
    missing = {
        window.job.id: [time for time in window.due if (window.job.id, time) not in ran]
        for window in windows
    }
    claimed = _claimed_by(missing)
    rows = [
        _row(job_id, fire_time, claimed.get((job_id, fire_time)), owner, now)
        for job_id, fire_times in missing.items()
        for fire_time in fire_times
    ]
    if rows:
        Run.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
        for job_id, fire_times in missing.items():
            if fire_times:
                _warn(job_id, fire_times, claimed)
    _advance(windows)
    return len(rows)


def _marks(jobs: Sequence[JobSpec], now: datetime) -> Iterator[tuple[JobSpec, datetime]]:
    """Each job with how far its schedule has been checked, marking new jobs as checked to now.

    The first sweep of a new job counts nothing before it: nothing then was anyone's
    to run. The mark is ``now``, not the end of the settled past: fire times between
    the two predate every instance.
    """
    ids = [job.id for job in jobs]
    marks = dict(JobState.objects.filter(job__in=ids).values_list("job", "checked_until"))
    new = [job_id for job_id in ids if job_id not in marks]
    if new:
        JobState.objects.bulk_create(
            [JobState(job=job_id, checked_until=now) for job_id in new], ignore_conflicts=True
        )
    unmarked = [job_id for job_id, mark in marks.items() if mark is None]
    if unmarked:
        JobState.objects.filter(job__in=unmarked, checked_until__isnull=True).update(
            checked_until=now
        )
    for job in jobs:
        mark = marks.get(job.id)
        if mark is not None:
            yield job, mark


def _window(job: JobSpec, mark: datetime, now: datetime, lag: timedelta) -> _Window | None:
    until = now - timedelta(seconds=job.misfire_grace_time) - SETTLE - lag
    start = max(mark, now - timedelta(seconds=conf.MISSED_LOOKBACK))
    if until <= start:
        return None
    due = []
    for fire_time in triggers.fire_times(
        job.trigger, start + timedelta(microseconds=1), MAX_PER_SWEEP
    ):
        if fire_time > until:
            break
        due.append(fire_time)
    if len(due) == MAX_PER_SWEEP:
        until = due[-1]
    return _Window(job, mark, start, until, due)


def _ran(windows: Sequence[_Window]) -> set[tuple[str, datetime]]:
    """The occurrences in the windows that have a history row, in one query."""
    if not windows:
        return set()
    ranges = (
        Q(job=window.job.id, scheduled_for__gt=window.start, scheduled_for__lte=window.until)
        for window in windows
    )
    return set(Run.objects.filter(reduce(or_, ranges)).values_list("job", "scheduled_for"))


def _claimed_by(missing: dict[str, list[datetime]]) -> dict[tuple[str, datetime], str]:
    """Which of these occurrences hold a claim key, and whose: they were not missed."""
    keys = {
        claim_key(job_id, fire_time): (job_id, fire_time)
        for job_id, fire_times in missing.items()
        for fire_time in fire_times
    }
    if not keys:
        return {}
    try:
        found = caches[conf.CACHE].get_many(list(keys), version=KEY_VERSION)
    except Exception:
        logger.warning("Could not read claim keys; counting the gaps as missed.", exc_info=True)
        return {}
    return {keys[key]: str(owner) for key, owner in found.items()}


def _row(job_id: str, fire_time: datetime, claimer: str | None, owner: str, now: datetime) -> Run:
    return Run(
        job=job_id,
        scheduled_for=fire_time,
        owner=claimer or owner,
        status=Run.Status.ABANDONED if claimer else Run.Status.MISSED,
        claimed_at=now,
        attempts=1 if claimer else 0,
        finished_at=now,
        error=(
            f"Abandoned: claimed by {claimer}, which recorded no outcome "
            "(it died, or the history database failed while it ran)."
            if claimer
            else "Missed: no instance ran it within its misfire grace time."
        ),
    )


def _warn(
    job_id: str, fire_times: list[datetime], claimed: dict[tuple[str, datetime], str]
) -> None:
    abandoned = sum((job_id, fire_time) in claimed for fire_time in fire_times)
    logger.warning(
        "Job %r has %d occurrence(s) without an outcome between %s and %s: "
        "%d missed, %d claimed by an instance that recorded nothing.",
        job_id,
        len(fire_times),
        fire_times[0].isoformat(),
        fire_times[-1].isoformat(),
        len(fire_times) - abandoned,
        abandoned,
        extra={"oncejob_event": "missed", "oncejob_job": job_id},
    )


def _advance(windows: Sequence[_Window]) -> None:
    """Move each job's mark to the end of its window, unless another sweep moved it first.

    Jobs swept together mostly share both marks, so one UPDATE serves each pair.
    """
    moves: dict[tuple[datetime, datetime], list[str]] = defaultdict(list)
    for window in windows:
        moves[window.mark, window.until].append(window.job.id)
    for (mark, until), job_ids in moves.items():
        JobState.objects.filter(job__in=job_ids, checked_until=mark).update(checked_until=until)


def _chunks(jobs: list[JobSpec], size: int) -> Iterator[list[JobSpec]]:
    for index in range(0, len(jobs), size):
        yield jobs[index : index + size]
