"""Checks of a job handed off to Celery."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from django_oncejob import handoff
from django_oncejob.messages import Reporter


def parse(parser: Reporter) -> None:
    if not handoff.celery_installed():
        parser.error(
            _("%(where)s['enqueue'] is 'celery', but Celery is not installed."),
            _(
                "pip install 'django-oncejob[celery]' (or celery), or run the job in runjobs "
                "by removing 'enqueue'."
            ),
            "E043",
        )
