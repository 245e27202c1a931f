"""A job, as validated from settings: what runs, when, and how."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from django_oncejob import handoff
from django_oncejob.jobs import triggers
from django_oncejob.jobs.policies import LOCK_LIFETIME


@dataclass(frozen=True)
class JobSpec:
    """One validated job from settings."""

    id: str
    func: str
    trigger: BaseTrigger = field(compare=False)
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    misfire_grace_time: int = 60
    enabled: bool = True
    timezone: str = "UTC"
    description: str = ""
    #: Seconds the job-wide lock of ``overlap`` ``"skip"`` or ``"buffer_one"`` lives at most;
    #: ``None``: ``max_runtime``, else an hour. Setting it alone means ``"skip"``.
    lock_timeout: int | None = None
    #: Run an occurrence again when the instance running it is found dead.
    rerun_abandoned: bool = False
    #: ``None``: run in runjobs. ``"tasks"`` or ``"celery"``: hand each occurrence to that queue.
    enqueue: str | None = None
    #: The django.tasks backend alias, with ``enqueue="tasks"``.
    backend: str = handoff.DEFAULT_TASKS_ALIAS
    #: The queue to hand occurrences to; ``None`` is the backend's default.
    queue: str | None = None
    #: A Celery task name to send instead of running ``func``, with ``enqueue="celery"``.
    task: str = ""
    #: The crontab the job was given as a string, as five fields; ``""`` for any other trigger.
    cron: str = ""
    #: Sentry Crons: ``None`` sends no check-ins, a dict adds to the monitor's
    #: ``monitor_config`` (see :mod:`django_oncejob.monitoring.sentry`).
    sentry: Mapping[str, int] | None = None
    #: A healthchecks.io-style ping URL: ``/start``, then itself or ``/fail``, each with a ``rid``.
    ping_url: str | None = None
    #: Where the job's start and end are POSTed as JSON.
    webhook: str | None = None
    #: Attempts after a failed one, each claimed once across the fleet.
    retries: int = 0
    #: Seconds from a failure to the next attempt, times ``retry_backoff`` for each retry
    #: before it.
    retry_delay: float = 10
    retry_backoff: float = 2
    #: Seconds a run may take before it counts as timed out (an async one is cancelled).
    max_runtime: int | None = None
    #: What runs of the occurrences due while every instance was down: ``"none"``,
    #: ``"latest"`` or ``"all"`` of those in the last ``catchup_window`` seconds.
    catchup: str = "none"
    catchup_window: int = 86400
    #: Seconds, at most, by which each start follows its scheduled time: the same on
    #: every instance (:func:`~django_oncejob.jobs.triggers.jitter_delay`).
    jitter: float = 0
    #: What becomes of an occurrence due while a run of the job goes on: ``"allow"``
    #: (it runs), ``"skip"``, or ``"buffer_one"`` (it waits for that run to end).
    overlap: str = "allow"
    #: Pause the job after this many failures in a row; ``None``: never.
    pause_after_failures: int | None = None
    #: Whether the admin may change its schedule, arguments and policies.
    overridable: bool = False
    #: Where its definition comes from: ``"settings"``, ``"code"`` (a ``@job``), or
    #: ``"override"`` (the admin's, on top of either).
    source: str = "settings"
    #: The definition it was parsed from.
    definition: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def lock_lifetime(self) -> int | None:
        """Seconds the job's lock lives; ``None`` for a job whose runs may overlap."""
        if self.overlap == "allow":
            return None
        return self.lock_timeout or self.max_runtime or LOCK_LIFETIME

    def retry_at(self, attempt: int, failed_at: datetime) -> datetime | None:
        """When the attempt after ``attempt`` is due, if it has one."""
        if attempt > self.retries:
            return None
        delay = self.retry_delay * self.retry_backoff ** (attempt - 1)
        return failed_at + timedelta(seconds=delay)

    def resolve(self) -> Callable[..., Any]:
        """Import the job's callable."""
        if not self.func:
            return _runs_as_celery_task
        func: Callable[..., Any] = import_string(self.func)
        return func

    @property
    def trigger_text(self) -> str:
        return triggers.describe(self.trigger)

    @property
    def target(self) -> str:
        """What an occurrence runs, and where, in words."""
        if self.task:
            return gettext("Celery task %(task)s") % {"task": repr(self.task)}
        if self.enqueue == "tasks":
            return gettext("%(func)s, handed to django.tasks backend %(backend)s") % {
                "func": self.func,
                "backend": repr(self.backend),
            }
        if self.enqueue == "celery":
            return gettext("%(func)s, handed to Celery") % {"func": self.func}
        return self.func


def _runs_as_celery_task(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("This job sends a Celery task by name; runjobs never calls it.")
