"""The history writer of ``runjobs``, on database connections of its own.

``runjobs`` sends fences through one thread and outcomes through another, each
keeping its connection open whatever ``CONN_MAX_AGE`` says (reopened after an
error), so that a won occurrence opens no connection of its own. The fences of
all the claims waiting at one moment go in together, and a claim waits for its
fence at most :data:`FENCE_WAIT` seconds: past that, or with the database
down, the cache claim alone decides, as it would without a history. Outcomes
are queued and written in batches, and retried until the database answers, so
that no outcome is lost while its instance lives.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from django.db import connections, router
from django.utils import timezone

from django_oncejob.db import close_own_connections, drop_broken_connections, is_connection_error
from django_oncejob.models import Run
from django_oncejob.running import history
from django_oncejob.running.history import Ending
from django_oncejob.running.writer import RETRY_DELAYS, Writer, log_lost, log_taken_over

T = TypeVar("T")

logger = logging.getLogger("django_oncejob")

#: Seconds a won claim waits for its fence row before it runs on the cache claim alone.
FENCE_WAIT = 1.0
#: Outcomes written in one transaction at most.
ENDINGS_PER_COMMIT = 200
#: Seconds an outcome waits for others to go in with it, unless a full batch is queued.
ENDINGS_WAIT = 0.1
#: Outcomes kept for a database that does not answer; past this, the oldest are dropped, loudly.
MAX_QUEUED = 100_000


@dataclass
class _Fence:
    rows: Sequence[Run]
    done: threading.Event = field(default_factory=threading.Event)
    inserted: list[bool] | None = None
    #: Taken by the writer's thread: from here, the claim's waiting ends nothing.
    begun: bool = False


@dataclass
class _Call:
    func: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class HistoryWriter(Writer):
    """The history writer of ``runjobs``: fences on one thread, outcomes on another.

    Each thread has a connection of its own, so that a fence, on the way to a start,
    never waits behind a batch of outcomes being written.
    """

    def __init__(
        self,
        fence_wait: float = FENCE_WAIT,
        max_queued: int = MAX_QUEUED,
        endings_wait: float = ENDINGS_WAIT,
    ) -> None:
        super().__init__()
        self.fence_wait = fence_wait
        self.max_queued = max_queued
        self.endings_wait = endings_wait
        self._lock = threading.Lock()
        #: What wakes each of the writer's two threads.
        self._to_fence = threading.Condition(self._lock)
        self._to_record = threading.Condition(self._lock)
        self._fences: list[_Fence] = []
        self._calls: list[_Call] = []
        self._endings: deque[tuple[Run, Ending]] = deque()
        #: When the oldest outcome queued was queued: the batch goes out endings_wait later.
        self._endings_since = 0.0
        self._stopping = False
        #: Consecutive failures of the database, and when to try it again.
        self._failures = 0
        self._retry_at = 0.0
        #: When the fence insert in flight began (one stuck on a lock answers no claim),
        #: and its rows, whose outcomes wait for it.
        self._fencing_since: float | None = None
        self._fencing: set[int] = set()
        self._fencer = threading.Thread(
            target=self._loop, args=(self._fence_round,), name="oncejob-fence", daemon=True
        )
        self._recorder = threading.Thread(
            target=self._loop, args=(self._endings_round,), name="oncejob-history", daemon=True
        )

    # --- asked by other threads -------------------------------------------------------

    def start(self) -> None:
        self._fencer.start()
        self._recorder.start()

    def fence(self, rows: Sequence[Run]) -> list[bool] | None:
        request = _Fence(rows)
        with self._lock:
            stuck = self._fencing_since is not None and (
                time.monotonic() - self._fencing_since > self.fence_wait
            )
            if self._stopping or not self._fencer.is_alive() or self._failing() or stuck:
                return None
            self._fences.append(request)
            self._to_fence.notify()
        if not request.done.wait(self.fence_wait):
            with self._lock:
                if not request.begun:
                    self._fences.remove(request)
                    return None
            # Begun: the insert is on its way, and its rows will be this instance's if it
            # succeeds. Whatever happens next, each is recorded through finish().
            logger.warning(
                "The history took over %s s to fence %d occurrence(s); running the ones "
                "won in the cache on the cache claim alone.",
                self.fence_wait,
                len(rows),
            )
            return None
        return request.inserted

    def finish(self, row: Run, ending: Ending) -> None:
        ending.finished_at = ending.finished_at or timezone.now()
        self.forget(row)
        with self._lock:
            if not self._endings:
                self._endings_since = time.monotonic()
            self._endings.append((row, ending))
            if len(self._endings) > self.max_queued:
                dropped, lost = self._endings.popleft()
                log_lost(dropped, lost, None, f"more than {self.max_queued} outcomes waiting")
            # The recorder wakes for the first outcome's deadline by itself; waking it for
            # each one would take the processor from the claims and fences of a burst.
            if len(self._endings) in (1, ENDINGS_PER_COMMIT):
                self._to_record.notify()

    def call(self, func: Callable[[], T]) -> T:
        request = _Call(func)
        with self._lock:
            if not self._fencer.is_alive():
                return func()
            self._calls.append(request)
            self._to_fence.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.value  # type: ignore[no-any-return]

    def stop(self, timeout: float) -> bool:
        """Write what is queued, for ``timeout`` seconds at most; ``True`` if all of it went in."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            self._to_fence.notify()
            self._to_record.notify()
        for thread in (self._fencer, self._recorder):
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._endings)
        for row, ending in left:
            log_lost(row, ending, None, "runjobs stopped before the database answered")
        return not left

    # --- the writer's own threads ------------------------------------------------------

    def _failing(self) -> bool:
        return self._failures > 0 and time.monotonic() < self._retry_at

    def _loop(self, turn: Callable[[], bool]) -> None:
        try:
            # Connected before the first occurrence needs it; a database down now is
            # tried again by the first statement.
            with contextlib.suppress(Exception):
                connections[router.db_for_write(Run)].ensure_connection()
            while turn():
                pass
        except BaseException:
            logger.critical("The history writer stopped on an error.", exc_info=True)
            raise
        finally:
            close_own_connections()

    def _fence_round(self) -> bool:
        with self._lock:
            while not (self._fences or self._calls):
                if self._stopping:
                    return False
                self._to_fence.wait()
            fences, self._fences = self._fences, []
            for request in fences:
                request.begun = True
            if fences:
                self._fencing_since = time.monotonic()
                self._fencing = {id(row) for request in fences for row in request.rows}
            calls, self._calls = self._calls, []
        if fences:
            try:
                self._fence(fences)
            finally:
                with self._lock:
                    self._fencing_since = None
                    self._fencing = set()
                    if self._endings:
                        self._to_record.notify()
        for call in calls:
            self._call(call)
        return True

    def _endings_due(self) -> float | None:
        """Seconds until the queued outcomes are to be written; ``None`` until a fence ends.

        ``None`` too with none queued: the next outcome wakes the recorder.
        """
        if not self._endings:
            return None
        # A row whose fence is still in flight is written once the fence has answered.
        if self._fencing and any(
            row.pk is None and id(row) in self._fencing for row, _ in self._endings
        ):
            return None
        if self._failing():
            return self._retry_at - time.monotonic()
        if self._stopping or len(self._endings) >= ENDINGS_PER_COMMIT:
            return 0.0
        return max(0.0, self._endings_since + self.endings_wait - time.monotonic())

    def _endings_round(self) -> bool:
        with self._lock:
            while (wait := self._endings_due()) is None or wait > 0:
                if self._stopping and not self._endings:
                    return False
                self._to_record.wait(wait)
            count = min(ENDINGS_PER_COMMIT, len(self._endings))
            endings = [self._endings.popleft() for _ in range(count)]
        self._write(endings)
        return True

    def _fence(self, requests: list[_Fence]) -> None:
        rows = [row for request in requests for row in request.rows]
        try:
            inserted = self._try(lambda: history.insert_running(rows))
        except Exception:
            logger.warning(
                "Could not fence %d occurrence(s) in the history.", len(rows), exc_info=True
            )
            for request in requests:
                request.done.set()
            return
        self._fenced(rows, inserted)
        at = 0
        for request in requests:
            request.inserted = inserted[at : at + len(request.rows)]
            at += len(request.rows)
            request.done.set()

    def _call(self, request: _Call) -> None:
        try:
            request.value = self._try(request.func)
        except BaseException as exc:
            request.error = exc
        request.done.set()

    def _write(self, endings: list[tuple[Run, Ending]]) -> None:
        try:
            ours = self._try(lambda: history.write_endings(endings))
        except Exception as exc:
            if is_connection_error(exc):
                with self._lock:
                    self._endings.extendleft(reversed(endings))
                return
            # Something in the batch cannot be stored: write them one by one to find it.
            ours = []
            for one in endings:
                try:
                    ours.extend(self._try(partial(history.write_endings, [one])))
                except Exception as error:
                    if is_connection_error(error):
                        with self._lock:
                            self._endings.extendleft(reversed(endings[len(ours) :]))
                        break
                    log_lost(*one, error, "the database refused it")
                    ours.append(True)
        for (row, _ending), mine in zip(endings, ours, strict=False):
            if not mine:
                log_taken_over(row)

    def _try(self, func: Callable[[], T]) -> T:
        """``func`` on this thread's connection, again at once on a fresh one if the old one failed.

        A connection that sat idle may have been closed by the server (a restart,
        ``idle_session_timeout``, a pooler): the first statement on it fails, and
        the second, on a new connection, tells whether the database is really down.
        """
        for attempt in (1, 2):
            try:
                value = func()
            except Exception as exc:
                drop_broken_connections()
                if not is_connection_error(exc):
                    raise
                if attempt == 1 and self._failures == 0:
                    continue
                self._failed(exc)
                raise
            if self._failures:
                self._failures = 0
                logger.warning("The history database answers again.")
            return value
        raise AssertionError("unreachable")

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            delay = RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS) - 1)]
            self._failures += 1
            self._retry_at = time.monotonic() + delay
            if self._failures == 1:
                logger.warning(
                    "The history database failed; outcomes wait for it to answer.", exc_info=exc
                )
