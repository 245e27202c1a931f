"""Checks of a job's hand-off keys: ``enqueue``, and what goes with it.

The keys every hand-off shares are read here; each backend's own module checks
what only it knows (:mod:`~django_oncejob.handoff.celery`,
:mod:`~django_oncejob.handoff.django_tasks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.core import checks
from django.utils.translation import gettext_lazy as _

from django_oncejob.conf import ENQUEUE_CHOICES, conf
from django_oncejob.handoff import celery, django_tasks
from django_oncejob.messages import Reporter

if TYPE_CHECKING:
    from django_oncejob.jobs.spec import JobSpec

#: Which ``enqueue`` each hand-off key belongs to.
FITS = {"backend": ("tasks",), "queue": ("tasks", "celery"), "task": ("celery",)}


def parse(parser: Reporter, definition: Mapping[str, Any]) -> str | None:
    """The job's ``enqueue``, with an error in ``parser`` for each key that does not fit."""
    # A bad project-wide ENQUEUE reads as its default, and is reported once by its own check.
    enqueue = definition.get("enqueue", conf.ENQUEUE)
    if enqueue not in ENQUEUE_CHOICES:
        parser.error(
            _("%(where)s['enqueue'] must be None, 'tasks' or 'celery', got %(value)s."),
            _(
                "Leave it out (or None) to run the job in runjobs; 'tasks' hands each "
                "occurrence to a django.tasks backend, 'celery' to Celery."
            ),
            "E042",
            value=repr(enqueue),
        )
        return None
    queue = definition.get("queue")
    given = {key for key in ("backend", "task") if key in definition}
    if queue is not None:
        given.add("queue")
    for key, modes in FITS.items():
        if key in given and enqueue not in modes:
            if len(modes) == 1:
                message = _(
                    "%(where)s[%(key)s] is only used with 'enqueue': %(mode)s, and the job's "
                    "'enqueue' is %(enqueue)s."
                )
                hint = _("Set %(where)s['enqueue'] to %(mode)s, or remove %(key)s.")
            else:
                message = _(
                    "%(where)s[%(key)s] is only used with 'enqueue': %(mode)s or %(other)s, "
                    "and the job's 'enqueue' is %(enqueue)s."
                )
                hint = _("Set %(where)s['enqueue'] to %(mode)s or %(other)s, or remove %(key)s.")
            parser.error(
                message,
                hint,
                "E050",
                key=repr(key),
                mode=repr(modes[0]),
                other=repr(modes[-1]),
                enqueue=repr(enqueue),
            )
    if queue is not None and (not isinstance(queue, str) or not queue.strip()):
        parser.error(
            _("%(where)s['queue'] must be a queue name, got %(value)s."),
            _(
                "Write e.g. 'queue': 'jobs', or leave it out (or None) for the backend's "
                "default queue."
            ),
            "E047",
            value=repr(queue),
        )
    task = definition.get("task")
    if "task" in definition and (not isinstance(task, str) or not task.strip()):
        parser.error(
            _("%(where)s['task'] must be the name of a Celery task, got %(value)s."),
            _(
                "Write e.g. 'task': 'reports.tasks.send_nightly_report', the name the task "
                "is registered under in your Celery workers."
            ),
            "E049",
            value=repr(task),
        )
    if enqueue == "celery":
        celery.parse(parser)
    elif enqueue == "tasks":
        django_tasks.parse(parser, definition)
    return str(enqueue) if enqueue else None


def check_jobs(jobs: Iterable[JobSpec]) -> list[checks.CheckMessage]:
    """What each backend has to say about the valid jobs handed to it."""
    return django_tasks.check_jobs(job for job in jobs if job.enqueue == "tasks")
