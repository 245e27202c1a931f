"""Django's own Redis cache as the claim cache, and what every Redis cache is checked for."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.core import checks
from django.core.cache import BaseCache
from django.utils.translation import gettext_lazy as _

from django_oncejob.cache.base import CacheAdapter
from django_oncejob.conf import number
from django_oncejob.messages import interpolate

POSITIVE = number(0, exclusive=True)


class RedisAdapter(CacheAdapter):
    def checks(self, alias: str, config: dict[str, Any]) -> list[checks.CheckMessage]:
        where = f"CACHES[{alias!r}]"
        options = config.get("OPTIONS") or {}
        locations = locations_of(config.get("LOCATION"), ",;")
        return [
            *check_replicas(alias, where, locations),
            *check_socket_timeout(
                alias,
                where,
                ("socket_timeout", "socket_connect_timeout"),
                [options.get("socket_timeout")],
                locations,
            ),
        ]

    def redis_clients(self, cache: BaseCache) -> list[Any]:
        return [cache._cache.get_client(write=True)]  # type: ignore[attr-defined]


def check_replicas(alias: str, where: str, locations: list[str]) -> list[checks.CheckMessage]:
    if len(locations) < 2:
        return []
    return [
        checks.Warning(
            interpolate(
                _(
                    # Translators: count is a number of Redis servers, 2 or more.
                    "ONCEJOB['CACHE'] is %(alias)s, a Redis cache with %(count)s locations: the "
                    "first is the primary, which takes every write, and reads go to the others as "
                    "read replicas. Claims and job locks are taken with add(), a write, so the "
                    "primary decides them; but a read of a claim or lock key, such as the check "
                    "before a job's lock is released, can reach a replica that does not have the "
                    "key yet."
                ),
                alias=repr(alias),
                count=len(locations),
            ),
            hint=interpolate(
                _(
                    "Set %(where)s['LOCATION'] to the primary alone, e.g. %(primary)s; if other "
                    "code needs the replicas, give ONCEJOB['CACHE'] an alias of its own."
                ),
                where=where,
                primary=repr(locations[0]),
            ),
            obj=where,
            id="django_oncejob.W005",
        )
    ]


def check_socket_timeout(
    alias: str, where: str, names: tuple[str, str], values: list[Any], locations: list[str]
) -> list[checks.CheckMessage]:
    read, connect = names
    if any(POSITIVE(value) for value in values):
        return []
    # redis-py reads socket_timeout from the URL too, over OPTIONS.
    if locations and all(url_option(url, "socket_timeout") for url in locations):
        return []
    return [
        checks.Warning(
            interpolate(
                _(
                    # Translators: read is the option's quoted name, e.g. 'SOCKET_TIMEOUT'.
                    "ONCEJOB['CACHE'] is %(alias)s, a Redis cache without a socket timeout "
                    "(%(where)s['OPTIONS'][%(read)s] is not set): a Redis that stops answering "
                    "holds each claim, and with it a worker thread and the job's next occurrences, "
                    "as long as redis-py's defaults allow: forever before redis-py 8, 5 seconds a "
                    "try with retries from redis-py 8."
                ),
                alias=repr(alias),
                where=where,
                read=repr(read),
            ),
            hint=interpolate(
                _(
                    # Translators: read and connect are the options' quoted names, e.g.
                    # 'SOCKET_TIMEOUT' and 'SOCKET_CONNECT_TIMEOUT'.
                    "Set %(where)s['OPTIONS'][%(read)s] and [%(connect)s] to a few seconds, "
                    "e.g. {%(read)s: 5, %(connect)s: 2}."
                ),
                where=where,
                read=repr(read),
                connect=repr(connect),
            ),
            obj=where,
            id="django_oncejob.W006",
        )
    ]


def locations_of(location: object, separators: str) -> list[str]:
    if isinstance(location, str):
        for separator in separators[1:]:
            location = location.replace(separator, separators[0])
        return [part for part in location.split(separators[0]) if part]
    if isinstance(location, list | tuple | set):
        return [str(part) for part in location]
    return []


def url_option(url: str, name: str) -> bool:
    values = parse_qs(urlsplit(url).query).get(name, [])
    try:
        return bool(values) and float(values[-1]) > 0
    except ValueError:
        return False
