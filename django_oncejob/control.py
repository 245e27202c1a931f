"""Takes orders from the database: run-now requests, paused jobs, and the sweep for misses.

The admin never runs a job itself. It writes a request; every live instance
looks every CONTROL_INTERVAL seconds, and one conditional UPDATE gives the
request to exactly one of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from django_oncejob import missed
from django_oncejob.models import JobState, RunRequest
from django_oncejob.registry import JobSpec

if TYPE_CHECKING:
    from django_oncejob.executor import ClaimingExecutor

logger = logging.getLogger("django_oncejob")

#: Seconds between two sweeps for missed occurrences by one instance.
SWEEP_INTERVAL = 60.0
#: Run requests taken per look, so that one instance cannot hoard a burst.
REQUESTS_PER_LOOK = 5


class Control(threading.Thread):
    def __init__(
        self,
        owner: str,
        *,
        interval: float,
        jobs: Mapping[str, JobSpec],
        executor: ClaimingExecutor,
    ) -> None:
        super().__init__(name="oncejob-control", daemon=True)
        self.owner = owner
        self.interval = interval
        self.jobs = jobs
        self.executor = executor
        self._next_sweep = 0.0
        self._stopped = threading.Event()

    def run(self) -> None:
        while True:
            self.tick()
            if self._stopped.wait(self.interval):
                return

    def tick(self) -> None:
        close_old_connections()
        try:
            self.executor.paused = frozenset(
                JobState.objects.filter(paused=True, job__in=list(self.jobs)).values_list(
                    "job", flat=True
                )
            )
            self.take_requests()
            if time.monotonic() >= self._next_sweep and self.executor.accepting:
                missed.sweep(self.jobs.values(), self.owner)
                self._next_sweep = time.monotonic() + SWEEP_INTERVAL
        except DatabaseError:
            logger.warning("Could not read run requests and paused jobs.", exc_info=True)
        finally:
            close_old_connections()

    def take_requests(self) -> None:
        waiting = RunRequest.objects.filter(taken_at__isnull=True, job__in=list(self.jobs))
        for request in waiting.order_by("requested_at")[:REQUESTS_PER_LOOK]:
            if not self.executor.accepting:
                return
            taken = RunRequest.objects.filter(pk=request.pk, taken_at__isnull=True).update(
                taken_by=self.owner, taken_at=timezone.now()
            )
            if taken:
                self.executor.submit_manual(self.jobs[request.job], request)

    def stop(self) -> None:
        self._stopped.set()
        if self.is_alive():
            self.join(timeout=self.interval + 5)
