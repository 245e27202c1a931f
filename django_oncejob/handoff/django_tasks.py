"""Checks of a job handed off to a django.tasks backend (Django's own, or the backport)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from django.conf import global_settings, settings
from django.core import checks
from django.utils.translation import gettext_lazy as _

from django_oncejob import handoff
from django_oncejob.messages import Reporter, interpolate

if TYPE_CHECKING:
    from django_oncejob.jobs.spec import JobSpec

#: django.tasks backends that hand nothing to a worker, and what they do instead.
NO_WORKER_BACKENDS = {
    f"{module}.backends.{kind}": effect
    for module in handoff.TASKS_MODULES
    for kind, effect in (
        (
            "immediate.ImmediateBackend",
            _(
                "Job %(job)s hands off to TASKS[%(backend)s], a %(class)s, which runs each "
                "task at once, inside runjobs."
            ),
        ),
        (
            "dummy.DummyBackend",
            _(
                "Job %(job)s hands off to TASKS[%(backend)s], a %(class)s, which stores each "
                "task and never runs it."
            ),
        ),
    )
}


def parse(parser: Reporter, definition: Mapping[str, Any]) -> None:
    if handoff.tasks_module_name() is None:
        parser.error(
            _(
                "%(where)s['enqueue'] is 'tasks', but neither django.tasks (Django 6.0 and "
                "later) nor the django-tasks backport can be imported."
            ),
            _(
                "On Django 5.2 and earlier, pip install 'django-oncejob[tasks]' "
                "(django-tasks); or remove 'enqueue' to run the job in runjobs."
            ),
            "E044",
        )
        return
    backends = getattr(settings, "TASKS", None)
    # From Django 6.0 a project that sets no TASKS gets the default, an ImmediateBackend.
    unset = backends is None or backends is getattr(global_settings, "TASKS", None)
    if unset or not isinstance(backends, Mapping) or not backends:
        parser.error(
            _(
                "%(where)s['enqueue'] is 'tasks', but the TASKS setting is not set: the "
                "default backend would run the task at once, inside runjobs."
            ),
            _(
                "Configure a backend with a worker in TASKS, e.g. {'default': {'BACKEND': "
                "'django_tasks_db.DatabaseBackend'}}, and run its worker."
            ),
            "E045",
        )
        return
    alias = definition.get("backend", handoff.DEFAULT_TASKS_ALIAS)
    if not isinstance(alias, str) or alias not in backends:
        parser.error(
            _("%(where)s['backend'] names no backend in TASKS: %(alias)s."),
            # Translators: aliases is a list of TASKS aliases, e.g. 'default', 'mails'.
            _("Use one of %(aliases)s, or leave it out for %(default)s."),
            "E046",
            alias=repr(alias),
            aliases=", ".join(map(repr, backends)),
            default=repr(handoff.DEFAULT_TASKS_ALIAS),
        )
        return
    queue = definition.get("queue")
    queues = backends[alias].get("QUEUES", [handoff.DEFAULT_TASKS_QUEUE])
    name = handoff.DEFAULT_TASKS_QUEUE if queue is None else queue
    if isinstance(name, str) and name.strip() and queues and name not in queues:
        parser.error(
            # Translators: queues is the list of queue names the backend has.
            _(
                "%(where)s hands off to queue %(queue)s, which TASKS[%(alias)s]['QUEUES'] "
                "does not list (%(queues)s)."
            ),
            _("Set %(where)s['queue'] to one of them, or add %(queue)s to the backend's QUEUES."),
            "E048",
            queue=repr(name),
            alias=repr(alias),
            queues=", ".join(map(repr, queues)),
        )


def check_jobs(jobs: Iterable[JobSpec]) -> list[checks.CheckMessage]:
    """A warning for each job whose backend has no worker to run what it is handed."""
    backends = cast(dict[str, Any], getattr(settings, "TASKS", {}))
    warnings: list[checks.CheckMessage] = []
    for job in jobs:
        backend = str(backends.get(job.backend, {}).get("BACKEND", ""))
        if backend not in NO_WORKER_BACKENDS:
            continue
        warnings.append(
            checks.Warning(
                interpolate(
                    NO_WORKER_BACKENDS[backend],
                    job=repr(job.id),
                    backend=repr(job.backend),
                    **{"class": backend.rsplit(".", 1)[-1]},
                ),
                hint=interpolate(
                    _(
                        "Point the job's 'backend' at a backend with workers, such as "
                        "django_tasks_db.DatabaseBackend; keep this one for tests."
                    )
                ),
                obj=f"job {job.id}",
                id="django_oncejob.W011",
            )
        )
    return warnings
