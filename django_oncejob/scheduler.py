"""Builds this instance's APScheduler from the job specs and stops it gracefully."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from django.db import DatabaseError

from django_oncejob import control, heartbeat
from django_oncejob.conf import conf
from django_oncejob.executor import ClaimingExecutor
from django_oncejob.jobstore import ShuffledMemoryJobStore
from django_oncejob.registry import JobSpec

logger = logging.getLogger("django_oncejob")


class ClaimingScheduler(BackgroundScheduler):  # type: ignore[misc]
    """APScheduler's background scheduler, handing each pass's due jobs to the claim at once."""

    def __init__(self, executor: ClaimingExecutor, **options: Any) -> None:
        self.claiming = executor
        super().__init__(executors={"default": executor}, **options)

    def _process_jobs(self) -> float | None:
        try:
            return super()._process_jobs()  # type: ignore[no-any-return]
        finally:
            # Every job due now has been handed over: claim them together.
            self.claiming.flush()


class JobScheduler:
    """One instance's scheduler: every instance builds the same one from settings."""

    def __init__(self, jobs: Iterable[JobSpec], *, owner: str, max_workers: int) -> None:
        self.owner = owner
        self.jobs = [job for job in jobs if job.enabled]
        self.executor = ClaimingExecutor({job.id: job for job in self.jobs}, owner, max_workers)
        self.scheduler = ClaimingScheduler(
            self.executor, jobstores={"default": ShuffledMemoryJobStore()}, timezone=conf.TIMEZONE
        )
        self.heartbeat = heartbeat.Heartbeat(
            owner,
            interval=conf.HEARTBEAT_INTERVAL,
            timeout=conf.HEARTBEAT_TIMEOUT,
            jobs={job.id: job for job in self.jobs},
            rerun=self.executor.submit_rerun,
        )
        self.control = control.Control(
            owner,
            interval=conf.CONTROL_INTERVAL,
            jobs={job.id: job for job in self.jobs},
            executor=self.executor,
        )
        for job in self.jobs:
            # APScheduler holds the job's own callable for its bookkeeping; the
            # executor runs the spec through the claim instead of calling it directly.
            self.scheduler.add_job(
                job.resolve(),
                trigger=job.trigger,
                args=job.args,
                kwargs=job.kwargs,
                id=job.id,
                name=job.id,
                misfire_grace_time=job.misfire_grace_time,
                # A late instance tries only the newest due time: the others were
                # claimed by live instances or are past saving.
                coalesce=True,
                # A job still running here leaves its next occurrence to another instance.
                max_instances=1,
            )

    def start(self) -> None:
        self.scheduler.start()
        self.heartbeat.start()
        self.control.start()

    def stop_claiming(self) -> None:
        """Claim nothing more; occurrences due from now on are left to other instances."""
        self.heartbeat.reaping.clear()
        self.executor.stop_claiming()
        self.control.stop()
        self.scheduler.shutdown(wait=False)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for running jobs; ``True`` if none is left."""
        return self.executor.wait(timeout)

    def sign_off(self) -> None:
        """Stop the heartbeat and record that this instance left on purpose."""
        self.heartbeat.stop()
        try:
            heartbeat.sign_off(self.owner)
        except DatabaseError:
            logger.warning("Could not record that %s stopped.", self.owner, exc_info=True)
