"""Claims occurrences in the shared cache: the one place that writes claim keys."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import UTC, datetime

from django_oncejob.cache import atomic
from django_oncejob.cache.deployment import deployment_key
from django_oncejob.conf import conf


class ClaimResult(enum.Enum):
    """The cache's answer to a claim."""

    WON = "won"
    LOST = "lost"
    UNAVAILABLE = "unavailable"


_RESULTS = {True: ClaimResult.WON, False: ClaimResult.LOST, None: ClaimResult.UNAVAILABLE}


def claim_key(job_id: str, scheduled_for: datetime, attempt: int = 1) -> str:
    """``<prefix>:<deployment>:<job id>:<scheduled time in UTC ISO-8601>``, and ``#<attempt>``
    for a retry."""
    when = scheduled_for.astimezone(UTC).isoformat()
    key = f"{conf.KEY_PREFIX}:{deployment_key()}:{job_id}:{when}"
    return key if attempt == 1 else f"{key}#{attempt}"


def claim(job_id: str, scheduled_for: datetime, owner: str, attempt: int = 1) -> ClaimResult:
    """Try to become the one instance that runs this occurrence, or this attempt of it."""
    key = claim_key(job_id, scheduled_for, attempt)
    return _RESULTS[atomic.add(key, owner, conf.CLAIM_TIMEOUT)]


def claim_many(occurrences: Sequence[tuple[str, datetime]], owner: str) -> list[ClaimResult]:
    """Claim several occurrences (job id, scheduled time) at once, in their order.

    On django-redis's default client the keys go out in one round trip, so that an
    instance with hundreds of jobs due in the same second waits for Redis once, not
    once per job.
    """
    keys = [claim_key(job_id, scheduled_for) for job_id, scheduled_for in occurrences]
    return [_RESULTS[added] for added in atomic.add_many(keys, owner, conf.CLAIM_TIMEOUT)]
