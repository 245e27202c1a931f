"""Takes orders from the database: run-now requests, backfills, paused jobs, and the sweep.

The admin never runs a job itself. It writes a request; every live instance
looks every CONTROL_INTERVAL seconds, and one conditional UPDATE gives the
request to exactly one of them. At its first look, an instance catches up the
occurrences of jobs with ``catchup`` that came due while no instance ran; at each,
it brings the failures in a row of the jobs that failed up to date.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import IntegrityError
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from django_oncejob.fleet import failures, missed, schedules
from django_oncejob.fleet.background import BackgroundThread
from django_oncejob.fleet.clock import DatabaseClock
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.jobs.versions import ScheduleBook
from django_oncejob.models import Backfill, Instance, JobState, RunRequest
from django_oncejob.running import backfill

if TYPE_CHECKING:
    from django_oncejob.scheduling.executor import ClaimingExecutor

logger = logging.getLogger("django_oncejob")

#: Who the JobState row says resumed a job whose pause ended.
PAUSE_ENDED = "django-oncejob (its pause ended)"
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
        #: When the scheduler began to run occurrences here: those due before, while no
        #: instance ran, are the ones to catch up.
        self.started_at: datetime | None = None
        self._caught_up = False
        #: The failures in a row of the jobs whose occurrences fail here.
        self.failures = failures.Failures(jobs)
        #: Told the ids of the jobs whose schedules new versions change.
        self.rescheduled: Callable[[set[str]], None] | None = None

    def work(self) -> None:
        if isinstance(self.jobs, ScheduleBook) and self.rescheduled is not None:
            changed = schedules.read(self.jobs)
            if changed:
                self.rescheduled(changed)
        # Paused and failing jobs are few: reading them all is cheaper than sending every id.
        states = JobState.objects.filter(Q(paused=True) | Q(failing_since__isnull=False))
        paused, failing, over = set(), [], False
        for job_id, is_paused, until, since in states.values_list(
            "job", "paused", "paused_until", "failing_since"
        ):
            if is_paused and (until is None or until > self.clock.now()):
                paused.add(job_id)
            over = over or (is_paused and until is not None and until <= self.clock.now())
            if since is not None:
                failing.append(job_id)
        if over:
            resumed = JobState.objects.pause_over().update(
                paused=False, paused_until=None, changed_at=Now(), changed_by=PAUSE_ENDED, note=""
            )
            logger.info("%d job(s) resumed: their pause ended.", resumed)
        self.executor.paused = frozenset(job for job in paused if job in self.jobs)
        self.take_requests()
        self.take_backfills()
        if not self._caught_up and self.started_at is not None and self.executor.accepting:
            self._caught_up = True
            self.catch_up(self.started_at)
        if time.monotonic() >= self._next_sweep and self.executor.accepting:
            missed.sweep(self.jobs.values(), self.owner, self.clock.now(), self.timeout)
            self._next_sweep = time.monotonic() + SWEEP_INTERVAL
        self.failures.check(failing)

    def catch_up(self, started_at: datetime) -> None:
        """Claim and fence the occurrences due while no instance ran, then run them."""
        for job_id, times in backfill.to_catch_up(list(self.jobs.values()), started_at).items():
            job = self.jobs[job_id]
            steps = backfill.claim_and_fence(
                self.executor.pipeline, job, times, paused=job_id in self.executor.paused
            )
            if steps:
                logger.warning(
                    "Job %r: catching up %d occurrence(s) due while no instance ran, from %s.",
                    job_id,
                    len(steps),
                    steps[0].occurrence.scheduled_for.isoformat(),
                )
                self.executor.submit_steps(steps)

    def take_backfills(self) -> None:
        """Take a backfill nobody runs: a new one, or one whose instance is gone."""
        live = Instance.objects.alive(self.timeout).values("owner")
        waiting = Backfill.objects.filter(finished_at__isnull=True).exclude(
            Q(taken_by__in=live) & ~Q(taken_by="")
        )
        for request in waiting.order_by("requested_at")[:REQUESTS_PER_LOOK]:
            if request.job not in self.jobs or not self.executor.accepting:
                continue
            taken = Backfill.objects.filter(
                pk=request.pk, taken_by=request.taken_by, finished_at__isnull=True
            ).update(taken_by=self.owner, taken_at=Now())
            if taken:
                self.executor.submit_backfill(self.jobs[request.job], request)

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
