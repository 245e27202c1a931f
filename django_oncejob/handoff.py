"""Hands a claimed occurrence to a task queue, django.tasks or Celery, instead of running it.

The claim and the history row decide which one instance has an occurrence, as
for any job; that instance then enqueues it. The row is marked ``enqueued``
before the task is sent, and a worker takes it with one conditional UPDATE to
``running`` (:mod:`django_oncejob.worker`), so a task delivered twice runs the
job once.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django_oncejob import history
from django_oncejob.claim import claim_key
from django_oncejob.models import Claim
from django_oncejob.occurrence import Occurrence
from django_oncejob.registry import DEFAULT_TASKS_QUEUE, JobSpec, tasks_module_name
from django_oncejob.writer import Writer

#: The name oncejob's own Celery task is registered under, in :mod:`django_oncejob.tasks`.
CELERY_TASK_NAME = "django_oncejob.run_occurrence"
#: Headers of every Celery task oncejob sends: the occurrence, and its history row.
HEADER_JOB = "oncejob_job"
HEADER_SCHEDULED_FOR = "oncejob_scheduled_for"
HEADER_CLAIM = "oncejob_claim"
#: Namespace of the Celery task ids, which are derived from the claim key.
TASK_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://django-oncejob.readthedocs.io/")

logger = logging.getLogger("django_oncejob")


@dataclass(frozen=True)
class HandedOff:
    """An occurrence as a worker receives it."""

    #: The job id, the key in ``ONCEJOB["JOBS"]``.
    job: str
    #: The scheduled fire time, an aware datetime in UTC.
    scheduled_for: datetime
    #: The primary key of its history row, or ``None`` if the database could not record it.
    claim_id: int | None


def enqueue(job: JobSpec, occurrence: Occurrence, row: Claim | None, writer: Writer) -> str | None:
    """Send ``occurrence`` to the job's task queue and return the task id.

    Returns ``None``, sending nothing, if another instance has taken the row over.
    Raises whatever the queue raises; the caller records the failure. ``writer``
    writes the row.
    """
    handed = HandedOff(occurrence.job, occurrence.scheduled_for, None if row is None else row.pk)
    if job.enqueue == "celery":
        task_id = celery_task_id(handed, 1 if row is None else row.attempts)
        if row is not None and not writer.call(
            lambda: history.mark_enqueued(row, "celery", task_id)
        ):
            return None
        _send_celery(job, handed, task_id)
        return task_id
    backend = f"tasks:{job.backend}"
    if row is not None and not writer.call(lambda: history.mark_enqueued(row, backend)):
        return None
    task_id = _enqueue_django_task(job, handed)
    if row is not None:
        try:
            writer.call(lambda: history.note_task_id(row, task_id))
        except Exception:
            # The task is on its way and the row is enqueued: only the id is missing.
            logger.warning(
                "Job %r at %s was handed off as task %s, but the task id could not be "
                "recorded in the history.",
                handed.job,
                handed.scheduled_for.isoformat(),
                task_id,
                exc_info=True,
            )
    return task_id


def celery_task_id(handed: HandedOff, attempt: int) -> str:
    """The same id for every send of one attempt of an occurrence, so a duplicate shows."""
    key = claim_key(handed.job, handed.scheduled_for)
    return str(uuid.uuid5(TASK_ID_NAMESPACE, f"{key}#{attempt}"))


def headers(handed: HandedOff) -> dict[str, Any]:
    """The headers that tell a worker which occurrence, and which row, a task is."""
    return {
        HEADER_JOB: handed.job,
        HEADER_SCHEDULED_FOR: handed.scheduled_for.isoformat(),
        HEADER_CLAIM: handed.claim_id,
    }


def occurrence_from_headers(values: Mapping[str, Any] | None) -> HandedOff | None:
    """The occurrence a Celery task was sent for, from its headers; ``None`` if not sent by oncejob.

    Pass ``self.request.headers`` in a bound task. :func:`django_oncejob.worker.occurrence_task`
    does this for you, and runs the task once per occurrence.
    """
    if not values or not values.get(HEADER_JOB) or not values.get(HEADER_SCHEDULED_FOR):
        return None
    claim_id = values.get(HEADER_CLAIM)
    return HandedOff(
        job=str(values[HEADER_JOB]),
        scheduled_for=datetime.fromisoformat(str(values[HEADER_SCHEDULED_FOR])),
        claim_id=None if claim_id is None else int(claim_id),
    )


def tasks_module() -> Any:
    """``django.tasks`` on Django 6.0 and later, else the ``django_tasks`` backport."""
    name = tasks_module_name()
    if name is None:
        raise ImportError("Neither django.tasks nor django_tasks can be imported.")
    return importlib.import_module(name)


def _send_celery(job: JobSpec, handed: HandedOff, task_id: str) -> None:
    from celery import current_app

    options: dict[str, Any] = {"task_id": task_id, "headers": headers(handed)}
    if job.queue is not None:
        options["queue"] = job.queue
    if job.task:
        current_app.send_task(job.task, args=list(job.args), kwargs=dict(job.kwargs), **options)
    else:
        arguments = [handed.job, handed.scheduled_for.isoformat(), handed.claim_id]
        current_app.send_task(CELERY_TASK_NAME, args=arguments, **options)


def _enqueue_django_task(job: JobSpec, handed: HandedOff) -> str:
    # Imported here: defining the task reads TASKS, which runjobs needs only for such jobs.
    from django_oncejob.tasks import run_occurrence

    task = run_occurrence.using(backend=job.backend, queue_name=job.queue or DEFAULT_TASKS_QUEUE)
    result = task.enqueue(handed.job, handed.scheduled_for.isoformat(), handed.claim_id)
    return str(result.id)
