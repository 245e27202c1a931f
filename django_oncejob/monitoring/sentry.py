"""Sentry Crons check-ins: ``in_progress`` at each start, then ``ok`` or ``error``.

They go through the ``sentry_sdk`` the project initialised, whose own background
transport delivers them; what it loses (the network, a full queue, a rate limit)
is counted as failed deliveries of the ``sentry`` monitor.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from datetime import timedelta
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from apscheduler.triggers.cron import CronTrigger
from django.utils.text import slugify

from django_oncejob.conf import conf
from django_oncejob.jobs.triggers import AnchoredIntervalTrigger
from django_oncejob.monitoring.sender import sender

if TYPE_CHECKING:
    from django_oncejob.jobs.spec import JobSpec
    from django_oncejob.monitoring.watch import Watch

logger = logging.getLogger("django_oncejob")

#: Sentry's interval units, largest first.
UNITS = (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60))
#: Sentry's longest monitor slug.
SLUG_LENGTH = 50


def enabled() -> bool:
    return conf.SENTRY_CRONS and find_spec("sentry_sdk") is not None


@functools.lru_cache(maxsize=4096)
def monitor_slug(job_id: str) -> str:
    """The job's monitor in Sentry: its id, lowercased and slugified as Sentry's own are."""
    return slugify(job_id)[:SLUG_LENGTH] or "oncejob"


def monitor_config(job: JobSpec) -> dict[str, Any]:
    """The monitor Sentry creates or updates from a check-in: the job's own schedule.

    ``schedule`` is left out where Sentry cannot take the job's trigger: an interval
    that is not whole minutes, a cron dict with seconds or years, or a one-off date.
    """
    config: dict[str, Any] = {
        "timezone": job.timezone,
        "checkin_margin": max(1, math.ceil(job.misfire_grace_time / 60)),
    }
    schedule = _schedule(job)
    if schedule is not None:
        config["schedule"] = schedule
    config.update(job.sentry or {})
    return config


def _schedule(job: JobSpec) -> dict[str, Any] | None:
    if job.cron:
        return {"type": "crontab", "value": job.cron}
    trigger = job.trigger
    if isinstance(trigger, CronTrigger):
        crontab = _crontab(trigger)
        return None if crontab is None else {"type": "crontab", "value": crontab}
    if isinstance(trigger, AnchoredIntervalTrigger):
        seconds = trigger.interval // timedelta(seconds=1)
        if trigger.interval != timedelta(seconds=seconds):
            return None
        for unit, length in UNITS:
            if seconds % length == 0:
                return {"type": "interval", "value": seconds // length, "unit": unit}
    return None


#: A crontab field as APScheduler writes it back: numbers, ranges, steps and lists.
_NUMBERS = re.compile(r"^[0-9*,/-]+$")
#: Days of the week by name, which crontab reads as APScheduler does (its numbers start on Monday).
_DAY_NAMES = re.compile(r"^(\*|[a-z]{3}([,-][a-z]{3})*)$")


def _crontab(trigger: CronTrigger) -> str | None:
    """A cron dict's five crontab fields, if it fires on whole minutes and crontab can say it."""
    fields = {field.name: str(field) for field in trigger.fields}
    if fields["second"] != "0" or fields["year"] != "*" or fields["week"] != "*":
        return None
    names = ("minute", "hour", "day", "month")
    if not all(_NUMBERS.match(fields[name]) for name in names):
        return None
    if not _DAY_NAMES.match(fields["day_of_week"]):
        return None
    return " ".join([*(fields[name] for name in names), fields["day_of_week"]])


class SentryCrons:
    """Sends each occurrence's check-ins with an id derived from the occurrence."""

    def __init__(self) -> None:
        import sentry_sdk

        client = sentry_sdk.get_client()
        if not client.is_active():
            logger.warning(
                "ONCEJOB['SENTRY_CRONS'] is True, but sentry_sdk.init() has not been called "
                "in this process: no check-in goes out."
            )
        # Each job's, made once: the settings that make them live as long as this monitor.
        self._configs: dict[str, dict[str, Any]] = {}

    def started(self, watch: Watch) -> None:
        if watch.job.sentry is None or watch.handed_off:
            return  # runjobs sent the start of a handed-off occurrence
        self._send(watch, "in_progress")

    def ended(self, watch: Watch) -> None:
        if watch.job.sentry is None or watch.status == "enqueued":
            return  # the worker sends the end
        status = "ok" if watch.status == "succeeded" else "error"
        self._send(watch, status, watch.duration)

    def _send(self, watch: Watch, status: str, duration: float | None = None) -> None:
        import sentry_sdk
        from sentry_sdk.crons import capture_checkin

        def deliver() -> None:
            job = watch.job
            config = self._configs.get(job.id)
            if config is None:
                config = self._configs[job.id] = monitor_config(job)
            _count_losses(sentry_sdk.get_client())
            capture_checkin(
                monitor_slug=monitor_slug(job.id),
                check_in_id=watch.check_in_id,
                status=status,
                duration=duration,
                monitor_config=config,  # type: ignore[arg-type]
            )

        sender().send("sentry", deliver)


def _count_losses(client: Any) -> None:
    """Count the check-ins sentry_sdk's transport drops, once per transport."""
    transport = getattr(client, "transport", None)
    record = getattr(transport, "record_lost_event", None)
    if record is None or getattr(record, "oncejob_counts", False):
        return

    def record_lost_event(
        reason: str, data_category: Any = None, item: Any = None, **options: Any
    ) -> Any:
        if data_category == "monitor" or getattr(item, "type", None) == "check_in":
            sender().failed("sentry")
        return record(reason, data_category, item, **options)

    record_lost_event.oncejob_counts = True  # type: ignore[attr-defined]
    setattr(transport, "record_lost_event", record_lost_event)  # noqa: B010
