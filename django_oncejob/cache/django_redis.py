"""django-redis as the claim cache: what it is built for.

On django-redis's default client, claims go out pipelined and a lock is released
by a compare-and-delete script; its other clients are warned about.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.cache import BaseCache
from django.utils.translation import gettext_lazy as _
from django_redis.client import DefaultClient, ShardClient

from django_oncejob.cache.base import CacheAdapter
from django_oncejob.cache.redis import check_replicas, check_socket_timeout, locations_of
from django_oncejob.messages import interpolate

SHARD_CLIENT = "django_redis.client.ShardClient"
SENTINEL_CLIENT = "django_redis.client.SentinelClient"
#: Deletes KEYS[1] only while it holds ARGV[1], in one atomic step.
DELETE_IF = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class DjangoRedisAdapter(CacheAdapter):
    def checks(self, alias: str, config: dict[str, Any]) -> list[checks.CheckMessage]:
        where = f"CACHES[{alias!r}]"
        options = config.get("OPTIONS") or {}
        locations = locations_of(config.get("LOCATION"), ",")
        pool_kwargs = options.get("CONNECTION_POOL_KWARGS") or {}
        return [
            *_check_client(alias, where, options, locations),
            *check_socket_timeout(
                alias,
                where,
                ("SOCKET_TIMEOUT", "SOCKET_CONNECT_TIMEOUT"),
                [options.get("SOCKET_TIMEOUT"), pool_kwargs.get("socket_timeout")],
                locations,
            ),
        ]

    def add_many(
        self, cache: BaseCache, keys: Sequence[str], value: str, timeout: int, version: int
    ) -> list[object] | None:
        client: Any = getattr(cache, "client", None)
        # Subclasses may store or shard keys differently (HerdClient, ShardClient): only
        # the default client is known to write what a pipelined SET writes.
        if type(client) is not DefaultClient:
            return None
        # The same SET NX PX that cache.add sends, one per key, in one round trip.
        encoded = client.encode(value)
        pipeline = client.get_client(write=True).pipeline(transaction=False)
        for key in keys:
            made = client.make_key(key, version=version)
            pipeline.set(made, encoded, nx=True, px=timeout * 1000)
        replies: list[object] = pipeline.execute(raise_on_error=False)
        return replies

    def delete_if(self, cache: BaseCache, key: str, value: str, version: int) -> bool:
        client: Any = getattr(cache, "client", None)
        if type(client) is not DefaultClient:
            return super().delete_if(cache, key, value, version)
        redis = client.get_client(write=True)
        made = client.make_key(key, version=version)
        return bool(redis.eval(DELETE_IF, 1, made, client.encode(value)))

    def redis_clients(self, cache: BaseCache) -> list[Any]:
        client: Any = getattr(cache, "client", None)
        if isinstance(client, ShardClient):
            return list(client._serverdict.values())
        return [client.get_client(write=True)]


def _check_client(
    alias: str, where: str, options: dict[str, Any], locations: list[str]
) -> list[checks.CheckMessage]:
    warnings: list[checks.CheckMessage] = []
    # As django-redis does: the option wins over the project-wide setting.
    if "IGNORE_EXCEPTIONS" in options:
        ignore, source = options["IGNORE_EXCEPTIONS"], f"{where}['OPTIONS']['IGNORE_EXCEPTIONS']"
    else:
        ignore = getattr(settings, "DJANGO_REDIS_IGNORE_EXCEPTIONS", False)
        source = "settings.DJANGO_REDIS_IGNORE_EXCEPTIONS"
    if ignore:
        warnings.append(
            checks.Warning(
                interpolate(
                    _(
                        # Translators: source is the setting that turns the option on, e.g.
                        # settings.DJANGO_REDIS_IGNORE_EXCEPTIONS.
                        "ONCEJOB['CACHE'] is %(alias)s, a django-redis cache with %(source)s set: "
                        "a "
                        "Redis that fails then answers None instead of raising. A claim counts "
                        "that "
                        "as the cache being unavailable (ON_CACHE_ERROR applies), but the error is "
                        "hidden, and a failed read looks like a missing key."
                    ),
                    alias=repr(alias),
                    source=source,
                ),
                hint=interpolate(
                    _(
                        "Give ONCEJOB['CACHE'] an alias of its own in CACHES for the same Redis, "
                        "without IGNORE_EXCEPTIONS (or with 'IGNORE_EXCEPTIONS': False in its "
                        "OPTIONS)."
                    )
                ),
                obj=where,
                id="django_oncejob.W003",
            )
        )
    if options.get("CLIENT_CLASS") == SENTINEL_CLIENT:
        warnings.append(
            checks.Warning(
                interpolate(
                    _(
                        "ONCEJOB['CACHE'] is %(alias)s, a django-redis cache with the "
                        "SentinelClient, which sends reads to replicas. Claims and job locks are "
                        "writes, decided by the primary; but the read before a job's lock is "
                        "released can reach a replica that does not have the lock yet, which then "
                        "only expires."
                    ),
                    alias=repr(alias),
                ),
                hint=interpolate(
                    _(
                        "Drop %(where)s['OPTIONS']['CLIENT_CLASS'] and keep the Sentinel "
                        "connection "
                        "factory (django_redis.pool.SentinelConnectionFactory): the default client "
                        "then talks to the primary only."
                    ),
                    where=where,
                ),
                obj=where,
                id="django_oncejob.W010",
            )
        )
    if options.get("CLIENT_CLASS") == SHARD_CLIENT:
        warnings.append(
            checks.Warning(
                interpolate(
                    _(
                        "ONCEJOB['CACHE'] is %(alias)s, a django-redis cache with the ShardClient: "
                        "each claim key lives on the server that a hash of the key picks among the "
                        "LOCATION strings, so instances whose LOCATION lists differ, or a server "
                        "added or removed, look for one claim on different servers; and a server "
                        "that is down fails every claim that hashes to it."
                    ),
                    alias=repr(alias),
                ),
                hint=interpolate(
                    _(
                        "Point ONCEJOB['CACHE'] at one Redis server (no "
                        "%(where)s['OPTIONS']['CLIENT_CLASS']), or give every instance the very "
                        "same LOCATION list and never change it while claims live."
                    ),
                    where=where,
                ),
                obj=where,
                id="django_oncejob.W004",
            )
        )
    else:
        warnings.extend(check_replicas(alias, where, locations))
    return warnings
