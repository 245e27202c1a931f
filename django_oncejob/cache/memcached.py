"""Memcached as the claim cache: works, with warnings."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.utils.translation import gettext_lazy as _

from django_oncejob.cache.base import CacheAdapter
from django_oncejob.messages import interpolate


class MemcachedAdapter(CacheAdapter):
    def checks(self, alias: str, config: dict[str, Any]) -> list[checks.CheckMessage]:
        where = f"CACHES[{alias!r}]"
        backend = str(config.get("BACKEND", ""))
        options = config.get("OPTIONS") or {}
        return [
            *_check_pymemcache(alias, where, backend, options),
            checks.Warning(
                interpolate(
                    _(
                        # Translators: class is the cache backend's class, e.g. PyMemcacheCache.
                        "ONCEJOB['CACHE'] is %(alias)s, a %(class)s: Memcached evicts keys under "
                        "memory pressure before they expire and keeps nothing across a restart, so "
                        "a claim can vanish while a late instance may still run the occurrence."
                    ),
                    **{"alias": repr(alias), "class": backend.rsplit(".", 1)[-1]},
                ),
                hint=interpolate(
                    _(
                        "The history table's unique (job, scheduled_for) still stops a second run. "
                        "For claims that hold on their own, point ONCEJOB['CACHE'] at a Redis "
                        "cache "
                        "with maxmemory-policy noeviction."
                    )
                ),
                obj=where,
                id="django_oncejob.W002",
            ),
        ]


def _check_pymemcache(
    alias: str, where: str, backend: str, options: dict[str, Any]
) -> list[checks.CheckMessage]:
    if not backend.endswith("PyMemcacheCache") or options.get("retry_attempts") == 0:
        return []
    return [
        checks.Warning(
            interpolate(
                _(
                    "ONCEJOB['CACHE'] is %(alias)s, a PyMemcacheCache without "
                    "%(where)s['OPTIONS']['retry_attempts'] set to 0: while a memcached server is "
                    "down, pymemcache's client answers add() with False instead of an error, so a "
                    "claim looks lost to another instance, the occurrence runs nowhere, and "
                    "nothing "
                    "is logged."
                ),
                alias=repr(alias),
                where=where,
            ),
            hint=interpolate(
                _(
                    "Set %(where)s['OPTIONS'] to include 'retry_attempts': 0 (and e.g. "
                    "'dead_timeout': 1), so that a dead server raises and ON_CACHE_ERROR applies."
                ),
                where=where,
            ),
            obj=where,
            id="django_oncejob.W009",
        )
    ]
