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
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.core.cache import caches
from django.utils import timezone

from django_oncejob import triggers
from django_oncejob.claim import KEY_VERSION, claim_key
from django_oncejob.conf import conf
from django_oncejob.models import Claim, JobState
from django_oncejob.registry import JobSpec

logger = logging.getLogger("django_oncejob")

#: Past the misfire grace time, how long an occurrence may still take to reach
#: the history (a queued worker, a slow insert) before it counts as missed.
SETTLE = timedelta(seconds=5)
#: Fire times looked at per job and sweep; a longer gap is caught up over several sweeps.
MAX_PER_SWEEP = 10_000


def sweep(jobs: Iterable[JobSpec], owner: str, now: datetime | None = None) -> int:
    """Record the missed occurrences of ``jobs``; returns how many were found."""
    now = now or timezone.now()
    found = 0
    for job in jobs:
        found += _sweep_job(job, owner, now)
    return found


def _claimed_by(job_id: str, fire_times: list[datetime]) -> dict[datetime, str]:
    """Which of these occurrences hold a claim key, and whose: they were not missed."""
    if not fire_times:
        return {}
    keys = {claim_key(job_id, fire_time): fire_time for fire_time in fire_times}
    try:
        found = caches[conf.CACHE].get_many(list(keys), version=KEY_VERSION)
    except Exception:
        logger.warning("Could not read claim keys; counting the gaps as missed.", exc_info=True)
        return {}
    return {keys[key]: str(owner) for key, owner in found.items()}


def _sweep_job(job: JobSpec, owner: str, now: datetime) -> int:
    until = now - timedelta(seconds=job.misfire_grace_time) - SETTLE
    state, _ = JobState.objects.get_or_create(job=job.id)
    if state.checked_until is None:
        # The first sweep of a new job: nothing before it was anyone's to run. The
        # mark is now, not ``until``: fire times between the two predate every instance.
        JobState.objects.filter(pk=state.pk, checked_until__isnull=True).update(checked_until=now)
        return 0
    start = max(state.checked_until, now - timedelta(seconds=conf.MISSED_LOOKBACK))
    if until <= start:
        return 0
    due = []
    for fire_time in triggers.fire_times(
        job.trigger, start + timedelta(microseconds=1), MAX_PER_SWEEP
    ):
        if fire_time > until:
            break
        due.append(fire_time)
    if len(due) == MAX_PER_SWEEP:
        until = due[-1]
    ran = set(
        Claim.objects.filter(
            job=job.id, scheduled_for__gt=start, scheduled_for__lte=until
        ).values_list("scheduled_for", flat=True)
    )
    missing = [fire_time for fire_time in due if fire_time not in ran]
    claimed = _claimed_by(job.id, missing)
    rows = [
        Claim(
            job=job.id,
            scheduled_for=fire_time,
            owner=claimed.get(fire_time, owner),
            status=Claim.Status.ABANDONED if fire_time in claimed else Claim.Status.MISSED,
            claimed_at=now,
            finished_at=now,
            error=(
                f"Abandoned: claimed by {claimed[fire_time]}, which recorded no outcome "
                "(it died, or the history database failed while it ran)."
                if fire_time in claimed
                else "Missed: no instance ran it within its misfire grace time."
            ),
        )
        for fire_time in missing
    ]
    if rows:
        Claim.objects.bulk_create(rows, ignore_conflicts=True)
        logger.warning(
            "Job %r has %d occurrence(s) without an outcome between %s and %s: "
            "%d missed, %d claimed by an instance that recorded nothing.",
            job.id,
            len(rows),
            missing[0].isoformat(),
            missing[-1].isoformat(),
            len(missing) - len(claimed),
            len(claimed),
            extra={"oncejob_event": "missed", "oncejob_job": job.id},
        )
    JobState.objects.filter(pk=state.pk, checked_until=state.checked_until).update(
        checked_until=until
    )
    return len(missing)
