"""Runs a handed-off occurrence in a task worker: once, however often its task is delivered."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from django.utils import timezone

from django_oncejob.conf import conf
from django_oncejob.db import close_old_connections
from django_oncejob.fleet.heartbeat import worker_heartbeat
from django_oncejob.handoff import HandedOff, occurrence_from_headers
from django_oncejob.jobs import registry
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Run
from django_oncejob.occurrence import Occurrence
from django_oncejob.running import history
from django_oncejob.running.history import Ending
from django_oncejob.running.pipeline import Pipeline
from django_oncejob.running.steps import Fenced, Outcome

logger = logging.getLogger("django_oncejob")

F = TypeVar("F", bound=Callable[..., Any])


class OccurrenceFailed(Exception):
    """The job of a handed-off occurrence failed; its history row holds the error."""


def run_handed_off(handed: HandedOff, call: Callable[[], Any] | None = None) -> Outcome:
    """Take the occurrence's row and run the job, or do nothing if another delivery took it.

    ``call`` runs instead of the job's ``func``, for a Celery task sent by name.
    Returns :attr:`Outcome.FENCED` for a delivery that found the row taken, and
    raises :class:`OccurrenceFailed` when the job fails, so that the task queue
    records the failure too.
    """
    owner = conf.OWNER
    jobs, _errors = registry.parsed_jobs()
    job = jobs.get(handed.job)
    close_old_connections()
    try:
        if job is None:
            _refuse(handed, owner)
        # Beating before the row is taken: from then on its owner is this worker, which
        # must look alive to the instances for as long as it runs the job.
        with worker_heartbeat.running(owner, conf.HEARTBEAT_INTERVAL, conf.HEARTBEAT_TIMEOUT):
            step = _take(job, handed, owner)
            if step is None:
                return Outcome.FENCED
            outcome = Pipeline(owner).run(step, call if call is not None else _call(job))
    finally:
        close_old_connections()
    if outcome is Outcome.FAILED:
        raise OccurrenceFailed(
            f"Job {handed.job!r} at {handed.scheduled_for.isoformat()} failed: {step.row.error}"
        )
    return outcome


def _take(job: JobSpec, handed: HandedOff, owner: str) -> Fenced | None:
    """The occurrence to run here, its row taken; ``None`` if another delivery has it."""
    occurrence = Occurrence(job=handed.job, scheduled_for=handed.scheduled_for, owner=owner)
    max_runtime = job.max_runtime
    if handed.run_id is None:
        logger.warning(
            "Job %r at %s came without a history row: it runs with no check against a "
            "second delivery.",
            handed.job,
            handed.scheduled_for.isoformat(),
        )
        row = history.running(
            handed.job, handed.scheduled_for, owner, timezone.now(), max_runtime=max_runtime
        )
        return Fenced(job, occurrence, row, fenced=False, handed_off=True, trace=handed.trace)
    taken = history.take_enqueued(handed.run_id, handed.job, owner, max_runtime)
    if taken is None:
        logger.info(
            "Job %r at %s is no longer enqueued: another delivery of its task took it; "
            "not running it again.",
            handed.job,
            handed.scheduled_for.isoformat(),
        )
        return None
    occurrence = Occurrence(handed.job, handed.scheduled_for, owner, taken.attempts)
    return Fenced(job, occurrence, taken, handed_off=True, trace=handed.trace)


def _refuse(handed: HandedOff, owner: str) -> NoReturn:
    error = (
        f"Job {handed.job!r} is not a valid job in ONCEJOB['JOBS'] of the worker {owner}: "
        "a worker needs the same settings as the runjobs instances."
    )
    logger.error(error)
    if handed.run_id is not None:
        row = history.take_enqueued(handed.run_id, handed.job, owner)
        if row is not None:
            Pipeline(owner).writer.finish(row, Ending(Run.Status.FAILED, error))
    raise OccurrenceFailed(error)


def _call(job: JobSpec) -> Callable[[], Any]:
    """The job's own ``func``, called in the worker."""
    return lambda: job.resolve()(*job.args, **job.kwargs)


def occurrence_task(func: F) -> F:
    """Make a Celery task that a job sends by name run once per occurrence.

    Put it under ``@shared_task``. When the task comes from django-oncejob, the
    wrapper takes the occurrence's history row (a repeated delivery finds it taken
    and returns ``None`` without calling ``func``), sets
    :func:`~django_oncejob.current_occurrence`, and records the outcome. Called any
    other way, ``func`` just runs.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        handed = occurrence_from_headers(_celery_headers())
        if handed is None:
            return func(*args, **kwargs)
        returned: list[Any] = []

        def call() -> Any:
            returned.append(func(*args, **kwargs))
            return returned[-1]

        run_handed_off(handed, call)
        return returned[0] if returned else None

    return wrapper  # type: ignore[return-value]


def _celery_headers() -> dict[str, Any]:
    from celery import current_task

    request = getattr(current_task, "request", None)
    if request is None:
        return {}
    # Celery 5.3 and later gather custom headers in request.headers; older ones
    # only set them as attributes of the request.
    values = dict(getattr(request, "headers", None) or {})
    for name in ("oncejob_job", "oncejob_scheduled_for", "oncejob_run", "oncejob_trace"):
        if name not in values and getattr(request, name, None) is not None:
            values[name] = getattr(request, name)
    return values
