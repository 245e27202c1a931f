"""What the history leaves for later, taken up by whichever instance comes first.

Three kinds of rows wait in the history for a live instance, whichever ran them
before: the next attempt of a failed occurrence, due at ``next_attempt_at``; an
occurrence waiting for the run of its job before it (``overlap="buffer_one"``);
and a run past its deadline, whose instance did not record it as timed out (it
died, or its database write failed). Every instance reads them every
CONTROL_INTERVAL seconds and acts at the time each is due, by the database's
clock. An attempt is claimed in the cache under its own key, then taken with one
conditional UPDATE, so it runs once however many instances try.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import Q

from django_oncejob import monitoring, signals
from django_oncejob.cache.claim import ClaimResult, claim
from django_oncejob.cache.locks import break_lock
from django_oncejob.conf import conf
from django_oncejob.db import close_own_connections
from django_oncejob.fleet.background import BackgroundThread
from django_oncejob.fleet.clock import DatabaseClock
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Run
from django_oncejob.monitoring import metrics
from django_oncejob.monitoring.watch import Watch
from django_oncejob.occurrence import Occurrence
from django_oncejob.running import handover

if TYPE_CHECKING:
    from django_oncejob.scheduling.executor import ClaimingExecutor

logger = logging.getLogger("django_oncejob")

#: Past a deadline, how long the instance running the job has to record it first.
DEADLINE_GRACE = 1.0
#: Between one instance's turn at an attempt and the next one's: the first choice among
#: the live instances (a hash of the attempt) tries first, the others just after.
TURN = 0.2
#: The last turn: every instance has tried an attempt by then.
LAST_TURN = 1.0

#: How long after its time an attempt whose claim was won, but whose row nobody took, waits.
STALE_CLAIM = timedelta(seconds=30)

RETRY, WAITING, DEADLINE = "retry", "waiting", "deadline"


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    kind: str = field(compare=False)
    row: Run = field(compare=False)


class Followups(BackgroundThread):
    """Reads the rows left for later every ``interval`` seconds, and acts on each when due."""

    failure = "Could not take up retries, waiting occurrences or deadlines on %s."

    def __init__(
        self,
        owner: str,
        *,
        interval: float,
        jobs: Mapping[str, JobSpec],
        executor: ClaimingExecutor,
        clock: DatabaseClock,
    ) -> None:
        super().__init__("oncejob-followups", owner, interval=interval)
        self.jobs = jobs
        self.executor = executor
        self.clock = clock
        self._lock = threading.Lock()
        self._due: list[_Due] = []
        self._known: set[tuple[str, int, int]] = set()
        self._seq = itertools.count()
        self._wake = threading.Event()
        self._next_read = 0.0
        #: The live instances, by the last heartbeat: whose turn an attempt is first.
        self.peers: tuple[str, ...] = (owner,)
        #: Told the job id of each run this instance recorded as timed out.
        self.failed: Callable[[str], None] | None = None

    def set_peers(self, owners: Collection[str]) -> None:
        self.peers = tuple(sorted(set(owners) | {self.owner}))

    def expect(self, row: Run) -> None:
        """A row this instance left retrying: try it when due, without waiting for a read."""
        if self._schedule(RETRY, row):
            self._wake.set()

    def run(self) -> None:
        try:
            while not self._stopped.is_set():
                self.tick()
                with self._lock:
                    first = self._due[0].at if self._due else float("inf")
                wait = max(0.0, min(self._next_read, first) - time.monotonic())
                self._wake.wait(wait)
                self._wake.clear()
        finally:
            close_own_connections()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=self.interval + 5)

    def work(self) -> None:
        if time.monotonic() >= self._next_read:
            self._next_read = time.monotonic() + self.interval
            self.read()
        for due in self._take_due():
            try:
                self.follow(due.kind, due.row)
            except Exception:
                logger.warning(
                    "Could not take up job %r at %s (%s).",
                    due.row.job,
                    due.row.scheduled_for.isoformat(),
                    due.kind,
                    exc_info=True,
                )

    def read(self) -> None:
        """Schedule the rows the history holds for later."""
        rows = Run.objects.filter(
            Q(status__in=[Run.Status.RETRYING, Run.Status.WAITING])
            | Q(status=Run.Status.RUNNING, deadline__isnull=False)
        ).defer("traceback", "result", "error")
        for row in rows:
            if row.job not in self.jobs:
                continue
            if row.status == Run.Status.RETRYING:
                self._schedule(RETRY, row)
            elif row.status == Run.Status.WAITING:
                self._schedule(WAITING, row)
            else:
                self._schedule(DEADLINE, row)

    def _schedule(self, kind: str, row: Run) -> bool:
        key = (kind, row.pk, row.attempts)
        if kind == RETRY:
            assert row.next_attempt_at is not None
            at = self._monotonic(row.next_attempt_at) + self._turn(row)
        elif kind == DEADLINE:
            assert row.deadline is not None
            at = self._monotonic(row.deadline) + DEADLINE_GRACE
        else:
            at = time.monotonic()
        with self._lock:
            if key in self._known:
                return False
            self._known.add(key)
            heapq.heappush(self._due, _Due(at, next(self._seq), kind, row))
        return True

    def _monotonic(self, when: datetime) -> float:
        """The monotonic time at which the database's clock reads ``when``."""
        return time.monotonic() + (when - self.clock.utc_now()).total_seconds()

    def _turn(self, row: Run) -> float:
        name = f"{row.job}:{row.scheduled_for.isoformat()}:{row.attempts + 1}"
        ranked = sorted(
            self.peers, key=lambda owner: hashlib.sha256(f"{name}:{owner}".encode()).digest()
        )
        return min(LAST_TURN, ranked.index(self.owner) * TURN)

    def _take_due(self) -> list[_Due]:
        now = time.monotonic()
        due = []
        with self._lock:
            while self._due and self._due[0].at <= now:
                item = heapq.heappop(self._due)
                self._known.discard((item.kind, item.row.pk, item.row.attempts))
                due.append(item)
        return due

    def follow(self, kind: str, row: Run) -> None:
        job = self.jobs[row.job]
        if not self.executor.accepting or (kind != DEADLINE and job.id in self.executor.paused):
            return  # a paused job's retries and waiting occurrences wait for its resumption
        if kind == RETRY:
            self.retry(job, row)
        elif kind == WAITING:
            self.start_waiting(job, row)
        else:
            self.time_out(job, row)

    def retry(self, job: JobSpec, row: Run) -> None:
        attempt = row.attempts + 1
        result = claim(job.id, row.scheduled_for, self.owner, attempt)
        metrics.claimed(job.id, result.value)
        assert row.next_attempt_at is not None
        stale = self.clock.utc_now() - row.next_attempt_at > STALE_CLAIM
        if result is ClaimResult.LOST and not stale:
            return
        # A claim that still stands long after the attempt was due was won by an instance
        # that died before it took the row: the row's conditional update decides alone.
        if result is ClaimResult.UNAVAILABLE and conf.ON_CACHE_ERROR == "skip":
            return
        taken = handover.take_attempt(row, self.owner, job.max_runtime)
        if taken is None:
            return
        logger.info(
            "Job %r at %s: attempt %d of %d taken here.",
            job.id,
            row.scheduled_for.isoformat(),
            attempt,
            job.retries + 1,
        )
        self.executor.submit_rerun(job, taken)

    def start_waiting(self, job: JobSpec, row: Run) -> None:
        """Start the occurrence that waits, if no run of its job goes on any more."""
        if Run.objects.filter(job=job.id, status=Run.Status.RUNNING).exists():
            return  # that run's instance starts it as the run ends; a later read looks again
        taken = handover.take_waiting(job.id, self.owner, job.max_runtime)
        if taken is not None:
            self.executor.submit_rerun(job, taken)

    def time_out(self, job: JobSpec, row: Run) -> None:
        error = f"Timed out: still running past its max_runtime of {job.max_runtime} s."
        if not handover.time_out(row, error, by_owner=False):
            return
        occurrence = Occurrence(job.id, row.scheduled_for, row.owner, row.attempts)
        if job.lock_lifetime is not None:
            break_lock(job.id, f"{row.owner}@{row.scheduled_for.isoformat()}")
        logger.error(
            "Job %r at %s, run by %s, is past its max_runtime of %s s: recorded as timed out.",
            job.id,
            row.scheduled_for.isoformat(),
            row.owner,
            job.max_runtime,
        )
        watch = Watch(job, occurrence, row.attempts, started_here=False)
        watch.started_at = row.started_at
        watch.began = time.monotonic() - _seconds_since(row, self.clock)
        monitoring.end(watch, "timed_out", error)
        metrics.settled(job.id, "timed_out")
        if self.failed is not None:
            self.failed(job.id)
        for receiver, response in signals.occurrence_timed_out.send_robust(
            sender=job.id, occurrence=occurrence
        ):
            if isinstance(response, Exception):
                logger.error(
                    "Signal receiver %r failed for job %r.", receiver, job.id, exc_info=response
                )


def _seconds_since(row: Run, clock: DatabaseClock) -> float:
    if row.started_at is None:
        return 0.0
    return max(0.0, (clock.utc_now() - row.started_at) / timedelta(seconds=1))
