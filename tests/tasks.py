"""Celery tasks of the test project, found by ``app.autodiscover_tasks()``.

``record`` is a task of the user's own that a job sends by name.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from django_oncejob.handoff.worker import occurrence_task
from tests import jobs


@shared_task(name="oncejob_tests.record")
@occurrence_task
def record(*args: Any, **kwargs: Any) -> str:
    return jobs.record(*args, **kwargs)
