"""What the history says about each job, in a fixed number of queries: for the admin and
the health command.

Each function here runs one query, whatever the number of jobs and of history rows.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from django.db import connections
from django.db.models import Count, F, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from django_oncejob.models import Claim

Status = Claim.Status

#: Statuses of an occurrence that was started, or handed to a task queue: the ones that are a run.
RUN = (Status.ENQUEUED, Status.RUNNING, Status.SUCCEEDED, Status.FAILED, Status.ABANDONED)
#: Statuses of a run that has ended.
ENDED = (Status.SUCCEEDED, Status.FAILED, Status.ABANDONED)
#: Statuses that count as failures: the job raised or was interrupted, or its instance died.
FAILURES = (Status.FAILED, Status.ABANDONED)


@dataclass(frozen=True)
class Counts:
    """How many occurrences of one job succeeded, failed and were missed in a period."""

    succeeded: int = 0
    failed: int = 0
    missed: int = 0


def last_rows(job_ids: Collection[str], statuses: Collection[str] = RUN) -> dict[str, Claim]:
    """The latest history row of each job among ``statuses``, by scheduled time."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    wanted = list(statuses)
    database = Claim.objects.db
    found: QuerySet[Claim]
    if connections[database].features.supports_slicing_ordering_in_compound:
        # One "ORDER BY ... LIMIT 1" per job, each walking the (job, scheduled_for)
        # index from its end: cheap however long the history is.
        parts = [
            Claim.objects.filter(job=job, status__in=wanted)
            .defer("traceback")
            .order_by("-scheduled_for")[:1]
            for job in ids
        ]
        found = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    else:
        rank = Window(RowNumber(), partition_by=[F("job")], order_by=F("scheduled_for").desc())
        found = (
            Claim.objects.filter(job__in=ids, status__in=wanted)
            .defer("traceback")
            .annotate(rank=rank)
            .filter(rank=1)
        )
    return {row.job: row for row in found}


def recent_counts(job_ids: Collection[str], since: datetime) -> dict[str, Counts]:
    """Successes, failures (failed or abandoned) and misses per job, scheduled since ``since``."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    rows = (
        Claim.objects.filter(job__in=ids, scheduled_for__gte=since)
        .order_by()
        .values("job")
        .annotate(
            succeeded=Count("pk", filter=Q(status=Status.SUCCEEDED)),
            failed=Count("pk", filter=Q(status__in=FAILURES)),
            missed=Count("pk", filter=Q(status=Status.MISSED)),
        )
    )
    return {row["job"]: Counts(row["succeeded"], row["failed"], row["missed"]) for row in rows}
