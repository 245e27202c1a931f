"""System checks: every bad ``ONCEJOB`` setting is an error with a stable id and a hint.

``runjobs`` runs the same checks and refuses to start while any error stands.
Warnings (``W0xx``) are settings that work, but leave the claims weaker than
they look; the history table still stops a second run of an occurrence.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from apscheduler.triggers.date import DateTrigger
from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from django_oncejob import registry
from django_oncejob.conf import DEFAULTS, SCHEMA, conf, number
from django_oncejob.handoff import checks as handoff_checks
from django_oncejob.messages import interpolate
from django_oncejob.spec import JobSpec

POSITIVE = number(0, exclusive=True)

#: Cache backends whose ``add()`` cannot coordinate separate processes, and why.
UNSAFE_BACKENDS = {
    "django.core.cache.backends.dummy.DummyCache": gettext_lazy(
        "ONCEJOB['CACHE'] is %(alias)s, a %(class)s, which always reports a successful add: "
        "it cannot stop two instances running one occurrence."
    ),
    "django.core.cache.backends.locmem.LocMemCache": gettext_lazy(
        "ONCEJOB['CACHE'] is %(alias)s, a %(class)s, which is private to each process: "
        "it cannot stop two instances running one occurrence."
    ),
    "django.core.cache.backends.filebased.FileBasedCache": gettext_lazy(
        "ONCEJOB['CACHE'] is %(alias)s, a %(class)s, which has no atomic add: "
        "it cannot stop two instances running one occurrence."
    ),
}
DATABASE_BACKEND = "django.core.cache.backends.db.DatabaseCache"
MEMCACHED_BACKENDS = (
    "django.core.cache.backends.memcached.PyMemcacheCache",
    "django.core.cache.backends.memcached.PyLibMCCache",
)
DJANGO_REDIS_BACKEND = "django_redis.cache.RedisCache"
DJANGO_REDIS_SHARD_CLIENT = "django_redis.client.ShardClient"
DJANGO_REDIS_SENTINEL_CLIENT = "django_redis.client.SentinelClient"
BUILTIN_REDIS_BACKEND = "django.core.cache.backends.redis.RedisCache"


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Validate the whole ``ONCEJOB`` setting."""
    raw = getattr(settings, "ONCEJOB", {})
    if not isinstance(raw, dict):
        return [
            checks.Error(
                # Translators: type is a Python type name, e.g. list.
                interpolate(
                    _("The ONCEJOB setting must be a dict, got %(type)s."), type=type(raw).__name__
                ),
                hint=_("Write ONCEJOB = {'JOBS': {...}} in your settings."),
                id="django_oncejob.E001",
            )
        ]
    jobs, job_errors = registry.settings_jobs()
    return [
        *_check_keys(raw),
        *_check_values(raw),
        *_check_cache(raw.get("CACHE", DEFAULTS["CACHE"])),
        *_check_heartbeat(raw),
        *job_errors,
        *_check_claim_timeout(raw, jobs.values()),
        *_check_past_dates(jobs.values()),
        *handoff_checks.check_jobs(jobs.values()),
    ]


def _check_keys(raw: dict[str, Any]) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for key in raw:
        if key in DEFAULTS:
            continue
        close = difflib.get_close_matches(str(key).upper(), DEFAULTS, n=1)
        if close:
            hint = _("Did you mean %(close)s? Valid keys are %(keys)s.")
        else:
            hint = _("Valid keys are %(keys)s.")
        errors.append(
            checks.Error(
                interpolate(_("ONCEJOB has an unknown key %(key)s."), key=repr(key)),
                hint=interpolate(
                    hint, close=repr(close[0]) if close else "", keys=", ".join(DEFAULTS)
                ),
                id="django_oncejob.E002",
            )
        )
    return errors


def _accepted(raw: dict[str, Any], *names: str) -> bool:
    """Whether the schema takes each of ``names`` as given (or not given)."""
    for name in names:
        valid = _SCHEMA[name].valid
        if name in raw and valid is not None and not valid(raw[name]):
            return False
    return True


_SCHEMA = {setting.name: setting for setting in SCHEMA}


def _check_values(raw: dict[str, Any]) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for setting in SCHEMA:
        if _accepted(raw, setting.name):
            continue
        params = {
            "key": repr(setting.name),
            "value": repr(raw[setting.name]),
            "zone": repr(raw[setting.name]),
            "default": setting.default,
            "minimum": setting.minimum,
        }
        errors.append(
            checks.Error(
                interpolate(setting.message, **params),
                hint=interpolate(setting.hint, **params),
                id=f"django_oncejob.{setting.id}",
            )
        )
    return errors


def _check_heartbeat(raw: dict[str, Any]) -> list[checks.CheckMessage]:
    if not _accepted(raw, "HEARTBEAT_INTERVAL", "HEARTBEAT_TIMEOUT"):
        return []  # a bad value has its own error
    interval, silence = conf.HEARTBEAT_INTERVAL, conf.HEARTBEAT_TIMEOUT
    if silence >= 2 * interval:
        return []
    return [
        checks.Error(
            interpolate(
                _(
                    "ONCEJOB['HEARTBEAT_TIMEOUT'] (%(timeout)s) must be at least twice "
                    "ONCEJOB['HEARTBEAT_INTERVAL'] (%(interval)s)."
                ),
                timeout=silence,
                interval=interval,
            ),
            hint=_(
                "Otherwise one late heartbeat makes a live instance look dead and its "
                "running jobs abandoned. The defaults are 60 and 10."
            ),
            id="django_oncejob.E016",
        )
    ]


def _check_claim_timeout(raw: dict[str, Any], jobs: Iterable[JobSpec]) -> list[checks.CheckMessage]:
    if not _accepted(raw, "CLAIM_TIMEOUT"):
        return []  # a bad CLAIM_TIMEOUT has its own error
    timeout = conf.CLAIM_TIMEOUT
    errors: list[checks.CheckMessage] = []
    for job in jobs:
        if job.misfire_grace_time < timeout:
            continue
        errors.append(
            checks.Error(
                interpolate(
                    _(
                        # Translators: timeout and grace are numbers of seconds.
                        "ONCEJOB['CLAIM_TIMEOUT'] (%(timeout)s) must exceed the misfire "
                        "grace time of job %(job)s (%(grace)s s, from its "
                        "'misfire_grace_time' or ONCEJOB['MISFIRE_GRACE_TIME'])."
                    ),
                    timeout=timeout,
                    job=repr(job.id),
                    grace=job.misfire_grace_time,
                ),
                hint=_(
                    "Otherwise a claim can expire while a late instance may still "
                    "run the occurrence. Raise CLAIM_TIMEOUT or lower the grace time."
                ),
                obj=f"job {job.id}",
                id="django_oncejob.E006",
            )
        )
    return errors


def _check_past_dates(jobs: Iterable[JobSpec]) -> list[checks.CheckMessage]:
    now = timezone.now()
    warnings: list[checks.CheckMessage] = []
    for job in jobs:
        if not job.enabled or not isinstance(job.trigger, DateTrigger):
            continue
        if job.trigger.run_date + timedelta(seconds=job.misfire_grace_time) < now:
            warnings.append(
                checks.Warning(
                    interpolate(
                        _(
                            # Translators: grace is a number of seconds.
                            "ONCEJOB['JOBS'][%(job)s]['at'] (%(at)s) is more than its misfire "
                            "grace "
                            "time (%(grace)s s) in the past: the job will never run."
                        ),
                        job=repr(job.id),
                        at=job.trigger.run_date.isoformat(),
                        grace=job.misfire_grace_time,
                    ),
                    hint=_(
                        "Set 'at' to a time to come, or 'enabled': False to keep the job "
                        "defined without scheduling it."
                    ),
                    obj=f"job {job.id}",
                    id="django_oncejob.W007",
                )
            )
    return warnings


def _check_cache(alias: object) -> list[checks.CheckMessage]:
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
    config = cast(dict[str, Any], settings.CACHES[alias])
    backend = str(config.get("BACKEND", ""))
    if backend in UNSAFE_BACKENDS:
        return [
            checks.Error(
                interpolate(
                    UNSAFE_BACKENDS[backend],
                    **{"alias": repr(alias), "class": backend.rsplit(".", 1)[-1]},
                ),
                hint=_(
                    "Point ONCEJOB['CACHE'] at a cache shared by all instances, such as "
                    "'django_redis.cache.RedisCache'."
                ),
                id="django_oncejob.E004",
            )
        ]
    where = f"CACHES[{alias!r}]"
    options = config.get("OPTIONS") or {}
    if backend == DATABASE_BACKEND:
        return [
            *_check_database_cache(alias, where),
            checks.Warning(
                interpolate(
                    _(
                        "ONCEJOB['CACHE'] is %(alias)s, a DatabaseCache: its add() is not atomic "
                        "against an expired row of the same key, and culling past MAX_ENTRIES "
                        "deletes keys that have not expired, so a claim can fail to stop a second "
                        "instance."
                    ),
                    alias=repr(alias),
                ),
                hint=interpolate(
                    _(
                        # Translators: where is the cache's setting, e.g. CACHES['default'].
                        "The history table's unique (job, scheduled_for) still stops a second run. "
                        "Set %(where)s['OPTIONS']['MAX_ENTRIES'] above the number of claims alive "
                        "at once (one per occurrence for CLAIM_TIMEOUT seconds: the default 300 is "
                        "passed within hours by one per-minute job). For claims that hold on their "
                        "own, point ONCEJOB['CACHE'] at a Redis cache."
                    ),
                    where=where,
                ),
                obj=where,
                id="django_oncejob.W001",
            ),
        ]
    if backend in MEMCACHED_BACKENDS:
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
                hint=_(
                    "The history table's unique (job, scheduled_for) still stops a second run. "
                    "For claims that hold on their own, point ONCEJOB['CACHE'] at a Redis cache "
                    "with maxmemory-policy noeviction."
                ),
                obj=where,
                id="django_oncejob.W002",
            ),
        ]
    if backend == DJANGO_REDIS_BACKEND:
        locations = _locations(config.get("LOCATION"), ",")
        pool_kwargs = options.get("CONNECTION_POOL_KWARGS") or {}
        return [
            *_check_django_redis(alias, where, options, locations),
            *_check_socket_timeout(
                alias,
                where,
                ("SOCKET_TIMEOUT", "SOCKET_CONNECT_TIMEOUT"),
                [options.get("SOCKET_TIMEOUT"), pool_kwargs.get("socket_timeout")],
                locations,
            ),
        ]
    if backend == BUILTIN_REDIS_BACKEND:
        locations = _locations(config.get("LOCATION"), ",;")
        return [
            *_check_replicas(alias, where, locations),
            *_check_socket_timeout(
                alias,
                where,
                ("socket_timeout", "socket_connect_timeout"),
                [options.get("socket_timeout")],
                locations,
            ),
        ]
    return []


def _check_django_redis(
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
                hint=_(
                    "Give ONCEJOB['CACHE'] an alias of its own in CACHES for the same Redis, "
                    "without IGNORE_EXCEPTIONS (or with 'IGNORE_EXCEPTIONS': False in its "
                    "OPTIONS)."
                ),
                obj=where,
                id="django_oncejob.W003",
            )
        )
    if options.get("CLIENT_CLASS") == DJANGO_REDIS_SENTINEL_CLIENT:
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
    if options.get("CLIENT_CLASS") == DJANGO_REDIS_SHARD_CLIENT:
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
        warnings.extend(_check_replicas(alias, where, locations))
    return warnings


def _check_database_cache(alias: str, where: str) -> list[checks.CheckMessage]:
    engine = str(settings.DATABASES.get("default", {}).get("ENGINE", ""))
    if "sqlite" not in engine:
        return []
    return [
        checks.Warning(
            interpolate(
                _(
                    "ONCEJOB['CACHE'] is %(alias)s, a DatabaseCache on SQLite: its add() answers "
                    "False, as if another instance held the claim, when SQLite says 'database is "
                    "locked', so with several instances an occurrence can run nowhere, and nothing "
                    "is logged."
                ),
                alias=repr(alias),
            ),
            hint=_("Point ONCEJOB['CACHE'] at a Redis cache, or keep a single instance."),
            obj=where,
            id="django_oncejob.W008",
        )
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


def _check_replicas(alias: str, where: str, locations: list[str]) -> list[checks.CheckMessage]:
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


def _check_socket_timeout(
    alias: str, where: str, names: tuple[str, str], values: list[Any], locations: list[str]
) -> list[checks.CheckMessage]:
    read, connect = names
    if any(POSITIVE(value) for value in values):
        return []
    # redis-py reads socket_timeout from the URL too, over OPTIONS.
    if locations and all(_url_option(url, "socket_timeout") for url in locations):
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


def _locations(location: object, separators: str) -> list[str]:
    if isinstance(location, str):
        for separator in separators[1:]:
            location = location.replace(separator, separators[0])
        return [part for part in location.split(separators[0]) if part]
    if isinstance(location, list | tuple | set):
        return [str(part) for part in location]
    return []


def _url_option(url: str, name: str) -> bool:
    values = parse_qs(urlsplit(url).query).get(name, [])
    try:
        return bool(values) and float(values[-1]) > 0
    except ValueError:
        return False
