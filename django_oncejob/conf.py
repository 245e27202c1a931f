"""Settings for django-oncejob: one schema, read from ``settings.ONCEJOB`` and validated once.

The schema says, for every key, its default, what a valid value is, and the check
id and hint that report a bad one. :mod:`django_oncejob.checks` reports from it,
:data:`conf` reads from it, and the job parser takes its project-wide defaults
from :data:`conf`, so the three cannot disagree. A value the checks reject reads
as its default here; ``runjobs`` refuses to start while any check fails.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _

from django_oncejob.messages import Text

Validator = Callable[[object], bool]


def whole_number(minimum: int) -> Validator:
    """An ``int`` (not a ``bool``) of at least ``minimum``."""
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def number(minimum: float, *, exclusive: bool = False) -> Validator:
    """An ``int`` or ``float`` (not a ``bool``) of at least ``minimum``, or above it."""
    return lambda value: (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (value > minimum if exclusive else value >= minimum)
    )


def flag(value: object) -> bool:
    return isinstance(value, bool)


def web_address(value: object) -> bool:
    """An ``http://`` or ``https://`` URL with a host."""
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def port(value: object) -> bool:
    """A TCP port number."""
    return whole_number(1)(value) and isinstance(value, int) and value <= 65535


def one_of(*choices: object) -> Validator:
    return lambda value: value in choices


def optional(validator: Validator) -> Validator:
    return lambda value: value is None or validator(value)


def time_zone(value: object) -> bool:
    """An IANA time zone name that this Python knows."""
    try:
        return isinstance(value, str) and ZoneInfo(value) is not None
    except (ZoneInfoNotFoundError, ValueError):
        return False


def text(*, max_length: int | None = None, spaces: bool = True) -> Validator:
    """A non-empty ``str``, at most ``max_length`` long, without whitespace unless ``spaces``."""
    return lambda value: (
        isinstance(value, str)
        and bool(value)
        and (max_length is None or len(value) <= max_length)
        and (spaces or not any(c.isspace() for c in value))
    )


@dataclass(frozen=True)
class Setting:
    """One key of ``ONCEJOB``: its default, and how a bad value is reported."""

    name: str
    default: Any
    #: ``None`` where a check of its own validates the value (``CACHE``, ``JOBS``).
    valid: Validator | None = None
    #: The check id of a bad value, e.g. ``"E005"``.
    id: str = ""
    #: Interpolated with ``key`` (the quoted name), ``value`` and ``zone`` (the value's repr),
    #: ``default`` and ``minimum``.
    message: Text = ""
    hint: Text = ""
    minimum: int = 1


# Translators: key is a quoted setting name, e.g. 'MAX_WORKERS'.
WHOLE_NUMBER = _("ONCEJOB[%(key)s] must be a whole number >= %(minimum)s, got %(value)s.")
THE_DEFAULT = _("The default is %(default)s.")
ON_CACHE_ERROR_CHOICES = ("fence", "skip")
#: Where a job runs: ``None`` in ``runjobs`` itself, or handed to django.tasks or Celery.
ENQUEUE_CHOICES = (None, "tasks", "celery")

SCHEMA = (
    Setting("CACHE", "default"),
    Setting(
        "CLAIM_TIMEOUT",
        86400,
        whole_number(1),
        "E005",
        _("ONCEJOB['CLAIM_TIMEOUT'] must be a whole number of seconds >= 1, got %(value)s."),
        _(
            "A claim key must outlive every instance's chance to run the occurrence; "
            "the default is 86400 (one day)."
        ),
    ),
    Setting(
        "KEY_PREFIX",
        "oncejob",
        text(spaces=False),
        "E007",
        _("ONCEJOB['KEY_PREFIX'] must be a non-empty string without spaces, got %(value)s."),
        _("The default is 'oncejob'."),
    ),
    Setting(
        "TIMEZONE",
        None,
        optional(time_zone),
        "E008",
        _("ONCEJOB['TIMEZONE'] is not a known time zone: %(zone)s."),
        _("Use an IANA name such as 'UTC' or 'Europe/Paris', or leave it out to use TIME_ZONE."),
    ),
    Setting(
        "OWNER",
        None,
        optional(text(max_length=255)),
        "E012",
        _("ONCEJOB['OWNER'] must be a non-empty string of at most 255 characters, got %(value)s."),
        _(
            "Leave it out to record '<host>:<pid>', or set it from the environment, "
            "e.g. os.environ['POD_NAME']."
        ),
    ),
    Setting("MISFIRE_GRACE_TIME", 60, whole_number(1), "E013", WHOLE_NUMBER, THE_DEFAULT),
    Setting("MAX_WORKERS", 10, whole_number(1), "E009", WHOLE_NUMBER, THE_DEFAULT),
    Setting(
        "SHUTDOWN_TIMEOUT",
        30,
        number(0),
        "E010",
        _("ONCEJOB['SHUTDOWN_TIMEOUT'] must be a number of seconds >= 0, got %(value)s."),
        _("It bounds how long runjobs waits for running jobs on SIGTERM; the default is 30."),
        minimum=0,
    ),
    Setting(
        "ON_CACHE_ERROR",
        "fence",
        one_of(*ON_CACHE_ERROR_CHOICES),
        "E011",
        _("ONCEJOB['ON_CACHE_ERROR'] must be 'fence' or 'skip', got %(value)s."),
        _(
            "'fence' lets the history table alone decide while the cache is down; "
            "'skip' runs nothing until it is back."
        ),
    ),
    Setting("HEARTBEAT_INTERVAL", 10, whole_number(1), "E014", WHOLE_NUMBER, THE_DEFAULT),
    Setting("HEARTBEAT_TIMEOUT", 60, whole_number(1), "E015", WHOLE_NUMBER, THE_DEFAULT),
    Setting("CONTROL_INTERVAL", 2, whole_number(1), "E017", WHOLE_NUMBER, THE_DEFAULT),
    Setting("MISSED_LOOKBACK", 86400, whole_number(1), "E018", WHOLE_NUMBER, THE_DEFAULT),
    Setting(
        "SWITCH_LEAD",
        10,
        whole_number(1),
        "E078",
        WHOLE_NUMBER,
        _(
            "The default is 10: a schedule changed now switches, on every instance at once, "
            "10 seconds from now. Keep it above twice CONTROL_INTERVAL."
        ),
    ),
    Setting(
        "RETENTION_DAYS",
        None,
        optional(whole_number(1)),
        "E019",
        _("ONCEJOB['RETENTION_DAYS'] must be None or a whole number of days >= 1, got %(value)s."),
        _(
            "Set how many days of history oncejob_prune keeps, e.g. 30, or None "
            "(the default) to keep it all."
        ),
    ),
    Setting(
        "ENQUEUE",
        None,
        one_of(*ENQUEUE_CHOICES),
        "E041",
        _("ONCEJOB['ENQUEUE'] must be None, 'tasks' or 'celery', got %(value)s."),
        _(
            "It is the default of each job's 'enqueue': None (the default) runs jobs "
            "in runjobs, 'tasks' hands them to django.tasks, 'celery' to Celery."
        ),
    ),
    Setting(
        "SENTRY_CRONS",
        False,
        flag,
        "E053",
        _("ONCEJOB['SENTRY_CRONS'] must be True or False, got %(value)s."),
        _(
            "True sends each occurrence's check-ins to Sentry Crons, through the sentry_sdk "
            "you initialised; a job's 'sentry': False leaves it out."
        ),
    ),
    Setting(
        "WEBHOOK",
        None,
        optional(web_address),
        "E054",
        _("ONCEJOB['WEBHOOK'] must be None or an http(s) URL, got %(value)s."),
        _(
            "Each job's start and end are POSTed there as JSON, e.g. "
            "'https://hooks.example.com/oncejob'; a job's own 'webhook' overrides it."
        ),
    ),
    Setting(
        "MONITOR_TIMEOUT",
        5,
        number(0, exclusive=True),
        "E055",
        _("ONCEJOB['MONITOR_TIMEOUT'] must be a number of seconds > 0, got %(value)s."),
        _("It bounds each ping and webhook delivery; the default is 5."),
    ),
    Setting("MONITOR_QUEUE_SIZE", 1000, whole_number(1), "E056", WHOLE_NUMBER, THE_DEFAULT),
    Setting(
        "METRICS_PORT",
        None,
        optional(port),
        "E057",
        _("ONCEJOB['METRICS_PORT'] must be None or a port number 1-65535, got %(value)s."),
        _(
            "Set the port each runjobs serves Prometheus metrics on, e.g. 9464, "
            "or None (the default) to serve none."
        ),
    ),
    Setting(
        "METRICS_ADDRESS",
        "0.0.0.0",
        text(spaces=False),
        "E058",
        _("ONCEJOB['METRICS_ADDRESS'] must be a host name or address, got %(value)s."),
        _("The default, '0.0.0.0', serves on every interface; '127.0.0.1' on this host only."),
    ),
    Setting(
        "TRACING",
        True,
        flag,
        "E059",
        _("ONCEJOB['TRACING'] must be True or False, got %(value)s."),
        _(
            "True (the default) records an OpenTelemetry span per occurrence wherever "
            "opentelemetry-api is installed; False records none."
        ),
    ),
    Setting("JOBS", {}),
)

#: Every key ``ONCEJOB`` accepts, with its default. ``None`` means "computed": see the property.
DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in SCHEMA}


def user_config() -> dict[str, Any]:
    """``settings.ONCEJOB`` as written, or ``{}`` if it is not a dict."""
    value = getattr(settings, "ONCEJOB", {})
    return value if isinstance(value, dict) else {}


@functools.cache
def get_config() -> dict[str, Any]:
    """Every key, with the user's value where the schema accepts it and the default where not."""
    given = user_config()
    return {
        setting.name: given[setting.name]
        if setting.name in given and (setting.valid is None or setting.valid(given[setting.name]))
        else setting.default
        for setting in SCHEMA
    }


@receiver(setting_changed)
def _forget_config(**kwargs: Any) -> None:
    get_config.cache_clear()


class Settings:
    @property
    def CACHE(self) -> str:
        """Alias in ``CACHES`` of the cache that holds the claims."""
        return str(get_config()["CACHE"])

    @property
    def CLAIM_TIMEOUT(self) -> int:
        """Seconds a claim key lives. Must exceed every job's misfire grace time."""
        return int(get_config()["CLAIM_TIMEOUT"])

    @property
    def KEY_PREFIX(self) -> str:
        """First part of every claim key: ``<prefix>:<job id>:<scheduled time>``."""
        return str(get_config()["KEY_PREFIX"])

    @property
    def TIMEZONE(self) -> str:
        """Time zone of cron triggers, defaulting to ``settings.TIME_ZONE``."""
        return str(get_config()["TIMEZONE"] or settings.TIME_ZONE or "UTC")

    @property
    def OWNER(self) -> str:
        """Name recorded for this instance: ``<host>:<pid>`` unless set."""
        # Not cached with the rest: a forked child has a pid of its own.
        return str(get_config()["OWNER"] or f"{socket.gethostname()}:{os.getpid()}")

    @property
    def OWNER_IS_SET(self) -> bool:
        """Whether ``OWNER`` was given, rather than computed for this process."""
        return get_config()["OWNER"] is not None

    @property
    def MISFIRE_GRACE_TIME(self) -> int:
        """Default seconds after its scheduled time that an occurrence may still start."""
        return int(get_config()["MISFIRE_GRACE_TIME"])

    @property
    def MAX_WORKERS(self) -> int:
        """Threads running jobs in one ``runjobs`` process."""
        return int(get_config()["MAX_WORKERS"])

    @property
    def SHUTDOWN_TIMEOUT(self) -> float:
        """Seconds ``runjobs`` waits for running jobs after SIGTERM or SIGINT."""
        return float(get_config()["SHUTDOWN_TIMEOUT"])

    @property
    def ON_CACHE_ERROR(self) -> str:
        """``"fence"`` (the history table alone decides) or ``"skip"`` when the cache fails."""
        return str(get_config()["ON_CACHE_ERROR"])

    @property
    def HEARTBEAT_INTERVAL(self) -> int:
        """Seconds between this instance's heartbeats in the database."""
        return int(get_config()["HEARTBEAT_INTERVAL"])

    @property
    def HEARTBEAT_TIMEOUT(self) -> int:
        """Seconds without a heartbeat after which an instance counts as gone."""
        return int(get_config()["HEARTBEAT_TIMEOUT"])

    @property
    def CONTROL_INTERVAL(self) -> int:
        """Seconds between looks at run-now requests and paused jobs in the database."""
        return int(get_config()["CONTROL_INTERVAL"])

    @property
    def SWITCH_LEAD(self) -> int:
        """Seconds from a schedule's change to the instant every instance switches to it."""
        return int(get_config()["SWITCH_LEAD"])

    @property
    def MISSED_LOOKBACK(self) -> int:
        """How far back, in seconds, an instance looks for occurrences that nobody ran."""
        return int(get_config()["MISSED_LOOKBACK"])

    @property
    def RETENTION_DAYS(self) -> int | None:
        """Days of history ``oncejob_prune`` keeps by default; ``None`` keeps it all."""
        value = get_config()["RETENTION_DAYS"]
        return None if value is None else int(value)

    @property
    def ENQUEUE(self) -> str | None:
        """Default of each job's ``enqueue``: ``None`` runs jobs in runjobs' own threads."""
        value = get_config()["ENQUEUE"]
        return None if value is None else str(value)

    @property
    def SENTRY_CRONS(self) -> bool:
        """Whether each occurrence's check-ins go to Sentry Crons."""
        return bool(get_config()["SENTRY_CRONS"])

    @property
    def WEBHOOK(self) -> str | None:
        """Default of each job's ``webhook``: where its start and end are POSTed as JSON."""
        value = get_config()["WEBHOOK"]
        return None if value is None else str(value)

    @property
    def MONITOR_TIMEOUT(self) -> float:
        """Seconds one ping or webhook delivery may take."""
        return float(get_config()["MONITOR_TIMEOUT"])

    @property
    def MONITOR_QUEUE_SIZE(self) -> int:
        """Deliveries waiting to be sent at most; more are dropped, and counted."""
        return int(get_config()["MONITOR_QUEUE_SIZE"])

    @property
    def METRICS_PORT(self) -> int | None:
        """The port each ``runjobs`` serves Prometheus metrics on; ``None``: none."""
        value = get_config()["METRICS_PORT"]
        return None if value is None else int(value)

    @property
    def METRICS_ADDRESS(self) -> str:
        """The address the metrics server listens on."""
        return str(get_config()["METRICS_ADDRESS"])

    @property
    def TRACING(self) -> bool:
        """Whether occurrences are traced with OpenTelemetry, where it is installed."""
        return bool(get_config()["TRACING"])

    @property
    def JOBS(self) -> Any:
        """The raw job definitions; :mod:`django_oncejob.jobs.registry` validates them."""
        return get_config()["JOBS"]


conf = Settings()
