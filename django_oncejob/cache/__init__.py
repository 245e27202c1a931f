"""The shared cache: claims (:mod:`.claim`) and job locks (:mod:`.locks`).

Both go through the atomic writes of :mod:`.atomic`, which an adapter per cache
backend serves and checks. Adapters are imported by name when a cache's
``BACKEND`` needs one, so a project without django-redis never imports it.
"""

from __future__ import annotations

import functools
from typing import Any, cast

from django.conf import settings
from django.core import checks
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _

from django_oncejob.cache.base import CacheAdapter
from django_oncejob.messages import interpolate

#: The adapter of each cache ``BACKEND``; any other backend gets the plain :class:`CacheAdapter`.
ADAPTERS = {
    "django_redis.cache.RedisCache": "django_oncejob.cache.django_redis.DjangoRedisAdapter",
    "django.core.cache.backends.redis.RedisCache": "django_oncejob.cache.redis.RedisAdapter",
    "django.core.cache.backends.memcached.PyMemcacheCache": (
        "django_oncejob.cache.memcached.MemcachedAdapter"
    ),
    "django.core.cache.backends.memcached.PyLibMCCache": (
        "django_oncejob.cache.memcached.MemcachedAdapter"
    ),
    "django.core.cache.backends.db.DatabaseCache": "django_oncejob.cache.database.DatabaseAdapter",
    "django.core.cache.backends.dummy.DummyCache": "django_oncejob.cache.unsafe.UnsafeAdapter",
    "django.core.cache.backends.locmem.LocMemCache": "django_oncejob.cache.unsafe.UnsafeAdapter",
    "django.core.cache.backends.filebased.FileBasedCache": (
        "django_oncejob.cache.unsafe.UnsafeAdapter"
    ),
}


@functools.cache
def adapter(alias: str) -> CacheAdapter:
    """The adapter of cache ``alias``, by its ``BACKEND`` in ``CACHES``."""
    config = cast(dict[str, Any], settings.CACHES.get(alias, {}))
    backend = str(config.get("BACKEND", ""))
    if backend not in ADAPTERS:
        return CacheAdapter()
    return cast(CacheAdapter, import_string(ADAPTERS[backend])())


@receiver(setting_changed)
def _forget_adapters(**kwargs: Any) -> None:
    adapter.cache_clear()


def check(alias: object) -> list[checks.CheckMessage]:
    """What to say of ``CACHES[alias]`` as the cache that holds the claims."""
    if not isinstance(alias, str) or alias not in settings.CACHES:
        return [
            checks.Error(
                interpolate(
                    _("ONCEJOB['CACHE'] names no cache in CACHES: %(alias)s."), alias=repr(alias)
                ),
                hint=interpolate(
                    _(
                        # Translators: aliases is a list of CACHES aliases, e.g. 'default', 'redis'.
                        "Use one of %(aliases)s, pointing at a cache shared by every instance "
                        "(django-redis in production)."
                    ),
                    aliases=", ".join(map(repr, settings.CACHES)),
                ),
                id="django_oncejob.E003",
            )
        ]
    return adapter(alias).checks(alias, cast(dict[str, Any], settings.CACHES[alias]))
