"""The statements that write the history: the rows that fence occurrences, then their outcomes.

Each function runs in whatever thread calls it, on that thread's connection:
in ``runjobs``, :class:`~django_oncejob.running.history_writer.HistoryWriter`'s own.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from django.db import IntegrityError, OperationalError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Q
from django.db.models.constants import OnConflict
from django.utils import timezone

from django_oncejob.models import Run

T = TypeVar("T")

logger = logging.getLogger("django_oncejob")

#: SQLite can still say "database is locked" past its busy timeout when many
#: instances write one file at once; these are the pauses between tries.
LOCKED_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)

#: Statuses of rows that say an occurrence did not run here: recorded only where no row is.
NOT_RUN = frozenset({Run.Status.PAUSED, Run.Status.SKIPPED, Run.Status.MISSED})
#: Characters of a job's return value kept in its row.
RESULT_LENGTH = 2000


@dataclass
class Ending:
    """How an occurrence ended, for its row."""

    status: str
    error: str = ""
    traceback: str = ""
    #: What the job returned, as :func:`result_text` writes it.
    result: str = ""
    finished_at: datetime | None = None
    #: When the job was called, if after the row went in (which sets a first guess).
    started_at: datetime | None = None
    #: When the next attempt is due, for a failed attempt the job tries again.
    next_attempt_at: datetime | None = None


def running(
    job_id: str,
    scheduled_for: datetime,
    owner: str,
    claimed_at: datetime,
    requested_by: str = "",
    max_runtime: int | None = None,
) -> Run:
    """The row of an occurrence this instance is about to run, not saved yet."""
    started_at = timezone.now()
    return Run(
        job=job_id,
        scheduled_for=scheduled_for,
        owner=owner,
        status=Run.Status.RUNNING,
        claimed_at=claimed_at,
        started_at=started_at,
        manual=bool(requested_by),
        requested_by=requested_by,
        deadline=deadline(started_at, max_runtime),
    )


def deadline(started_at: datetime, max_runtime: int | None) -> datetime | None:
    return None if max_runtime is None else started_at + timedelta(seconds=max_runtime)


def not_run(job_id: str, scheduled_for: datetime, owner: str, claimed_at: datetime) -> Run:
    """The row of an occurrence this instance claimed but does not run, not saved yet."""
    return Run(job=job_id, scheduled_for=scheduled_for, owner=owner, claimed_at=claimed_at)


def insert_running(rows: Sequence[Run]) -> list[bool]:
    """Insert the rows of occurrences about to run; ``False`` for each another instance holds.

    The unique constraint on (job, scheduled_for) makes this the second fence: it
    holds even when the claim key has vanished from the cache. On PostgreSQL and
    SQLite the rows go in with one ``INSERT ... ON CONFLICT DO NOTHING`` per
    statement's worth, elsewhere one ``INSERT`` each. A row that conflicts with one
    that this very instance wrote (an earlier try whose answer was lost) is ours.
    """
    connection = connections[router.db_for_write(Run)]
    if _fences_in_bulk(connection):
        inserted = _insert_in_bulk(rows, connection)
    else:
        inserted = [_insert_one(row, connection) for row in rows]
    if not all(inserted):
        _claim_own_rows(rows, inserted)
    return inserted


def _insert_in_bulk(rows: Sequence[Run], connection: BaseDatabaseWrapper) -> list[bool]:
    inserted = [False] * len(rows)
    size = max(1, connection.ops.bulk_batch_size(_COLUMNS, list(rows)))
    for chunk in _one_row_per_job(rows, size):
        sql = _bulk_insert_sql(connection, len(chunk))
        params = [
            field.get_db_prep_save(field.pre_save(rows[i], True), connection)
            for i in chunk
            for field in _COLUMNS
        ]

        def write(sql: str = sql, params: list[Any] = params) -> dict[str, int]:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return {job: pk for pk, job in cursor.fetchall()}

        ids = retry_locked(write)
        for i in chunk:
            if rows[i].job in ids:
                _saved(rows[i], ids[rows[i].job], connection)
                inserted[i] = True
    return inserted


def _insert_one(row: Run, connection: BaseDatabaseWrapper) -> bool:
    def write() -> None:
        with transaction.atomic(using=connection.alias):
            row.save(force_insert=True, using=connection.alias)

    try:
        retry_locked(write)
    except IntegrityError:
        row.pk = None
        return False
    return True


def _claim_own_rows(rows: Sequence[Run], inserted: list[bool]) -> None:
    """Mark as inserted the rows that conflicted with an identical row of this instance's."""
    wanted = [i for i, done in enumerate(inserted) if not done]
    match = Q()
    for i in wanted:
        match |= Q(job=rows[i].job, scheduled_for=rows[i].scheduled_for)
    found = {
        (job, when): (pk, owner, claimed_at)
        for pk, job, when, owner, claimed_at in Run.objects.filter(match).values_list(
            "pk", "job", "scheduled_for", "owner", "claimed_at"
        )
    }
    for i in wanted:
        row = rows[i]
        pk, owner, claimed_at = found.get((row.job, row.scheduled_for), (None, None, None))
        if pk is not None and owner == row.owner and claimed_at == row.claimed_at:
            _saved(row, pk, connections[router.db_for_write(Run)])
            inserted[i] = True


def _one_row_per_job(rows: Sequence[Run], size: int) -> list[list[int]]:
    """Indexes of ``rows`` in statements of at most ``size`` rows, a job once in each.

    The database returns the rows it inserted by job id: a job due twice (its
    missed times, without coalescing) takes a second statement.
    """
    statements: list[list[int]] = []
    seen: list[set[str]] = []
    # Rows go in one order on every instance, whatever order they were claimed in:
    # two inserts of overlapping rows then wait for each other instead of deadlocking.
    order = sorted(range(len(rows)), key=lambda i: (rows[i].job, rows[i].scheduled_for))
    for i in order:
        row = rows[i]
        for statement, jobs in zip(statements, seen, strict=True):
            if row.job not in jobs and len(statement) < size:
                statement.append(i)
                jobs.add(row.job)
                break
        else:
            statements.append([i])
            seen.append({row.job})
    return statements


def write_endings(endings: Sequence[tuple[Run, Ending]]) -> list[bool]:
    """Record how occurrences ended, in one transaction; ``False`` where a row is not ours.

    A row is another's when an instance took it over (this one was taken for dead)
    or, for a row never inserted (the database was down when it was fenced), when
    another instance recorded the occurrence first. On PostgreSQL and SQLite the rows
    that went in go out with one ``UPDATE ... FROM (VALUES ...)`` per statement's worth.
    """
    alias = router.db_for_write(Run)
    connection = connections[alias]
    for row, ending in endings:
        _apply(row, ending)
    rows = [row for row, _ in endings]
    fenced = [i for i, row in enumerate(rows) if row.pk is not None]
    ours = [False] * len(rows)
    bulk = len(fenced) > 1 and _updates_in_bulk(connection)
    # One statement needs no transaction of its own: that is a COMMIT less.
    statements = (1 if bulk else len(fenced)) + len(rows) - len(fenced)
    with transaction.atomic(using=alias) if statements > 1 else contextlib.nullcontext():
        if bulk:
            updated = _update_in_bulk([rows[i] for i in fenced], connection)
            for i in fenced:
                ours[i] = (rows[i].pk, rows[i].owner) in updated
        else:
            for i in fenced:
                ours[i] = _update_one(rows[i], alias)
        for i, row in enumerate(rows):
            if row.pk is None:
                ours[i] = _write_late(row, alias)
    return ours


def _apply(row: Run, ending: Ending) -> None:
    row.status = ending.status
    row.next_attempt_at = ending.next_attempt_at
    row.finished_at = ending.finished_at or timezone.now()
    row.error = storable(ending.error)
    row.traceback = storable(ending.traceback)
    row.result = storable(ending.result)
    if ending.started_at is not None:
        row.started_at = ending.started_at


def _update_one(row: Run, alias: str) -> bool:
    # Only while the row is still ours: an instance that was taken for dead must not
    # overwrite the outcome of the re-run that replaced it.
    mine = Run.objects.using(alias).filter(pk=row.pk, owner=row.owner)
    return mine.update(**{name: getattr(row, name) for name in _ENDING}) == 1


def _update_in_bulk(rows: Sequence[Run], connection: BaseDatabaseWrapper) -> set[tuple[int, str]]:
    """The (id, owner) of the ``rows`` updated, still their owner's, in few statements."""
    fields = [_PK, _OWNER, *(cast("Field[Any, Any]", Run._meta.get_field(n)) for n in _ENDING)]
    size = max(1, connection.ops.bulk_batch_size(fields, list(rows)))
    updated: set[tuple[int, str]] = set()
    for at in range(0, len(rows), size):
        chunk = rows[at : at + size]
        params = [
            field.get_db_prep_save(getattr(row, field.attname), connection)
            for row in chunk
            for field in fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(_bulk_update_sql(connection, len(chunk)), params)
            updated.update((pk, owner) for pk, owner in cursor.fetchall())
    return updated


def _write_late(row: Run, alias: str) -> bool:
    """The ending of a row never inserted: it went in late (a fence that timed out), was
    written by the sweep as abandoned by this owner, or is not there at all."""
    mine = Run.objects.using(alias).filter(
        job=row.job, scheduled_for=row.scheduled_for, owner=row.owner
    )
    if mine.update(**{name: getattr(row, name) for name in _ENDING}):
        return True
    try:
        with transaction.atomic(using=alias):
            row.save(force_insert=True, using=alias)
    except IntegrityError:
        row.pk = None
        # Another instance holds the occurrence: for a row that did not run, that is as it
        # should be.
        return row.status in NOT_RUN
    return True


def result_text(value: object) -> str:
    """A job's return value for its row: its ``repr()``, cut at :data:`RESULT_LENGTH`."""
    if value is None:
        return ""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} whose repr() raised>"
    return text if len(text) <= RESULT_LENGTH else text[: RESULT_LENGTH - 1] + "…"


def storable(text: str) -> str:
    """``text`` as every database can store it: no NUL character, no lone surrogate."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def mark_enqueued(row: Run, task_backend: str, task_id: str = "") -> bool:
    """Record that the occurrence is being handed to a task queue; ``False`` if not ours any more.

    Written before the task is sent, so that a worker quick to take it finds the row
    enqueued. From here the worker, not this process, settles the row.
    """
    row.status = Run.Status.ENQUEUED
    row.task_backend = task_backend
    row.task_id = task_id
    updated: int = retry_locked(
        lambda: Run.objects.filter(pk=row.pk, owner=row.owner).update(
            status=Run.Status.ENQUEUED, task_backend=task_backend, task_id=task_id
        )
    )
    return updated == 1


def note_task_id(row: Run, task_id: str) -> None:
    """Record the id the task queue gave the hand-off, whoever holds the row by now."""
    row.task_id = task_id
    retry_locked(lambda: Run.objects.filter(pk=row.pk).update(task_id=task_id))


def take_enqueued(
    run_id: int, job_id: str, owner: str, max_runtime: int | None = None
) -> Run | None:
    """Move a handed-off row from enqueued to running for ``owner``, a task worker.

    One conditional UPDATE: of two deliveries of one task, only the first finds the
    row enqueued; the other gets ``None`` and must not run the job. Its ``max_runtime``
    counts from here.
    """
    enqueued = Run.objects.filter(pk=run_id, job=job_id, status=Run.Status.ENQUEUED)
    started_at = timezone.now()
    taken: int = retry_locked(
        lambda: enqueued.update(
            status=Run.Status.RUNNING,
            owner=owner,
            started_at=started_at,
            deadline=deadline(started_at, max_runtime),
        )
    )
    return Run.objects.get(pk=run_id) if taken else None


def _saved(row: Run, pk: int, connection: BaseDatabaseWrapper) -> None:
    """Make ``row`` what the ORM makes of a row it has just inserted."""
    row.pk = pk
    row._state.adding = False
    row._state.db = connection.alias


# The fence insert is the one statement on every won occurrence's way to its start,
# and the outcome update the one after its end: both composed once per database and
# size from the model's own table and columns, each sent for many occurrences at once,
# so that one writer per instance keeps up with hundreds of occurrences a second.

_TABLE = Run._meta.db_table
_PK = Run._meta.pk
_COLUMNS = list(Run._meta.concrete_fields)
_COLUMNS.remove(_PK)
_JOB = Run._meta.get_field("job")
_OWNER = Run._meta.get_field("owner")
#: The columns an ending writes, and their PostgreSQL types, which VALUES does not carry.
_ENDING = ("status", "started_at", "finished_at", "error", "traceback", "result", "next_attempt_at")
_PG_TYPES = {
    "next_attempt_at": "timestamptz",
    "status": "varchar",
    "started_at": "timestamptz",
    "finished_at": "timestamptz",
    "error": "text",
    "traceback": "text",
    "result": "text",
}
#: Multi-row inserts and outcome updates, by vendor and number of rows.
_bulk_inserts: dict[tuple[str, int], str] = {}
_bulk_updates: dict[tuple[str, int], str] = {}
#: The placeholders of one row of insert values.
_ROW = f"({', '.join(['%s'] * len(_COLUMNS))})"


def _updates_in_bulk(connection: BaseDatabaseWrapper) -> bool:
    # UPDATE ... FROM came with SQLite 3.33, RETURNING with 3.35.
    return connection.vendor == "postgresql" or (
        connection.vendor == "sqlite" and connection.features.can_return_rows_from_bulk_insert
    )


def _bulk_update_sql(connection: BaseDatabaseWrapper, rows: int) -> str:
    """``UPDATE`` of the outcome of ``rows`` rows, each only while its owner's, returning ids."""
    key = (connection.vendor, rows)
    if key not in _bulk_updates:
        quote = connection.ops.quote_name
        table, pk, owner = quote(_TABLE), quote(_column(_PK)), quote(_column(_OWNER))
        columns = [_column(Run._meta.get_field(name)) for name in _ENDING]
        cast = connection.vendor == "postgresql"
        values = ", ".join(
            f"{quote(column)} = "
            + (f"CAST(v.{quote(column)} AS {_PG_TYPES[name]})" if cast else f"v.{quote(column)}")
            for name, column in zip(_ENDING, columns, strict=True)
        )
        names = ", ".join(quote(name) for name in ("id", "owner", *columns))
        row = f"({', '.join(['%s'] * (2 + len(columns)))})"
        # A named VALUES list, as both PostgreSQL and SQLite take it.
        _bulk_updates[key] = (
            f"WITH v ({names}) AS (VALUES {', '.join([row] * rows)}) "
            f"UPDATE {table} SET {values} FROM v "
            f'WHERE {table}.{pk} = v."id" AND {table}.{owner} = v."owner" '
            f"RETURNING {table}.{pk}, {table}.{owner}"
        )
    return _bulk_updates[key]


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
        quote = ops.quote_name
        insert = ops.insert_statement(on_conflict=OnConflict.IGNORE)
        suffix = ops.on_conflict_suffix_sql(_COLUMNS, OnConflict.IGNORE, None, None)
        columns = ", ".join(quote(_column(f)) for f in _COLUMNS)
        returning = f"{quote(_column(_PK))}, {quote(_column(_JOB))}"
        _bulk_inserts[key] = (
            f"{insert} {quote(_TABLE)} ({columns}) VALUES {', '.join([_ROW] * rows)} {suffix} "
            f"RETURNING {returning}"
        )
    return _bulk_inserts[key]


def _column(field: Field[Any, Any] | Any) -> str:
    assert field.column is not None
    return str(field.column)


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
