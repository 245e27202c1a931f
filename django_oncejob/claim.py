"""Claims an occurrence in the shared cache: the one place that calls ``cache.add``."""

from __future__ import annotations

import enum
import logging
from datetime import UTC, datetime

from django.core.cache import caches

from django_oncejob.conf import conf

logger = logging.getLogger("django_oncejob")

#: Passed explicitly so that bumping the project's cache VERSION cannot change claim keys.
KEY_VERSION = 1


class ClaimResult(enum.Enum):
    WON = "won"
    LOST = "lost"
    UNAVAILABLE = "unavailable"


def claim_key(job_id: str, scheduled_for: datetime) -> str:
    """``<prefix>:<job id>:<scheduled time in UTC ISO-8601>``."""
    return f"{conf.KEY_PREFIX}:{job_id}:{scheduled_for.astimezone(UTC).isoformat()}"


def claim(job_id: str, scheduled_for: datetime, owner: str) -> ClaimResult:
    """Try to become the one instance that runs this occurrence."""
    return _add(claim_key(job_id, scheduled_for), owner, conf.CLAIM_TIMEOUT)


def lock_key(job_id: str) -> str:
    """``<prefix>:<job id>:lock``, held while a run of a job with ``lock_timeout`` goes on."""
    return f"{conf.KEY_PREFIX}:{job_id}:lock"


def acquire_lock(job_id: str, token: str, timeout: int) -> ClaimResult:
    """Take the job-wide lock for ``timeout`` seconds at most."""
    return _add(lock_key(job_id), token, timeout)


def release_lock(job_id: str, token: str) -> None:
    """Release the job-wide lock if this run still holds it."""
    key = lock_key(job_id)
    cache = caches[conf.CACHE]
    try:
        # Not atomic: at worst another run's lock is dropped just as this one's
        # expired, which a lock_timeout above the longest run makes moot.
        if cache.get(key, version=KEY_VERSION) == token:
            cache.delete(key, version=KEY_VERSION)
    except Exception:
        logger.warning("Could not release %s; it expires by itself.", key, exc_info=True)


def _add(key: str, value: str, timeout: int) -> ClaimResult:
    try:
        added = caches[conf.CACHE].add(key, value, timeout=timeout, version=KEY_VERSION)
    except Exception:
        logger.warning("Could not claim %s: the cache %r failed.", key, conf.CACHE, exc_info=True)
        return ClaimResult.UNAVAILABLE
    # django-redis with IGNORE_EXCEPTIONS returns None on a connection error:
    # only a real True means this instance wrote the key.
    if added is True:
        return ClaimResult.WON
    if added is None:
        logger.warning("Could not claim %s: the cache %r returned no answer.", key, conf.CACHE)
        return ClaimResult.UNAVAILABLE
    return ClaimResult.LOST
