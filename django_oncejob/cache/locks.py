"""The job-wide lock of a job with ``lock_timeout``: no two runs of it at once."""

from __future__ import annotations

import enum
import logging
import time

from django_oncejob.cache import atomic
from django_oncejob.cache.deployment import deployment_key
from django_oncejob.conf import conf

logger = logging.getLogger("django_oncejob")

#: Pauses between tries to release a job's lock.
RELEASE_RETRY_DELAYS = (0.1, 0.3, 1.0)


class LockResult(enum.Enum):
    """The cache's answer to taking a job's lock."""

    TAKEN = "taken"
    HELD = "held"
    UNAVAILABLE = "unavailable"


_RESULTS = {True: LockResult.TAKEN, False: LockResult.HELD, None: LockResult.UNAVAILABLE}


def lock_key(job_id: str) -> str:
    """``<prefix>:<deployment>:<job id>:lock``, held while a run of a job with
    ``lock_timeout`` goes on."""
    return f"{conf.KEY_PREFIX}:{deployment_key()}:{job_id}:lock"


def take_lock(job_id: str, token: str, timeout: int) -> LockResult:
    """Take the job-wide lock for ``timeout`` seconds at most."""
    return _RESULTS[atomic.add(lock_key(job_id), token, timeout)]


def lock_holder(job_id: str) -> str | None:
    """The token of the run that holds the job's lock, ``None`` if none (or no answer)."""
    held = atomic.get(lock_key(job_id))
    return None if held is None else str(held)


def break_lock(job_id: str, token: str) -> bool:
    """Delete the job's lock if ``token`` still holds it: a run that ended left it behind."""
    try:
        return atomic.delete_if(lock_key(job_id), token)
    except Exception:
        logger.warning("Could not break the lock of job %r.", job_id, exc_info=True)
        return False


def release_lock(job_id: str, token: str) -> bool:
    """Release the job-wide lock if ``token`` still holds it; ``True`` if this call did.

    Tried a few times, since a lock left behind keeps the job from running until it
    expires; past that, the next run that finds it checks the history, and breaks a
    lock whose run has ended.
    """
    key = lock_key(job_id)
    for delay in RELEASE_RETRY_DELAYS:
        try:
            return atomic.delete_if(key, token)
        except Exception:
            logger.warning("Could not release %s; trying again.", key, exc_info=True)
            time.sleep(delay)
    try:
        return atomic.delete_if(key, token)
    except Exception:
        logger.warning(
            "Could not release %s; the next run breaks it, or it expires.", key, exc_info=True
        )
        return False
