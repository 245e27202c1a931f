"""Sends a claimed occurrence to its job's task queue (django.tasks, Celery) to run there.

The row is marked ``enqueued`` before the task is sent, and a worker takes it
with one conditional UPDATE to ``running`` (:mod:`django_oncejob.handoff.worker`), so a
task delivered twice runs the job once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django_oncejob.handoff import (
    CELERY_TASK_NAME,
    DEFAULT_TASKS_QUEUE,
    HandedOff,
    celery_task_id,
    headers,
)
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Run
from django_oncejob.occurrence import Occurrence
from django_oncejob.running import history
from django_oncejob.running.pipeline import SENDERS
from django_oncejob.running.writer import Writer

logger = logging.getLogger("django_oncejob")


def connect() -> None:
    """Let the pipeline hand occurrences to django.tasks and to Celery."""
    SENDERS["celery"] = send_to_celery
    SENDERS["tasks"] = send_to_tasks


# Each is a pipeline.Sender. Whatever the queue raises goes to the pipeline, which
# records the hand-off as failed.


def send_to_celery(
    job: JobSpec,
    occurrence: Occurrence,
    row: Run | None,
    writer: Writer,
    trace: Mapping[str, str],
) -> str | None:
    """Send ``occurrence`` to Celery, with a task id derived from the occurrence."""
    handed = _handed(occurrence, row, trace)
    task_id = celery_task_id(handed, 1 if row is None else row.attempts)
    if row is not None and not writer.call(lambda: history.mark_enqueued(row, "celery", task_id)):
        return None
    _send_celery(job, handed, task_id)
    return task_id


def send_to_tasks(
    job: JobSpec,
    occurrence: Occurrence,
    row: Run | None,
    writer: Writer,
    trace: Mapping[str, str],
) -> str | None:
    """Enqueue ``occurrence`` on the job's django.tasks backend."""
    handed = _handed(occurrence, row, trace)
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


def _handed(occurrence: Occurrence, row: Run | None, trace: Mapping[str, str]) -> HandedOff:
    run_id = None if row is None else row.pk
    return HandedOff(occurrence.job, occurrence.scheduled_for, run_id, dict(trace))


def _send_celery(job: JobSpec, handed: HandedOff, task_id: str) -> None:
    from celery import current_app

    options: dict[str, Any] = {"task_id": task_id, "headers": headers(handed)}
    if job.queue is not None:
        options["queue"] = job.queue
    if job.task:
        current_app.send_task(job.task, args=list(job.args), kwargs=dict(job.kwargs), **options)
    else:
        current_app.send_task(CELERY_TASK_NAME, args=_arguments(handed), **options)


def _enqueue_django_task(job: JobSpec, handed: HandedOff) -> str:
    # Imported here: defining the task reads TASKS, which runjobs needs only for such jobs.
    from django_oncejob.tasks import run_handed_off_task

    task = run_handed_off_task.using(
        backend=job.backend, queue_name=job.queue or DEFAULT_TASKS_QUEUE
    )
    result = task.enqueue(*_arguments(handed))
    return str(result.id)


def _arguments(handed: HandedOff) -> list[Any]:
    """The arguments of oncejob's own task. The trace context goes only where there is one:
    a worker still on a release whose task takes three arguments runs the task all the same."""
    arguments: list[Any] = [handed.job, handed.scheduled_for.isoformat(), handed.run_id]
    if handed.trace:
        arguments.append(dict(handed.trace))
    return arguments
