"""The claim cache's atomic writes, which every claim and lock goes through.

Each answers ``True`` when this call wrote the key, ``False`` when another value
holds it, and ``None`` when the cache gave no answer that says which: the
caller decides what an unknown answer means.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from django.core.cache import caches
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_oncejob.cache import adapter
from django_oncejob.conf import conf

logger = logging.getLogger("django_oncejob")

#: Passed explicitly so that bumping the project's cache VERSION cannot change our keys.
KEY_VERSION = 1
#: Seconds between the counts logged while the cache keeps failing.
OUTAGE_REPORT_INTERVAL = 10.0


class Outage:
    """Logs a failing cache once when it starts failing, a count while it lasts, and once
    when it answers again, rather than a warning and a traceback per claim."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None
        self.failures = 0
        self._reported = 0.0

    def failed(self, message: str, *args: object, exc_info: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            first = self.since is None
            if first:
                self.since = now
            self.failures += 1
            due = not first and now - self._reported >= OUTAGE_REPORT_INTERVAL
            if first or due:
                self._reported = now
            failures, since = self.failures, self.since or now
        if first:
            logger.warning(message, *args, exc_info=exc_info)
        elif due:
            logger.warning(
                "The cache %r is still failing: %d claims failed in %.0f s.",
                conf.CACHE,
                failures,
                now - since,
            )

    def answered(self) -> None:
        if self.since is None:  # the usual case: no lock taken
            return
        with self._lock:
            if self.since is None:
                return
            failures, lasted = self.failures, time.monotonic() - self.since
            self.since, self.failures = None, 0
        logger.warning(
            "The cache %r answers again, after %d failed claims in %.1f s.",
            conf.CACHE,
            failures,
            lasted,
        )


outage = Outage()


@receiver(setting_changed)
def _forget_outage(**kwargs: Any) -> None:
    # Another cache, in tests: its first failure is the start of an outage of its own.
    outage.since, outage.failures = None, 0


def add(key: str, value: str, timeout: int) -> bool | None:
    """Write ``key`` unless it exists, for ``timeout`` seconds."""
    try:
        added = caches[conf.CACHE].add(key, value, timeout=timeout, version=KEY_VERSION)
    except Exception:
        outage.failed("Could not claim %s: the cache %r failed.", key, conf.CACHE, exc_info=True)
        [result] = confirm([key], value)
        return result
    # django-redis with IGNORE_EXCEPTIONS returns None on a connection error:
    # only a real True means this call wrote the key.
    if added is None:
        outage.failed("Could not claim %s: the cache %r returned no answer.", key, conf.CACHE)
        [result] = confirm([key], value)
        return result
    outage.answered()
    return added is True


def add_many(keys: Sequence[str], value: str, timeout: int) -> list[bool | None]:
    """:func:`add` of each key, in one round trip where the cache's adapter can."""
    try:
        replies = None
        if len(keys) > 1:
            replies = adapter(conf.CACHE).add_many(
                caches[conf.CACHE], keys, value, timeout, KEY_VERSION
            )
    except Exception:
        outage.failed(
            "Could not claim %d occurrences: the cache %r failed.",
            len(keys),
            conf.CACHE,
            exc_info=True,
        )
        return confirm(keys, value)
    if replies is None:
        return [add(key, value, timeout) for key in keys]
    results: list[bool | None] = []
    for key, reply in zip(keys, replies, strict=True):
        if isinstance(reply, Exception):
            outage.failed("Could not claim %s: %s", key, reply)
            results.append(None)
        else:
            results.append(bool(reply))
    if None not in results:
        outage.answered()
    unknown = [i for i, result in enumerate(results) if result is None]
    for i, result in zip(unknown, confirm([keys[i] for i in unknown], value), strict=True):
        results[i] = result
    return results


def confirm(keys: Sequence[str], value: str) -> list[bool | None]:
    """What writes whose answer was lost came to: the cache may have applied them all the same.

    A key that holds ``value`` was written by this caller; one that holds another
    value was taken; no key, or no answer again, stays unknown.
    """
    if not keys:
        return []
    try:
        found = caches[conf.CACHE].get_many(list(keys), version=KEY_VERSION)
    except Exception:
        return [None] * len(keys)
    return [None if found.get(key) is None else found[key] == value for key in keys]


def get(key: str) -> object | None:
    """The value of ``key``, ``None`` if there is none, or no answer."""
    try:
        value: object | None = caches[conf.CACHE].get(key, version=KEY_VERSION)
    except Exception:
        return None
    return value


def delete_if(key: str, value: str) -> bool:
    """Delete ``key`` only while it holds ``value``; ``True`` if this call did. May raise."""
    return adapter(conf.CACHE).delete_if(caches[conf.CACHE], key, value, KEY_VERSION)
