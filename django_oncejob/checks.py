"""System checks: every bad ``ONCEJOB`` setting is an error with a stable id and a hint.

``runjobs`` runs the same checks and refuses to start while any error stands.
Warnings (``W0xx``) are settings that work, but leave the claims weaker than
they look; the history table still stops a second run of an occurrence.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from apscheduler.triggers.date import DateTrigger
from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.utils import timezone
from django.utils.translation import gettext as _

from django_oncejob import cache
from django_oncejob.conf import DEFAULTS, SCHEMA, conf
from django_oncejob.handoff import checks as handoff_checks
from django_oncejob.jobs import registry
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.messages import interpolate
from django_oncejob.monitoring import checks as monitoring_checks


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
                hint=interpolate(_("Write ONCEJOB = {'JOBS': {...}} in your settings.")),
                id="django_oncejob.E001",
            )
        ]
    jobs, job_errors = registry.parsed_jobs()
    return [
        *_check_use_tz(),
        *_check_keys(raw),
        *_check_values(raw),
        *cache.check(raw.get("CACHE", DEFAULTS["CACHE"])),
        *_check_heartbeat(raw),
        *_check_switch_lead(raw),
        *job_errors,
        *_check_claim_timeout(raw, jobs.values()),
        *_check_past_dates(jobs.values()),
        *handoff_checks.check_jobs(jobs.values()),
        *monitoring_checks.check(jobs.values()),
    ]


def _check_use_tz() -> list[checks.CheckMessage]:
    if settings.USE_TZ:
        return []
    return [
        checks.Error(
            _(
                "django-oncejob needs USE_TZ = True: occurrences, heartbeats and the history "
                "are aware datetimes, compared across instances in UTC."
            ),
            hint=_(
                "Set USE_TZ = True in your settings (Django's default from 5.0); Django's "
                "time zone documentation says what else it changes in a project."
            ),
            id="django_oncejob.E052",
        )
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
            hint=interpolate(
                _(
                    "Otherwise one late heartbeat makes a live instance look dead and its "
                    "running jobs abandoned. The defaults are 60 and 10."
                )
            ),
            id="django_oncejob.E016",
        )
    ]


def _check_switch_lead(raw: dict[str, Any]) -> list[checks.CheckMessage]:
    if not _accepted(raw, "SWITCH_LEAD", "CONTROL_INTERVAL"):
        return []  # a bad value has its own error
    lead, interval = conf.SWITCH_LEAD, conf.CONTROL_INTERVAL
    if lead >= 2 * interval:
        return []
    return [
        checks.Warning(
            interpolate(
                _(
                    "ONCEJOB['SWITCH_LEAD'] (%(lead)s) is less than twice "
                    "ONCEJOB['CONTROL_INTERVAL'] (%(interval)s): an instance may read a "
                    "changed schedule only after the others have switched to it."
                ),
                lead=lead,
                interval=interval,
            ),
            hint=interpolate(_("Raise SWITCH_LEAD; the defaults are 10 and 2.")),
            id="django_oncejob.W013",
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
                hint=interpolate(
                    _(
                        "Otherwise a claim can expire while a late instance may still "
                        "run the occurrence. Raise CLAIM_TIMEOUT or lower the grace time."
                    )
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
                    hint=interpolate(
                        _(
                            "Set 'at' to a time to come, or 'enabled': False to keep the job "
                            "defined without scheduling it."
                        )
                    ),
                    obj=f"job {job.id}",
                    id="django_oncejob.W007",
                )
            )
    return warnings
