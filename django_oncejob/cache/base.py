"""What django-oncejob needs of a cache beyond Django's API, and its checks of one.

Each kind of cache has an adapter here, chosen by its ``BACKEND`` (see
:func:`django_oncejob.cache.adapter`). The base does everything with Django's own
cache API; an adapter overrides what its client can do better or must check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core import checks
from django.core.cache import BaseCache


class CacheAdapter:
    """Any Django cache whose ``add()`` is atomic across processes."""

    def checks(self, alias: str, config: dict[str, Any]) -> list[checks.CheckMessage]:
        """What to say of ``CACHES[alias]`` (``config``) as the claim cache."""
        return []

    def add_many(
        self, cache: BaseCache, keys: Sequence[str], value: str, timeout: int, version: int
    ) -> list[object] | None:
        """Each key's answer to an atomic add, in one round trip; ``None``: one ``add()`` each.

        An answer is truthy when the key was written, falsy when it was taken, or the
        exception that kept it from being tried.
        """
        return None

    def delete_if(self, cache: BaseCache, key: str, value: str, version: int) -> bool:
        """Delete ``key`` only while it holds ``value``; ``True`` if this call did."""
        # Without a compare-and-delete, at worst another run's lock is dropped just as
        # this one's expired, which a lock_timeout above the longest run makes moot.
        if cache.get(key, version=version) == value:
            return bool(cache.delete(key, version=version))
        return False

    def redis_clients(self, cache: BaseCache) -> list[Any]:
        """The redis-py clients of every server the cache writes to; none if not Redis."""
        return []
