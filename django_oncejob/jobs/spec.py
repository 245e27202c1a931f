"""A job, as validated from settings: what runs, when, and how."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from django_oncejob import handoff
from django_oncejob.jobs import triggers


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
    #: Seconds a job-wide lock lives while a run is going: no overlapping runs. ``None``: off.
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
