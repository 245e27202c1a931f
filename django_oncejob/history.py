"""Writes the claim history: the row that fences an occurrence, then its outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from django.db import IntegrityError, OperationalError
from django.utils import timezone

from django_oncejob.models import Claim

T = TypeVar("T")

#: Rows this process opened and has not closed yet, for a shutdown that cannot wait.
_open: dict[int, Claim] = {}
_open_lock = threading.Lock()

#: SQLite can still say "database is locked" past its busy timeout when many
#: instances write one file at once; these are the pauses between tries.
LOCKED_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


def open_claim(
    job_id: str,
    scheduled_for: datetime,
    owner: str,
    claimed_at: datetime,
    *,
    requested_by: str = "",
) -> Claim | None:
    """Insert the occurrence's row, or return ``None`` if another instance already holds it.

    The unique constraint on (job, scheduled_for) makes this the second fence:
    it holds even when the claim key has vanished from the cache.
    """
    claim = _insert(
        job=job_id,
        scheduled_for=scheduled_for,
        owner=owner,
        status=Claim.Status.RUNNING,
        claimed_at=claimed_at,
        started_at=timezone.now(),
        manual=bool(requested_by),
        requested_by=requested_by,
    )
    if claim is not None:
        hold(claim)
    return claim


def record_not_run(
    job_id: str, scheduled_for: datetime, owner: str, status: str, error: str
) -> Claim | None:
    """Record an occurrence that will not run (paused, missed), unless it already has a row."""
    now = timezone.now()
    return _insert(
        job=job_id,
        scheduled_for=scheduled_for,
        owner=owner,
        status=status,
        claimed_at=now,
        finished_at=now,
        error=error,
    )


def _insert(**fields: Any) -> Claim | None:
    try:
        return retry_locked(lambda: Claim.objects.create(**fields))
    except IntegrityError:
        return None


def hold(claim: Claim) -> None:
    """Note a row this process is running, so that a forced stop can settle it."""
    with _open_lock:
        _open[claim.pk] = claim


def close_claim(claim: Claim, status: str, *, error: str = "", traceback: str = "") -> bool:
    """Record how the occurrence ended; ``False`` if another instance has taken the row over."""
    with _open_lock:
        _open.pop(claim.pk, None)
    claim.status = status
    claim.finished_at = timezone.now()
    claim.error = error
    claim.traceback = traceback
    # Only while the row is still ours: an instance that was taken for dead must
    # not overwrite the outcome of the re-run that replaced it.
    updated: int = retry_locked(
        lambda: Claim.objects.filter(pk=claim.pk, owner=claim.owner).update(
            status=status, finished_at=claim.finished_at, error=error, traceback=traceback
        )
    )
    return updated == 1


def mark_enqueued(claim: Claim, task_backend: str, task_id: str = "") -> bool:
    """Record that the occurrence is being handed to a task queue; ``False`` if not ours any more.

    Written before the task is sent, so that a worker quick to take it finds the row
    enqueued. From here the worker, not this process, settles the row.
    """
    with _open_lock:
        _open.pop(claim.pk, None)
    claim.status = Claim.Status.ENQUEUED
    claim.task_backend = task_backend
    claim.task_id = task_id
    updated: int = retry_locked(
        lambda: Claim.objects.filter(pk=claim.pk, owner=claim.owner).update(
            status=Claim.Status.ENQUEUED, task_backend=task_backend, task_id=task_id
        )
    )
    return updated == 1


def note_task_id(claim: Claim, task_id: str) -> None:
    """Record the id the task queue gave the hand-off, whoever holds the row by now."""
    claim.task_id = task_id
    retry_locked(lambda: Claim.objects.filter(pk=claim.pk).update(task_id=task_id))


def take_enqueued(claim_id: int, job_id: str, owner: str) -> Claim | None:
    """Move a handed-off row from enqueued to running for ``owner``, a task worker.

    One conditional UPDATE: of two deliveries of one task, only the first finds the
    row enqueued; the other gets ``None`` and must not run the job.
    """
    enqueued = Claim.objects.filter(pk=claim_id, job=job_id, status=Claim.Status.ENQUEUED)
    taken: int = retry_locked(
        lambda: enqueued.update(status=Claim.Status.RUNNING, owner=owner, started_at=timezone.now())
    )
    return Claim.objects.get(pk=claim_id) if taken else None


def interrupt_open_claims(reason: str) -> int:
    """Mark every row this process still has running as failed with ``reason``."""
    with _open_lock:
        claims = list(_open.values())
    for claim in claims:
        close_claim(claim, Claim.Status.FAILED, error=reason)
    return len(claims)


def retry_locked(write: Callable[[], T]) -> T:
    """Run ``write``, trying again while SQLite says the database is locked."""
    for delay in LOCKED_RETRY_DELAYS:
        try:
            return write()
        except OperationalError as exc:
            if "database is locked" not in str(exc):
                raise
            time.sleep(delay)
    return write()
