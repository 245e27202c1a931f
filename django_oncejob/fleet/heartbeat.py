"""This instance's heartbeat in the database, and the settling of silent instances' jobs.

A job whose instance was killed mid-run would stay "running" forever. Every
live instance beats every HEARTBEAT_INTERVAL seconds, and each beat says until
when it holds: the database's time plus the instance's own HEARTBEAT_TIMEOUT.
Any instance marks the running rows of an instance whose last beat no longer
holds as abandoned, or takes them over to run again where the job asks for
that. Every time here is the database's, never one host's clock; and an
instance settles others' rows only once its own beats have gone through for a
whole HEARTBEAT_TIMEOUT: after the database was out of reach for everyone, the
first instance back waits for the others to beat again before it judges them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import timedelta
from typing import Any

from django.db import IntegrityError
from django.db.models.functions import Now

import django_oncejob
from django_oncejob.fleet.background import BackgroundThread
from django_oncejob.fleet.clock import DatabaseClock, measure_offset
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Instance, Run
from django_oncejob.running.history import retry_locked

logger = logging.getLogger("django_oncejob")

#: How long the row of an instance that stopped, or went silent, is kept.
GONE_KEPT = timedelta(days=1)


def beat(owner: str, timeout: int) -> tuple[float, float]:
    """Record that this instance is alive for ``timeout`` seconds more, registering it if new.

    Returns the database's time of the beat, in seconds since the epoch, and by how
    many seconds this host's clock is ahead of it.
    """
    # Single statements only: on SQLite, a transaction that reads and then writes
    # fails at once with "database is locked" when another process writes.
    mine = Instance.objects.filter(owner=owner)
    offset = retry_locked(lambda: measure_offset(mine.db))
    if not retry_locked(
        lambda: mine.update(
            heartbeat_at=Now(),
            expires_at=Now() + timedelta(seconds=timeout),
            stopped_at=None,
            clean_stop=False,
            clock_offset=offset,
        )
    ):
        # IntegrityError: registered meanwhile under the same owner; it holds as it is.
        with contextlib.suppress(IntegrityError):
            retry_locked(lambda: _register(owner, timeout, offset))
    return time.time() - offset, offset


def _register(owner: str, timeout: int, offset: float) -> None:
    Instance.objects.create(owner=owner, clock_offset=offset, **_this_process(timeout))


def _this_process(timeout: int) -> dict[str, Any]:
    """The columns of this process's row as it starts."""
    return {
        "host": socket.gethostname()[:255],
        "pid": os.getpid(),
        "version": django_oncejob.__version__,
        "started_at": Now(),
        "heartbeat_at": Now(),
        "expires_at": Now() + timedelta(seconds=timeout),
    }


def start(
    owner: str, timeout: int, jobs: Mapping[str, JobSpec], running: Collection[int] = ()
) -> list[Run]:
    """Register this instance as it starts, and settle what an earlier run of it left running.

    An instance restarted under the same owner (a pod's name, ``host:1`` in a
    container) finds the rows its killed predecessor had running: nothing else
    would ever settle them, since the owner is alive again. They are settled as a
    silent instance's are; returns the ones to run again. ``running``: the ids of the
    rows this process runs, left alone.
    """
    previous = Instance.objects.filter(owner=owner).alive(timeout).first()
    if previous is not None:
        logger.warning(
            "%s was still alive in the database (its last heartbeat holds until %s): it was "
            "restarted before its heartbeat ran out, or another runjobs runs under the same "
            "owner, which must not be; give each instance its own ONCEJOB['OWNER'].",
            owner,
            previous.expires_at,
        )
    updated = Instance.objects.filter(owner=owner).update(
        **_this_process(timeout), stopped_at=None, clean_stop=False
    )
    if not updated:
        beat(owner, timeout)
    left = Run.objects.filter(owner=owner, status=Run.Status.RUNNING, task_backend="")
    left = left.exclude(pk__in=list(running))
    return _settle(list(left), owner, jobs, f"{owner} restarted while running it")


def sign_off(owner: str) -> None:
    """Record that this instance stopped on purpose."""
    Instance.objects.filter(owner=owner).update(stopped_at=Now(), expires_at=Now(), clean_stop=True)


def reap(owner: str, timeout: int, jobs: Mapping[str, JobSpec]) -> list[Run]:
    """Settle the running rows of instances whose heartbeat no longer holds.

    ``timeout`` stands in for an instance's own for one that recorded none, and is
    how long a row with no live owner must have been running before it is settled.
    Returns the rows this instance took over to run again; every other such row
    becomes abandoned. Each row changes hands in one conditional UPDATE, so when
    several instances reap at once, exactly one of them settles it.
    """
    Instance.objects.filter(stopped_at__isnull=True).gone(timeout).update(stopped_at=Now())
    # Each restart under a new owner (host:pid) adds a row; the history keeps the names.
    Instance.objects.filter(stopped_at__lt=Now() - GONE_KEPT).delete()
    return _settle(list(Run.objects.orphaned(timeout)), owner, jobs, None)


def _settle(rows: list[Run], owner: str, jobs: Mapping[str, JobSpec], why: str | None) -> list[Run]:
    taken = []
    for row in rows:
        reason = why or f"{row.owner} stopped sending heartbeats while running it"
        job = jobs.get(row.job)
        if job is not None and job.rerun_abandoned:
            if Run.objects.take_over(row, owner, job.max_runtime):
                logger.warning(
                    "Job %r at %s was abandoned (%s); running it again here.",
                    row.job,
                    row.scheduled_for.isoformat(),
                    reason,
                )
                row.refresh_from_db()
                taken.append(row)
            continue
        if Run.objects.abandon(row, reason):
            logger.warning(
                "Job %r at %s marked abandoned: %s.",
                row.job,
                row.scheduled_for.isoformat(),
                reason,
            )
    return taken


def live_owners(timeout: int) -> list[str]:
    """The owners of the instances alive now, by the database's clock."""
    return list(Instance.objects.alive(timeout).values_list("owner", flat=True))


class Heartbeat(BackgroundThread):
    """Beats every ``interval`` seconds until stopped, and reaps once its beats have held."""

    failure = "Could not write the heartbeat of %s."

    def __init__(
        self,
        owner: str,
        *,
        interval: float,
        timeout: int,
        jobs: Mapping[str, JobSpec],
        rerun: Callable[[JobSpec, Run], None],
        running: Callable[[], Collection[int]] = frozenset,
        clock: DatabaseClock | None = None,
        peers: Callable[[Collection[str]], None] | None = None,
    ) -> None:
        super().__init__("oncejob-heartbeat", owner, interval=interval)
        self.timeout = timeout
        self.jobs = jobs
        self.rerun = rerun
        #: The ids of the rows this process runs.
        self.running = running
        self.registered = False
        #: Cleared while shutting down: keep beating for the jobs still running, take on no more.
        self.reaping = threading.Event()
        self.reaping.set()
        #: The database's time (seconds since the epoch) of the first beat of the current
        #: unbroken run of beats, and of the last.
        self.healthy_since: float | None = None
        self._last_beat: float | None = None
        #: Set to the database's at each beat.
        self.clock = clock or DatabaseClock()
        #: Told the live owners after each beat.
        self.peers = peers

    def work(self) -> None:
        if not self.registered:
            taken = start(self.owner, self.timeout, self.jobs, self.running())
            self.registered = True
            for row in taken:
                self.rerun(self.jobs[row.job], row)
        try:
            now, self.clock.offset = beat(self.owner, self.timeout)
        except Exception:
            self.healthy_since = None
            raise
        # A beat later than the timeout breaks the run: others may have taken this
        # instance for gone meanwhile, and it may have missed theirs.
        gap = self.timeout
        if self.healthy_since is None or self._last_beat is None or now - self._last_beat > gap:
            self.healthy_since = now
        self._last_beat = now
        if self.reaping.is_set() and now - self.healthy_since >= gap:
            for row in reap(self.owner, self.timeout, self.jobs):
                self.rerun(self.jobs[row.job], row)
        if self.peers is not None:
            self.peers(live_owners(self.timeout))


class WorkerHeartbeat:
    """The heartbeat of a task worker while it runs handed-off occurrences.

    A worker that dies mid-run then leaves rows that every instance sees as
    abandoned, as it would a ``runjobs`` instance's. One per process, however many
    occurrences its threads run at once: it beats from the first one's start to
    the last one's end.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._thread: _Beating | None = None

    @contextlib.contextmanager
    def running(self, owner: str, interval: float, timeout: int) -> Iterator[None]:
        with self._lock:
            self._runs += 1
            if self._runs == 1:
                beat(owner, timeout)
                self._thread = _Beating(owner, interval=interval, timeout=timeout)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._runs -= 1
                thread, done = self._thread, self._runs == 0
                if done:
                    self._thread = None
            if done and thread is not None:
                thread.stop()
                sign_off(owner)


class _Beating(BackgroundThread):
    failure = "Could not write the heartbeat of worker %s."

    def __init__(self, owner: str, *, interval: float, timeout: int) -> None:
        super().__init__("oncejob-worker-heartbeat", owner, interval=interval)
        self.timeout = timeout

    def run(self) -> None:
        # The first beat went in as the run began.
        if not self._stopped.wait(self.interval):
            super().run()

    def work(self) -> None:
        beat(self.owner, self.timeout)


#: This process's, for :mod:`~django_oncejob.handoff.worker`.
worker_heartbeat = WorkerHeartbeat()
