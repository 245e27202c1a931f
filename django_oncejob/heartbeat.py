"""This instance's heartbeat in the database, and the reaping of silent instances' jobs.

A job whose instance was killed mid-run would stay "running" forever. Every
live instance beats every HEARTBEAT_INTERVAL seconds; any of them marks the
running rows of an instance silent for HEARTBEAT_TIMEOUT seconds as
abandoned, or takes them over to run again where the job asks for that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from django.db import IntegrityError
from django.db.models import F, Q
from django.utils import timezone

import django_oncejob
from django_oncejob.history import retry_locked
from django_oncejob.models import Claim, Instance
from django_oncejob.periodic import PeriodicThread
from django_oncejob.registry import JobSpec

logger = logging.getLogger("django_oncejob")


def beat(owner: str) -> None:
    """Record that this instance is alive, registering it on its first beat."""
    # Single statements only: on SQLite, a transaction that reads and then writes
    # fails at once with "database is locked" when another process writes.
    now = timezone.now()
    if retry_locked(
        lambda: Instance.objects.filter(owner=owner).update(heartbeat_at=now, stopped_at=None)
    ):
        return
    # IntegrityError: registered meanwhile under the same owner; the next beat updates it.
    with contextlib.suppress(IntegrityError):
        retry_locked(
            lambda: Instance.objects.create(
                owner=owner,
                host=socket.gethostname()[:255],
                pid=os.getpid(),
                version=django_oncejob.__version__,
                started_at=now,
                heartbeat_at=now,
            )
        )


def sign_off(owner: str) -> None:
    """Record that this instance stopped on purpose."""
    Instance.objects.filter(owner=owner).update(stopped_at=timezone.now())


def reap(owner: str, timeout: int, jobs: Mapping[str, JobSpec]) -> list[Claim]:
    """Settle the running rows of instances silent for ``timeout`` seconds.

    Returns the rows this instance took over to run again; every other such
    row becomes abandoned. Each row changes hands in one conditional UPDATE,
    so when several instances reap at once, exactly one of them settles it.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=timeout)
    Instance.objects.filter(stopped_at__isnull=True, heartbeat_at__lt=cutoff).update(stopped_at=now)
    live = Instance.objects.filter(live_instances(timeout, now))
    # Rows handed to a task queue are run by workers, which send no heartbeat.
    orphans = Claim.objects.filter(
        status=Claim.Status.RUNNING, started_at__lt=cutoff, task_backend=""
    ).exclude(owner__in=live.values("owner"))
    taken = []
    for row in orphans:
        mine = Claim.objects.filter(pk=row.pk, status=Claim.Status.RUNNING, owner=row.owner)
        job = jobs.get(row.job)
        if job is not None and job.rerun_abandoned:
            if mine.update(owner=owner, started_at=now, attempts=F("attempts") + 1):
                logger.warning(
                    "Job %r at %s was abandoned by %s; running it again here.",
                    row.job,
                    row.scheduled_for.isoformat(),
                    row.owner,
                )
                row.refresh_from_db()
                taken.append(row)
            continue
        if mine.update(
            status=Claim.Status.ABANDONED,
            finished_at=now,
            error=f"Abandoned: {row.owner} stopped sending heartbeats while running it.",
        ):
            logger.warning(
                "Job %r at %s marked abandoned: %s stopped sending heartbeats.",
                row.job,
                row.scheduled_for.isoformat(),
                row.owner,
            )
    return taken


def live_instances(timeout: int, now: datetime | None = None) -> Q:
    """A filter on :class:`Instance` for the ones alive now."""
    cutoff = (now or timezone.now()) - timedelta(seconds=timeout)
    return Q(stopped_at__isnull=True, heartbeat_at__gte=cutoff)


class Heartbeat(PeriodicThread):
    """Beats and reaps every ``interval`` seconds until stopped."""

    failure = "Could not write the heartbeat of %s."

    def __init__(
        self,
        owner: str,
        *,
        interval: float,
        timeout: int,
        jobs: Mapping[str, JobSpec],
        rerun: Callable[[JobSpec, Claim], None],
    ) -> None:
        super().__init__("oncejob-heartbeat", owner, interval=interval)
        self.timeout = timeout
        self.jobs = jobs
        self.rerun = rerun
        #: Cleared while shutting down: keep beating for the jobs still running, take on no more.
        self.reaping = threading.Event()
        self.reaping.set()

    def work(self) -> None:
        beat(self.owner)
        if self.reaping.is_set():
            for row in reap(self.owner, self.timeout, self.jobs):
                self.rerun(self.jobs[row.job], row)
