"""Caches whose ``add()`` cannot coordinate separate processes: refused."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.utils.translation import gettext_lazy as _

from django_oncejob.cache.base import CacheAdapter
from django_oncejob.messages import interpolate

#: Why each of these backends cannot hold a claim.
REASONS = {
    "django.core.cache.backends.dummy.DummyCache": _(
        "ONCEJOB['CACHE'] is %(alias)s, a %(class)s, which always reports a successful add: "
        "it cannot stop two instances running one occurrence."
    ),
    "django.core.cache.backends.locmem.LocMemCache": _(
        "ONCEJOB['CACHE'] is %(alias)s, a %(class)s, which is private to each process: "
        "it cannot stop two instances running one occurrence."
    ),
    "django.core.cache.backends.filebased.FileBasedCache": _(
        "ONCEJOB['CACHE'] is %(alias)s, a %(class)s, which has no atomic add: "
        "it cannot stop two instances running one occurrence."
    ),
}


class UnsafeAdapter(CacheAdapter):
    def checks(self, alias: str, config: dict[str, Any]) -> list[checks.CheckMessage]:
        backend = str(config.get("BACKEND", ""))
        return [
            checks.Error(
                interpolate(
                    REASONS[backend],
                    **{"alias": repr(alias), "class": backend.rsplit(".", 1)[-1]},
                ),
                hint=interpolate(
                    _(
                        "Point ONCEJOB['CACHE'] at a cache shared by all instances, such as "
                        "'django_redis.cache.RedisCache'."
                    )
                ),
                id="django_oncejob.E004",
            )
        ]
