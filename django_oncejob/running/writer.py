"""What the pipeline asks of the history, and its writer for one occurrence at a time.

Every occurrence an instance wins passes the database twice: its fence row goes
in before it runs, its outcome after. :class:`InlineWriter` writes both in the
calling thread (``runjobs --run``, a task worker, a library call); ``runjobs``
itself writes through
:class:`~django_oncejob.running.history_writer.HistoryWriter`'s own threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from django.utils import timezone

from django_oncejob.db import is_connection_error
from django_oncejob.models import Run
from django_oncejob.running import history
from django_oncejob.running.history import Ending

T = TypeVar("T")

logger = logging.getLogger("django_oncejob")

#: Pauses between tries while the database fails, then the last one again and again.
RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)


class Writer:
    """What the pipeline asks of the history: fence rows, record endings, run a statement.

    Both writers keep the rows fenced here whose ending is not recorded yet, for a
    shutdown that cannot wait for them.
    """

    def __init__(self) -> None:
        self._running: dict[int, Run] = {}
        self._running_lock = threading.Lock()

    def fence(self, rows: Sequence[Run]) -> list[bool] | None:
        """Insert the rows; ``False`` for each another instance holds, ``None`` for no answer."""
        raise NotImplementedError

    def finish(self, row: Run, ending: Ending) -> None:
        """Record how the occurrence of ``row`` ended, however long the database takes."""
        raise NotImplementedError

    def call(self, func: Callable[[], T]) -> T:
        """Run ``func`` on the history's connection and return what it returns, or raise."""
        raise NotImplementedError

    def running(self) -> list[Run]:
        """The rows fenced here whose ending is not recorded yet."""
        with self._running_lock:
            return list(self._running.values())

    def adopt(self, row: Run) -> None:
        """Count ``row``, taken over in the history, among the ones running here."""
        with self._running_lock:
            self._running[id(row)] = row

    def forget(self, row: Run) -> None:
        """``row`` is settled elsewhere from now on: a task worker runs it, or it ended."""
        with self._running_lock:
            self._running.pop(id(row), None)

    def _fenced(self, rows: Sequence[Run], inserted: Sequence[bool]) -> None:
        with self._running_lock:
            for row, done in zip(rows, inserted, strict=True):
                if done:
                    self._running[id(row)] = row


def log_taken_over(row: Run) -> None:
    logger.warning(
        "Job %r at %s ended %s here, but another instance had taken it over; its record stands.",
        row.job,
        row.scheduled_for.isoformat(),
        row.status,
        extra={"oncejob_event": "taken-over", "oncejob_job": row.job},
    )


def log_lost(row: Run, ending: Ending, exc: BaseException | None, why: str) -> None:
    logger.error(
        "Job %r at %s ended %s, but the history could not record it (%s): %s",
        row.job,
        row.scheduled_for.isoformat(),
        ending.status,
        why,
        ending.error or "no error",
        exc_info=exc,
        extra={"oncejob_event": "history-error", "oncejob_job": row.job},
    )


class InlineWriter(Writer):
    """Writes in the calling thread, on its connection, trying a failed outcome a few times."""

    def __init__(self, retry_delays: Sequence[float] = RETRY_DELAYS) -> None:
        super().__init__()
        self.retry_delays = retry_delays

    def fence(self, rows: Sequence[Run]) -> list[bool] | None:
        try:
            inserted = history.insert_running(rows)
        except Exception:
            logger.warning(
                "Could not fence %d occurrence(s) in the history.", len(rows), exc_info=True
            )
            return None
        self._fenced(rows, inserted)
        return inserted

    def finish(self, row: Run, ending: Ending) -> None:
        self.forget(row)
        ending.finished_at = ending.finished_at or timezone.now()
        for delay in (*self.retry_delays, None):
            try:
                [ours] = history.write_endings([(row, ending)])
            except Exception as exc:
                if delay is None or not is_connection_error(exc):
                    log_lost(row, ending, exc, "the database failed")
                    return
                time.sleep(delay)
                continue
            if not ours:
                log_taken_over(row)
            return

    def call(self, func: Callable[[], T]) -> T:
        return func()
