"""The versions of the jobs' schedules in the database, which every instance follows.

An instance that starts records its own definition of each job whose deployed version
differs from it, effective ``SWITCH_LEAD`` seconds from now; the admin records
overrides and resets the same way. Every instance reads the new versions at each
look of its control thread, and switches each job at the instant its version says,
by the database's clock: the whole fleet at the same occurrence.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from django.db import router
from django.utils import timezone

from django_oncejob.conf import conf
from django_oncejob.fleet.clock import measure_offset
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.jobs.versions import (
    DEPLOY,
    OVERRIDE,
    RESET,
    ScheduleBook,
    fingerprint,
    storable,
)
from django_oncejob.models import ScheduleVersion

logger = logging.getLogger("django_oncejob")


def switch_time() -> datetime:
    """When a change saved now takes effect: ``SWITCH_LEAD`` seconds ahead, by the
    database's clock, so that every live instance has read it by then."""
    offset = measure_offset(router.db_for_write(ScheduleVersion))
    now: datetime = timezone.now()
    return now - timedelta(seconds=offset) + timedelta(seconds=conf.SWITCH_LEAD)


def record_deployed(jobs: Mapping[str, JobSpec], owner: str) -> list[ScheduleVersion]:
    """Record this release's definition of each job whose last deployed version differs.

    A job without any version yet gets its first, in force since the job began. Returns
    the versions recorded.
    """
    rows = ScheduleVersion.objects.filter(job__in=list(jobs), source=DEPLOY).values_list(
        "job", "effective_from", "pk", "fingerprint"
    )
    # The deployed version in force last, per job: the one that takes effect last.
    latest: dict[str, tuple[datetime, int, str]] = {}
    for job_id, begins, pk, print_ in rows:
        key = (begins or datetime.min.replace(tzinfo=UTC), pk, print_)
        if job_id not in latest or key > latest[job_id]:
            latest[job_id] = key
    new = []
    at: datetime | None = None
    for job_id, spec in jobs.items():
        mine = fingerprint(spec.definition)
        found = latest.get(job_id)
        if found is not None and found[2] == mine:
            continue
        if found is not None and at is None:
            at = switch_time()
        new.append(
            ScheduleVersion(
                job=job_id,
                source=DEPLOY,
                definition=storable(spec.definition),
                fingerprint=mine,
                effective_from=None if found is None else at,
                created_by=owner,
            )
        )
    ScheduleVersion.objects.bulk_create(new)
    for version in new:
        if version.effective_from is not None:
            logger.warning(
                "Job %r is defined otherwise here than by the release in force: every instance "
                "switches to this definition at %s.",
                version.job,
                version.effective_from.isoformat(),
            )
    return new


def read(book: ScheduleBook) -> set[str]:
    """Take the versions recorded since the book's last read; the ids of the jobs changed."""
    return book.add(ScheduleVersion.objects.filter(pk__gt=book.last_pk).order_by("pk"))


def change(
    job_id: str, source: str, definition: Mapping[str, object], created_by: str, note: str = ""
) -> ScheduleVersion:
    """Record an override (``definition``: the keys it replaces) or a reset of a job."""
    assert source in (OVERRIDE, RESET)
    stored = storable(definition) if source == OVERRIDE else {}
    return ScheduleVersion.objects.create(
        job=job_id,
        source=source,
        definition=stored,
        fingerprint=fingerprint(stored),
        effective_from=switch_time(),
        created_by=created_by,
        note=note,
    )
