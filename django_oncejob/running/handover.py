"""The changes of hands of a history row after its first attempt, each one conditional UPDATE.

Each updates the row only as it was read (its status, its attempt, its owner), so that
when several instances try the same change at once, exactly one makes it: the next
attempt of a failed occurrence, the start of one that waited, a run timed out.
"""

from __future__ import annotations

from django.db import IntegrityError, router, transaction
from django.db.models.functions import Now
from django.utils import timezone

from django_oncejob.models import Attempt, Run
from django_oncejob.running.history import Ending, deadline, retry_locked, storable


def record_failed_attempt(row: Run, ending: Ending) -> None:
    """Keep a failed attempt of ``row``, which is about to be tried again, in its history."""
    Attempt.objects.bulk_create(
        [
            Attempt(
                run_id=row.pk,
                number=row.attempts,
                owner=row.owner,
                started_at=ending.started_at or row.started_at,
                finished_at=ending.finished_at or timezone.now(),
                error=storable(ending.error),
                traceback=storable(ending.traceback),
            )
        ],
        ignore_conflicts=True,
    )


def take_attempt(row: Run, owner: str, max_runtime: int | None) -> Run | None:
    """Make ``owner`` the one to run the attempt after ``row``'s failed one; ``None`` if
    another instance took it, or the row changed meanwhile."""
    started_at = timezone.now()
    due = Run.objects.filter(pk=row.pk, status=Run.Status.RETRYING, attempts=row.attempts)
    taken: int = retry_locked(
        lambda: due.update(
            status=Run.Status.RUNNING,
            owner=owner,
            attempts=row.attempts + 1,
            started_at=started_at,
            finished_at=None,
            next_attempt_at=None,
            deadline=deadline(started_at, max_runtime),
            error="",
            traceback="",
        )
    )
    return Run.objects.get(pk=row.pk) if taken else None


def wait(row: Run) -> bool:
    """Make ``row`` the one occurrence of its job that waits for the run before it to end;
    ``False`` if another already waits."""
    mine = Run.objects.filter(pk=row.pk, owner=row.owner, status=Run.Status.RUNNING)
    try:
        with transaction.atomic(using=router.db_for_write(Run)):
            waits = retry_locked(lambda: mine.update(status=Run.Status.WAITING, deadline=None))
    except IntegrityError:
        return False
    if waits:
        row.status = Run.Status.WAITING
    return bool(waits)


def take_waiting(job_id: str, owner: str, max_runtime: int | None) -> Run | None:
    """Take the occurrence of the job that waits, to run it now; ``None`` if none waits."""
    row = Run.objects.filter(job=job_id, status=Run.Status.WAITING).first()
    if row is None:
        return None
    started_at = timezone.now()
    waiting = Run.objects.filter(pk=row.pk, status=Run.Status.WAITING)
    taken: int = retry_locked(
        lambda: waiting.update(
            status=Run.Status.RUNNING,
            owner=owner,
            started_at=started_at,
            deadline=deadline(started_at, max_runtime),
        )
    )
    return Run.objects.get(pk=row.pk) if taken else None


def time_out(row: Run, error: str, *, by_owner: bool) -> bool:
    """Record ``row``, still running, as timed out; ``False`` if it ended or another did.

    Its owner does it at the deadline, by its own clock; any other instance only once the
    deadline has passed by the database's.
    """
    running = Run.objects.filter(pk=row.pk, status=Run.Status.RUNNING)
    running = running.filter(owner=row.owner) if by_owner else running.filter(deadline__lt=Now())
    timed_out: int = retry_locked(
        lambda: running.update(status=Run.Status.TIMED_OUT, error=storable(error))
    )
    return timed_out == 1
