"""Writes the claim history: the row that fences an occurrence, then its outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from django.db import IntegrityError, OperationalError, connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field
from django.db.models.constants import OnConflict
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
    claim = _insert(_running(job_id, scheduled_for, owner, claimed_at, requested_by))
    if claim is not None:
        hold(claim)
    return claim


def open_claims(
    occurrences: Sequence[tuple[str, datetime]], owner: str, claimed_at: datetime
) -> list[Claim | None]:
    """:func:`open_claim` for several occurrences (job id, scheduled time), in one INSERT.

    On PostgreSQL and SQLite the rows go in together, the ones another instance
    already holds skipped by the unique constraint (``ON CONFLICT DO NOTHING``): one
    round trip and one commit for all the jobs an instance won in the same second.
    Elsewhere, one :func:`open_claim` each.
    """
    connection = connections[router.db_for_write(Claim)]
    if len(occurrences) < 2 or not _fences_in_bulk(connection):
        return [open_claim(job_id, when, owner, claimed_at) for job_id, when in occurrences]
    claims = [_running(job_id, when, owner, claimed_at) for job_id, when in occurrences]
    opened: list[Claim | None] = [None] * len(claims)
    size = max(1, connection.ops.bulk_batch_size(_COLUMNS, claims))
    for chunk in _one_row_per_job(claims, size):
        sql = _bulk_insert_sql(connection, len(chunk))
        params = [
            field.get_db_prep_save(field.pre_save(claims[i], True), connection)
            for i in chunk
            for field in _COLUMNS
        ]

        def write(sql: str = sql, params: list[Any] = params) -> dict[str, int]:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return {job: pk for pk, job in cursor.fetchall()}

        inserted = retry_locked(write)
        for i in chunk:
            claim = claims[i]
            if claim.job in inserted:
                _saved(claim, inserted[claim.job], connection)
                hold(claim)
                opened[i] = claim
    return opened


def _running(
    job_id: str, scheduled_for: datetime, owner: str, claimed_at: datetime, requested_by: str = ""
) -> Claim:
    """The row of an occurrence this instance is about to run."""
    return Claim(
        job=job_id,
        scheduled_for=scheduled_for,
        owner=owner,
        status=Claim.Status.RUNNING,
        claimed_at=claimed_at,
        started_at=timezone.now(),
        manual=bool(requested_by),
        requested_by=requested_by,
    )


def _one_row_per_job(claims: list[Claim], size: int) -> list[list[int]]:
    """Indexes of ``claims`` in statements of at most ``size`` rows, a job once in each.

    The database returns the rows it inserted by job id: a job due twice (its
    missed times, without coalescing) takes a second statement.
    """
    statements: list[list[int]] = []
    seen: list[set[str]] = []
    # Rows go in one order on every instance, whatever order they were claimed in:
    # two inserts of overlapping rows then wait for each other instead of deadlocking.
    order = sorted(range(len(claims)), key=lambda i: (claims[i].job, claims[i].scheduled_for))
    for i in order:
        claim = claims[i]
        for statement, jobs in zip(statements, seen, strict=True):
            if claim.job not in jobs and len(statement) < size:
                statement.append(i)
                jobs.add(claim.job)
                break
        else:
            statements.append([i])
            seen.append({claim.job})
    return statements


def record_not_run(
    job_id: str, scheduled_for: datetime, owner: str, status: str, error: str
) -> Claim | None:
    """Record an occurrence that will not run (paused, missed), unless it already has a row."""
    now = timezone.now()
    return _insert(
        Claim(
            job=job_id,
            scheduled_for=scheduled_for,
            owner=owner,
            status=status,
            claimed_at=now,
            finished_at=now,
            error=error,
        )
    )


def _insert(claim: Claim) -> Claim | None:
    connection = connections[router.db_for_write(Claim)]
    if connection.vendor not in _SQL_VENDORS:
        try:
            claim.save(force_insert=True, using=connection.alias)
        except IntegrityError:
            return None
        return claim
    sql, returning = _insert_sql(connection)
    params = [field.get_db_prep_save(field.pre_save(claim, True), connection) for field in _COLUMNS]

    def write() -> int:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if returning:
                return int(cursor.fetchone()[0])
            return int(connection.ops.last_insert_id(cursor, _TABLE, _column(_PK)))

    try:
        pk = retry_locked(write)
    except IntegrityError:
        return None
    _saved(claim, pk, connection)
    return claim


def _saved(claim: Claim, pk: int, connection: BaseDatabaseWrapper) -> None:
    """Make ``claim`` what the ORM makes of a row it has just inserted."""
    claim.pk = pk
    claim._state.adding = False
    claim._state.db = connection.alias


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
    connection = connections[router.db_for_write(Claim)]
    if connection.vendor not in _SQL_VENDORS:
        updated: int = retry_locked(
            lambda: Claim.objects.filter(pk=claim.pk, owner=claim.owner).update(
                status=status, finished_at=claim.finished_at, error=error, traceback=traceback
            )
        )
        return updated == 1
    values = [
        field.get_db_prep_save(getattr(claim, field.attname), connection) for field in _OUTCOME
    ]

    def write() -> int:
        with connection.cursor() as cursor:
            cursor.execute(_outcome_sql(connection), [*values, claim.pk, claim.owner])
            return int(cursor.rowcount)

    return retry_locked(write) == 1


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


# The fence insert and the outcome are written on every occurrence an instance wins.
# Composed by the ORM's query compiler each time, they cost about twice the CPU of
# sending them (0.77 of 1.4 ms per won occurrence, in-process on PostgreSQL), CPU that
# every instance spends in the same burst of due jobs. So they are composed once per
# database, from the model's own table and columns; the values still go through each
# field's get_db_prep_save(), as the ORM's do. Other databases take the ORM's path.

#: Backends whose SQL here is known: placeholders %s, RETURNING or a last insert id.
_SQL_VENDORS = frozenset({"postgresql", "sqlite", "mysql"})
_TABLE = Claim._meta.db_table
_PK = Claim._meta.pk
_COLUMNS = list(Claim._meta.concrete_fields)
_COLUMNS.remove(_PK)
_OUTCOME = [
    cast("Field[Any, Any]", Claim._meta.get_field(name))
    for name in ("status", "finished_at", "error", "traceback")
]
_OWNER = cast("Field[Any, Any]", Claim._meta.get_field("owner"))
_JOB = cast("Field[Any, Any]", Claim._meta.get_field("job"))
#: The statements composed so far, by what they depend on: the vendor, and for the
#: insert whether the database returns the new id.
_inserts: dict[tuple[str, bool], str] = {}
_outcomes: dict[str, str] = {}
#: Multi-row inserts, by vendor and number of rows (at most a batch's).
_bulk_inserts: dict[tuple[str, int], str] = {}
#: The placeholders of one row of insert values.
_ROW = f"({', '.join(['%s'] * len(_COLUMNS))})"


def _insert_sql(connection: BaseDatabaseWrapper) -> tuple[str, bool]:
    """``INSERT`` of a whole row, and whether it returns the new id itself."""
    returning = bool(connection.features.can_return_columns_from_insert)
    key = (connection.vendor, returning)
    if key not in _inserts:
        sql = f"INSERT INTO {_into(connection)} VALUES {_ROW}"
        pk = connection.ops.quote_name(_column(_PK))
        _inserts[key] = f"{sql} RETURNING {pk}" if returning else sql
    return _inserts[key], returning


def _outcome_sql(connection: BaseDatabaseWrapper) -> str:
    """``UPDATE`` of the outcome columns, only while the row is still the owner's."""
    if connection.vendor not in _outcomes:
        quote = connection.ops.quote_name
        _outcomes[connection.vendor] = (
            f"UPDATE {quote(_TABLE)} SET {', '.join(f'{quote(_column(f))} = %s' for f in _OUTCOME)}"
            f" WHERE {quote(_column(_PK))} = %s AND {quote(_column(_OWNER))} = %s"
        )
    return _outcomes[connection.vendor]


def _fences_in_bulk(connection: BaseDatabaseWrapper) -> bool:
    features = connection.features
    return (
        connection.vendor in ("postgresql", "sqlite")
        and features.supports_ignore_conflicts
        and features.can_return_rows_from_bulk_insert
    )


def _bulk_insert_sql(connection: BaseDatabaseWrapper, rows: int) -> str:
    """``INSERT`` of ``rows`` whole rows, skipping taken occurrences, returning the new ids."""
    key = (connection.vendor, rows)
    if key not in _bulk_inserts:
        ops = connection.ops
        insert = ops.insert_statement(on_conflict=OnConflict.IGNORE)
        suffix = ops.on_conflict_suffix_sql(_COLUMNS, OnConflict.IGNORE, None, None)
        returning = f"{ops.quote_name(_column(_PK))}, {ops.quote_name(_column(_JOB))}"
        _bulk_inserts[key] = (
            f"{insert} {_into(connection)} VALUES {', '.join([_ROW] * rows)} {suffix} "
            f"RETURNING {returning}"
        )
    return _bulk_inserts[key]


def _into(connection: BaseDatabaseWrapper) -> str:
    """The table and its columns, as an ``INSERT`` names them."""
    quote = connection.ops.quote_name
    return f"{quote(_TABLE)} ({', '.join(quote(_column(f)) for f in _COLUMNS)})"


def _column(field: Field[Any, Any]) -> str:
    assert field.column is not None
    return field.column


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
