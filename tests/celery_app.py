"""The Celery app of the test project, configured from the CELERY_* Django settings.

As in a real project, ``tests/__init__.py`` imports it, so that ``runjobs`` sends
tasks with it; workers start with ``celery -A tests.celery_app worker``.
"""

from __future__ import annotations

from celery import Celery

app = Celery("oncejob_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
