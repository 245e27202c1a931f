"""Takes orders from the database: run-now requests, paused jobs, and the sweep for misses.

The admin never runs a job itself. It writes a request; every live instance
looks every CONTROL_INTERVAL seconds, and one conditional UPDATE gives the
request to exactly one of them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from django.db import IntegrityError
from django.utils import timezone

from django_oncejob.fleet import missed
from django_oncejob.fleet.background import BackgroundThread
from django_oncejob.fleet.clock import DatabaseClock
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import JobState, RunRequest

if TYPE_CHECKING:
    from django_oncejob.scheduling.executor import ClaimingExecutor

#: Seconds between two sweeps for missed occurrences by one instance.
SWEEP_INTERVAL = 60.0
#: Run requests taken per look, so that one instance cannot hoard a burst.
REQUESTS_PER_LOOK = 5
#: Waiting requests read per look: those for jobs this instance does not have (during a
#: deploy that adds a job, say) are left to the instances that have them.
REQUESTS_SEEN = 50


class Control(BackgroundThread):
    """Every ``interval`` seconds: the paused jobs, the run requests, now and then a sweep."""

    failure = "Could not read run requests and paused jobs on %s."

    def __init__(
        self,
        owner: str,
        *,
        interval: float,
        jobs: Mapping[str, JobSpec],
        executor: ClaimingExecutor,
        clock: DatabaseClock,
        timeout: int,
    ) -> None:
        super().__init__("oncejob-control", owner, interval=interval)
        self.jobs = jobs
        self.executor = executor
        self.clock = clock
        self.timeout = timeout
        self._next_sweep = 0.0

    def work(self) -> None:
        # Paused jobs are few: reading them all is cheaper than sending every job id.
        paused = JobState.objects.filter(paused=True).values_list("job", flat=True)
        self.executor.paused = frozenset(job for job in paused if job in self.jobs)
        self.take_requests()
        if time.monotonic() >= self._next_sweep and self.executor.accepting:
            missed.sweep(self.jobs.values(), self.owner, self.clock.now(), self.timeout)
            self._next_sweep = time.monotonic() + SWEEP_INTERVAL

    def take_requests(self) -> None:
        waiting = RunRequest.objects.filter(taken_at__isnull=True).order_by("requested_at")
        ours = [request for request in waiting[:REQUESTS_SEEN] if request.job in self.jobs]
        for request in ours[:REQUESTS_PER_LOOK]:
            if not self.executor.accepting:
                return
            taken = RunRequest.objects.filter(pk=request.pk, taken_at__isnull=True).update(
                taken_by=self.owner, taken_at=timezone.now()
            )
            if not taken:
                continue
            try:
                self.executor.submit_manual(self.jobs[request.job], request)
            except RuntimeError:
                # Shutting down after all: the request goes back to the other instances,
                # unless a new one for the job came in meanwhile, which then stands for it.
                try:
                    RunRequest.objects.filter(pk=request.pk).update(taken_by="", taken_at=None)
                except IntegrityError:
                    RunRequest.objects.filter(pk=request.pk).delete()
                raise
