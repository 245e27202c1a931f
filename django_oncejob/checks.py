"""System checks: every bad ``ONCEJOB`` setting is an error with a stable id and a hint.

``runjobs`` runs the same checks and refuses to start while any error stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

from django_oncejob import registry
from django_oncejob.conf import DEFAULTS, ON_CACHE_ERROR_CHOICES

#: Cache backends whose ``add()`` cannot coordinate separate processes.
UNSAFE_BACKENDS = {
    "django.core.cache.backends.dummy.DummyCache": "always reports a successful add",
    "django.core.cache.backends.locmem.LocMemCache": "is private to each process",
    "django.core.cache.backends.filebased.FileBasedCache": "has no atomic add",
}


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Validate the whole ``ONCEJOB`` setting."""
    raw = getattr(settings, "ONCEJOB", {})
    if not isinstance(raw, dict):
        return [
            checks.Error(
                f"The ONCEJOB setting must be a dict, got {type(raw).__name__}.",
                hint="Write ONCEJOB = {'JOBS': {...}} in your settings.",
                id="django_oncejob.E001",
            )
        ]
    errors: list[checks.CheckMessage] = []
    for key in raw:
        if key not in DEFAULTS:
            errors.append(
                checks.Error(
                    f"ONCEJOB has an unknown key {key!r}.",
                    hint=f"Valid keys are {', '.join(DEFAULTS)}.",
                    id="django_oncejob.E002",
                )
            )
    errors.extend(_check_cache(raw.get("CACHE", DEFAULTS["CACHE"])))
    timeout = raw.get("CLAIM_TIMEOUT", DEFAULTS["CLAIM_TIMEOUT"])
    timeout_ok = _whole_number(timeout, minimum=1)
    if not timeout_ok:
        errors.append(
            checks.Error(
                f"ONCEJOB['CLAIM_TIMEOUT'] must be a whole number of seconds >= 1, "
                f"got {timeout!r}.",
                hint="A claim key must outlive every instance's chance to run the occurrence; "
                "the default is 86400 (one day).",
                id="django_oncejob.E005",
            )
        )
    prefix = raw.get("KEY_PREFIX", DEFAULTS["KEY_PREFIX"])
    if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
        errors.append(
            checks.Error(
                f"ONCEJOB['KEY_PREFIX'] must be a non-empty string without spaces, got {prefix!r}.",
                hint="The default is 'oncejob'.",
                id="django_oncejob.E007",
            )
        )
    zone = raw.get("TIMEZONE")
    if zone is not None:
        try:
            if not isinstance(zone, str):
                raise ZoneInfoNotFoundError(zone)
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(
                checks.Error(
                    f"ONCEJOB['TIMEZONE'] is not a known time zone: {zone!r}.",
                    hint="Use an IANA name such as 'UTC' or 'Europe/Paris', or leave it out "
                    "to use TIME_ZONE.",
                    id="django_oncejob.E008",
                )
            )
    for key, minimum, code in (
        ("MAX_WORKERS", 1, "E009"),
        ("MISFIRE_GRACE_TIME", 1, "E013"),
    ):
        value = raw.get(key, DEFAULTS[key])
        if not _whole_number(value, minimum):
            errors.append(
                checks.Error(
                    f"ONCEJOB[{key!r}] must be a whole number >= {minimum}, got {value!r}.",
                    hint=f"The default is {DEFAULTS[key]}.",
                    id=f"django_oncejob.{code}",
                )
            )
    shutdown = raw.get("SHUTDOWN_TIMEOUT", DEFAULTS["SHUTDOWN_TIMEOUT"])
    if not isinstance(shutdown, int | float) or isinstance(shutdown, bool) or shutdown < 0:
        errors.append(
            checks.Error(
                f"ONCEJOB['SHUTDOWN_TIMEOUT'] must be a number of seconds >= 0, got {shutdown!r}.",
                hint="It bounds how long runjobs waits for running jobs on SIGTERM; "
                "the default is 30.",
                id="django_oncejob.E010",
            )
        )
    on_error = raw.get("ON_CACHE_ERROR", DEFAULTS["ON_CACHE_ERROR"])
    if on_error not in ON_CACHE_ERROR_CHOICES:
        errors.append(
            checks.Error(
                f"ONCEJOB['ON_CACHE_ERROR'] must be 'fence' or 'skip', got {on_error!r}.",
                hint="'fence' lets the history table alone decide while the cache is down; "
                "'skip' runs nothing until it is back.",
                id="django_oncejob.E011",
            )
        )
    owner = raw.get("OWNER")
    if owner is not None and (not isinstance(owner, str) or not owner or len(owner) > 255):
        errors.append(
            checks.Error(
                f"ONCEJOB['OWNER'] must be a non-empty string of at most 255 characters, "
                f"got {owner!r}.",
                hint="Leave it out to record '<host>:<pid>', or set it from the environment, "
                "e.g. os.environ['POD_NAME'].",
                id="django_oncejob.E012",
            )
        )
    jobs, job_errors = registry.parse_jobs(raw.get("JOBS", {}))
    errors.extend(job_errors)
    if timeout_ok:
        for job in jobs.values():
            if job.misfire_grace_time >= timeout:
                errors.append(
                    checks.Error(
                        f"ONCEJOB['CLAIM_TIMEOUT'] ({timeout}) must exceed the misfire grace "
                        f"time of job {job.id!r} ({job.misfire_grace_time} s, from its "
                        "'misfire_grace_time' or ONCEJOB['MISFIRE_GRACE_TIME']).",
                        hint="Otherwise a claim can expire while a late instance may still "
                        "run the occurrence. Raise CLAIM_TIMEOUT or lower the grace time.",
                        obj=f"job {job.id}",
                        id="django_oncejob.E006",
                    )
                )
    return errors


def _check_cache(alias: object) -> list[checks.CheckMessage]:
    if not isinstance(alias, str) or alias not in settings.CACHES:
        return [
            checks.Error(
                f"ONCEJOB['CACHE'] names no cache in CACHES: {alias!r}.",
                hint=f"Use one of {', '.join(map(repr, settings.CACHES))}, pointing at a "
                "cache shared by every instance (django-redis in production).",
                id="django_oncejob.E003",
            )
        ]
    config = cast(dict[str, Any], settings.CACHES[alias])
    backend = str(config.get("BACKEND", ""))
    if backend in UNSAFE_BACKENDS:
        return [
            checks.Error(
                f"ONCEJOB['CACHE'] is {alias!r}, a {backend.rsplit('.', 1)[-1]}, which "
                f"{UNSAFE_BACKENDS[backend]}: it cannot stop two instances running one "
                "occurrence.",
                hint="Point ONCEJOB['CACHE'] at a cache shared by all instances, such as "
                "'django_redis.cache.RedisCache'.",
                id="django_oncejob.E004",
            )
        ]
    return []


def _whole_number(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
