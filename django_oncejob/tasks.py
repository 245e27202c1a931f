"""django-oncejob's own tasks, which run a handed-off job's ``func`` in a worker.

Each exists only when its framework is installed: ``run_handed_off_task`` is a
django.tasks task (Django 6.0+, or the django-tasks backport), and
``run_handed_off_celery_task`` is registered with Celery as
``"django_oncejob.run_handed_off"``, which ``app.autodiscover_tasks()`` finds here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings

from django_oncejob import handoff
from django_oncejob.handoff import CELERY_TASK_NAME, HandedOff, tasks_module
from django_oncejob.handoff.worker import run_handed_off


def _run(job_id: str, scheduled_for: str, run_id: int | None, trace: dict[str, str] | None) -> str:
    handed = HandedOff(job_id, datetime.fromisoformat(scheduled_for), run_id, dict(trace or {}))
    return run_handed_off(handed).value


def _django_task(func: Callable[..., str]) -> Any:
    if handoff.tasks_module_name() is None:
        return func
    module = tasks_module()
    # A task is checked against its backend when it is defined. This one only has to
    # be valid somewhere: each hand-off picks the job's backend and queue with using().
    configured = getattr(settings, "TASKS", None) or {handoff.DEFAULT_TASKS_ALIAS: {}}
    alias = handoff.DEFAULT_TASKS_ALIAS
    if alias not in configured:
        alias = next(iter(configured))
    queues = module.task_backends[alias].queues
    queue = handoff.DEFAULT_TASKS_QUEUE
    if queues and queue not in queues:
        queue = min(queues)
    return module.task(backend=alias, queue_name=queue)(func)


def _celery_task(func: Callable[..., str]) -> Any:
    if not handoff.celery_installed():
        return func
    from celery import shared_task

    return shared_task(name=CELERY_TASK_NAME)(func)


@_django_task
def run_handed_off_task(
    job_id: str, scheduled_for: str, run_id: int | None, trace: dict[str, str] | None = None
) -> str:
    """Run the occurrence of ``job_id`` at ``scheduled_for`` (ISO-8601) that was handed off.

    ``trace`` is the trace context it was handed off with, where tracing is on.
    """
    return _run(job_id, scheduled_for, run_id, trace)


@_celery_task
def run_handed_off_celery_task(
    job_id: str, scheduled_for: str, run_id: int | None, trace: dict[str, str] | None = None
) -> str:
    """Run the occurrence of ``job_id`` at ``scheduled_for`` (ISO-8601) that was handed off.

    ``trace`` is the trace context it was handed off with, where tracing is on.
    """
    return _run(job_id, scheduled_for, run_id, trace)
