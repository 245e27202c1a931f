"""Claims occurrences in the shared cache: the one place that writes claim keys."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.core.cache import caches
from django_redis.client import DefaultClient

from django_oncejob.conf import conf

logger = logging.getLogger("django_oncejob")

#: Passed explicitly so that bumping the project's cache VERSION cannot change claim keys.
KEY_VERSION = 1
#: Pauses between tries to release a job's lock.
RELEASE_RETRY_DELAYS = (0.1, 0.3, 1.0)
#: Deletes KEYS[1] only while it holds ARGV[1], in one atomic step.
_DELETE_IF = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


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


def claim_many(occurrences: Sequence[tuple[str, datetime]], owner: str) -> list[ClaimResult]:
    """Claim several occurrences (job id, scheduled time) at once, in their order.

    On django-redis's default client, the keys go out in one pipeline: the same
    ``SET NX PX`` that ``cache.add`` sends, one per occurrence, in one round trip.
    When hundreds of jobs are due in the same second, each instance then waits for
    Redis once, not once per job. Other caches take one ``add`` per occurrence.
    """
    cache = caches[conf.CACHE]
    client: Any = getattr(cache, "client", None)
    # Subclasses may store or shard keys differently (HerdClient, ShardClient): only
    # the default client is known to write what a pipelined SET writes.
    if len(occurrences) < 2 or type(client) is not DefaultClient:
        return [claim(job_id, scheduled_for, owner) for job_id, scheduled_for in occurrences]
    keys = [claim_key(job_id, scheduled_for) for job_id, scheduled_for in occurrences]
    try:
        value = client.encode(owner)
        expires = conf.CLAIM_TIMEOUT * 1000
        pipeline = client.get_client(write=True).pipeline(transaction=False)
        for key in keys:
            pipeline.set(client.make_key(key, version=KEY_VERSION), value, nx=True, px=expires)
        replies = pipeline.execute(raise_on_error=False)
    except Exception:
        logger.warning(
            "Could not claim %d occurrences: the cache %r failed.",
            len(keys),
            conf.CACHE,
            exc_info=True,
        )
        return _confirm(keys, owner)
    results = [_result(key, reply) for key, reply in zip(keys, replies, strict=True)]
    unknown = [i for i, result in enumerate(results) if result is ClaimResult.UNAVAILABLE]
    if unknown:
        for i, result in zip(unknown, _confirm([keys[i] for i in unknown], owner), strict=True):
            results[i] = result
    return results


def _result(key: str, reply: Any) -> ClaimResult:
    if isinstance(reply, Exception):
        logger.warning("Could not claim %s: %s", key, reply)
        return ClaimResult.UNAVAILABLE
    # SET NX answers OK when it wrote the key, nil (None) when the key was taken.
    return ClaimResult.WON if reply else ClaimResult.LOST


def _confirm(keys: Sequence[str], value: str) -> list[ClaimResult]:
    """What claims whose answer was lost came to: Redis may have applied them all the same.

    A key that holds this instance's value was written by it; one that holds another's
    was taken; no key, or no answer again, leaves the claim unavailable.
    """
    try:
        found = caches[conf.CACHE].get_many(list(keys), version=KEY_VERSION)
    except Exception:
        return [ClaimResult.UNAVAILABLE] * len(keys)
    results = []
    for key in keys:
        held = found.get(key)
        if held is None:
            results.append(ClaimResult.UNAVAILABLE)
        else:
            results.append(ClaimResult.WON if held == value else ClaimResult.LOST)
    return results


def lock_key(job_id: str) -> str:
    """``<prefix>:<job id>:lock``, held while a run of a job with ``lock_timeout`` goes on."""
    return f"{conf.KEY_PREFIX}:{job_id}:lock"


def acquire_lock(job_id: str, token: str, timeout: int) -> ClaimResult:
    """Take the job-wide lock for ``timeout`` seconds at most."""
    return _add(lock_key(job_id), token, timeout)


def lock_holder(job_id: str) -> str | None:
    """The token of the run that holds the job's lock, ``None`` if none (or no answer)."""
    try:
        held = caches[conf.CACHE].get(lock_key(job_id), version=KEY_VERSION)
    except Exception:
        return None
    return None if held is None else str(held)


def break_lock(job_id: str, token: str) -> bool:
    """Delete the job's lock if ``token`` still holds it: a run that ended left it behind."""
    try:
        return _delete_if(lock_key(job_id), token)
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
            return _delete_if(key, token)
        except Exception:
            logger.warning("Could not release %s; trying again.", key, exc_info=True)
            time.sleep(delay)
    try:
        return _delete_if(key, token)
    except Exception:
        logger.warning(
            "Could not release %s; the next run breaks it, or it expires.", key, exc_info=True
        )
        return False


def _delete_if(key: str, value: str) -> bool:
    cache = caches[conf.CACHE]
    client: Any = getattr(cache, "client", None)
    if type(client) is DefaultClient:
        redis = client.get_client(write=True)
        made = client.make_key(key, version=KEY_VERSION)
        return bool(redis.eval(_DELETE_IF, 1, made, client.encode(value)))
    # Other caches have no compare-and-delete: at worst another run's lock is dropped
    # just as this one's expired, which a lock_timeout above the longest run makes moot.
    if cache.get(key, version=KEY_VERSION) == value:
        return bool(cache.delete(key, version=KEY_VERSION))
    return False


def _add(key: str, value: str, timeout: int) -> ClaimResult:
    try:
        added = caches[conf.CACHE].add(key, value, timeout=timeout, version=KEY_VERSION)
    except Exception:
        logger.warning("Could not claim %s: the cache %r failed.", key, conf.CACHE, exc_info=True)
        [result] = _confirm([key], value)
        return result
    # django-redis with IGNORE_EXCEPTIONS returns None on a connection error:
    # only a real True means this instance wrote the key.
    if added is True:
        return ClaimResult.WON
    if added is None:
        logger.warning("Could not claim %s: the cache %r returned no answer.", key, conf.CACHE)
        [result] = _confirm([key], value)
        return result
    return ClaimResult.LOST
