"""History rows for the tests, written by the same statements as runjobs's writer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils import timezone

from django_oncejob.models import Run
from django_oncejob.running import history


def fence_many(
    occurrences: Sequence[tuple[str, datetime]], owner: str, claimed_at: datetime | None = None
) -> list[Run | None]:
    """Fence rows of (job id, scheduled time) for ``owner``: each row, or ``None`` if taken."""
    at = claimed_at or timezone.now()
    rows = [history.running(job, when, owner, at) for job, when in occurrences]
    inserted = history.insert_running(rows)
    return [row if done else None for row, done in zip(rows, inserted, strict=True)]


def fence(
    job: str,
    when: datetime,
    owner: str,
    claimed_at: datetime | None = None,
    *,
    requested_by: str = "",
) -> Run | None:
    """Fence one occurrence for ``owner``: its row, or ``None`` if another holds it."""
    row = history.running(job, when, owner, claimed_at or timezone.now(), requested_by)
    [inserted] = history.insert_running([row])
    return row if inserted else None
