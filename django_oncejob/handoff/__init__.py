"""A handed-off occurrence as it travels from ``runjobs`` to a task worker.

The claim and the history row decide which one instance has an occurrence, as
for any job; that instance then sends it to the job's task queue
(:mod:`django_oncejob.handoff.enqueue`), and a worker receives it
(:mod:`django_oncejob.handoff.worker`). Both sides read what travels from here: the task's
arguments and headers, and the task ids.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.util import find_spec
from typing import Any

from django_oncejob.cache.claim import claim_key

#: The tasks framework, by preference: Django's own (6.0+), then the django-tasks backport.
TASKS_MODULES = ("django.tasks", "django_tasks")
#: django.tasks' name for the backend and the queue a task uses unless told otherwise.
DEFAULT_TASKS_ALIAS = DEFAULT_TASKS_QUEUE = "default"

#: The name oncejob's own Celery task is registered under, in :mod:`django_oncejob.tasks`.
CELERY_TASK_NAME = "django_oncejob.run_handed_off"
#: Headers of every Celery task oncejob sends: the occurrence, and its history row.
HEADER_JOB = "oncejob_job"
HEADER_SCHEDULED_FOR = "oncejob_scheduled_for"
HEADER_RUN = "oncejob_run"
#: The trace context (W3C ``traceparent``, ...) of the span that handed the occurrence off.
HEADER_TRACE = "oncejob_trace"
#: Namespace of the Celery task ids, which are derived from the claim key.
TASK_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://django-oncejob.readthedocs.io/")


@dataclass(frozen=True)
class HandedOff:
    """An occurrence as a worker receives it."""

    #: The job id, the key in ``ONCEJOB["JOBS"]``.
    job: str
    #: The scheduled fire time, an aware datetime in UTC.
    scheduled_for: datetime
    #: The primary key of its history row, or ``None`` if the database could not record it.
    run_id: int | None
    #: The trace context to continue in the worker; empty without tracing.
    trace: Mapping[str, str] = field(default_factory=dict)


def celery_task_id(handed: HandedOff, attempt: int) -> str:
    """The same id for every send of one attempt of an occurrence, so a duplicate shows."""
    key = claim_key(handed.job, handed.scheduled_for)
    return str(uuid.uuid5(TASK_ID_NAMESPACE, f"{key}#{attempt}"))


def headers(handed: HandedOff) -> dict[str, Any]:
    """The headers that tell a worker which occurrence, and which row, a task is."""
    values: dict[str, Any] = {
        HEADER_JOB: handed.job,
        HEADER_SCHEDULED_FOR: handed.scheduled_for.isoformat(),
        HEADER_RUN: handed.run_id,
    }
    if handed.trace:
        values[HEADER_TRACE] = dict(handed.trace)
    return values


def occurrence_from_headers(values: Mapping[str, Any] | None) -> HandedOff | None:
    """The occurrence a Celery task was sent for, from its headers; ``None`` if not sent by oncejob.

    Pass ``self.request.headers`` in a bound task.
    :func:`django_oncejob.handoff.worker.occurrence_task` does this for you, and runs
    the task once per occurrence.
    """
    if not values or not values.get(HEADER_JOB) or not values.get(HEADER_SCHEDULED_FOR):
        return None
    run_id = values.get(HEADER_RUN)
    trace = values.get(HEADER_TRACE)
    return HandedOff(
        job=str(values[HEADER_JOB]),
        scheduled_for=datetime.fromisoformat(str(values[HEADER_SCHEDULED_FOR])),
        run_id=None if run_id is None else int(run_id),
        trace=_trace(trace),
    )


def _trace(value: object) -> dict[str, str]:
    """A trace context as it arrived; anything else is no context at all."""
    if not isinstance(value, Mapping):
        return {}
    return {str(key): str(item) for key, item in value.items()}


def tasks_module() -> Any:
    """``django.tasks`` on Django 6.0 and later, else the ``django_tasks`` backport."""
    name = tasks_module_name()
    if name is None:
        raise ImportError("Neither django.tasks nor django_tasks can be imported.")
    return importlib.import_module(name)


def tasks_module_name() -> str | None:
    """The tasks framework that can be imported here, or ``None`` if neither is installed."""
    return next((name for name in TASKS_MODULES if find_spec(name) is not None), None)


def celery_installed() -> bool:
    """Whether Celery can be imported here."""
    return find_spec("celery") is not None
