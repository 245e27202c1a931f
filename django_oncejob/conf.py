"""Settings for django-oncejob, read from ``settings.ONCEJOB`` each time they are used."""

from __future__ import annotations

import os
import socket
from typing import Any

from django.conf import settings

#: Every key ``ONCEJOB`` accepts, with its default. ``None`` means "computed": see the property.
DEFAULTS: dict[str, Any] = {
    "CACHE": "default",
    "CLAIM_TIMEOUT": 86400,
    "KEY_PREFIX": "oncejob",
    "TIMEZONE": None,
    "OWNER": None,
    "MISFIRE_GRACE_TIME": 60,
    "MAX_WORKERS": 10,
    "SHUTDOWN_TIMEOUT": 30,
    "ON_CACHE_ERROR": "fence",
    "HEARTBEAT_INTERVAL": 10,
    "HEARTBEAT_TIMEOUT": 60,
    "CONTROL_INTERVAL": 2,
    "MISSED_LOOKBACK": 86400,
    "RETENTION_DAYS": None,
    "ENQUEUE": None,
    "JOBS": {},
}

ON_CACHE_ERROR_CHOICES = ("fence", "skip")
#: Where a job runs: ``None`` in ``runjobs`` itself, or handed to django.tasks or Celery.
ENQUEUE_CHOICES = (None, "tasks", "celery")


def user_config() -> dict[str, Any]:
    value = getattr(settings, "ONCEJOB", {})
    return value if isinstance(value, dict) else {}


def _get(name: str) -> Any:
    return user_config().get(name, DEFAULTS[name])


class Settings:
    @property
    def CACHE(self) -> str:
        """Alias in ``CACHES`` of the cache that holds the claims."""
        return str(_get("CACHE"))

    @property
    def CLAIM_TIMEOUT(self) -> int:
        """Seconds a claim key lives. Must exceed every job's misfire grace time."""
        return int(_get("CLAIM_TIMEOUT"))

    @property
    def KEY_PREFIX(self) -> str:
        """First part of every claim key: ``<prefix>:<job id>:<scheduled time>``."""
        return str(_get("KEY_PREFIX"))

    @property
    def TIMEZONE(self) -> str:
        """Time zone of cron triggers, defaulting to ``settings.TIME_ZONE``."""
        return str(_get("TIMEZONE") or settings.TIME_ZONE or "UTC")

    @property
    def OWNER(self) -> str:
        """Name recorded for this instance: ``<host>:<pid>`` unless set."""
        return str(_get("OWNER") or f"{socket.gethostname()}:{os.getpid()}")

    @property
    def MISFIRE_GRACE_TIME(self) -> int:
        """Default seconds after its scheduled time that an occurrence may still start."""
        return int(_get("MISFIRE_GRACE_TIME"))

    @property
    def MAX_WORKERS(self) -> int:
        """Threads running jobs in one ``runjobs`` process."""
        return int(_get("MAX_WORKERS"))

    @property
    def SHUTDOWN_TIMEOUT(self) -> float:
        """Seconds ``runjobs`` waits for running jobs after SIGTERM or SIGINT."""
        return float(_get("SHUTDOWN_TIMEOUT"))

    @property
    def ON_CACHE_ERROR(self) -> str:
        """``"fence"`` (the history table alone decides) or ``"skip"`` when the cache fails."""
        return str(_get("ON_CACHE_ERROR"))

    @property
    def HEARTBEAT_INTERVAL(self) -> int:
        """Seconds between this instance's heartbeats in the database."""
        return int(_get("HEARTBEAT_INTERVAL"))

    @property
    def HEARTBEAT_TIMEOUT(self) -> int:
        """Seconds without a heartbeat after which an instance counts as gone."""
        return int(_get("HEARTBEAT_TIMEOUT"))

    @property
    def CONTROL_INTERVAL(self) -> int:
        """Seconds between looks at run-now requests and paused jobs in the database."""
        return int(_get("CONTROL_INTERVAL"))

    @property
    def MISSED_LOOKBACK(self) -> int:
        """How far back, in seconds, an instance looks for occurrences that nobody ran."""
        return int(_get("MISSED_LOOKBACK"))

    @property
    def RETENTION_DAYS(self) -> int | None:
        """Days of history ``oncejob_prune`` keeps by default; ``None`` keeps it all."""
        value = _get("RETENTION_DAYS")
        return None if value is None else int(value)

    @property
    def ENQUEUE(self) -> str | None:
        """Default of each job's ``enqueue``: ``None`` runs jobs in runjobs' own threads."""
        value = _get("ENQUEUE")
        return None if value is None else str(value)

    @property
    def JOBS(self) -> Any:
        """The raw job definitions; :mod:`django_oncejob.registry` validates them."""
        return _get("JOBS")


conf = Settings()
