"""Builds this instance's APScheduler from the job specs and stops it gracefully."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from django.utils import timezone

from django_oncejob.conf import conf
from django_oncejob.db import close_old_connections
from django_oncejob.fleet import control, followups, heartbeat, schedules
from django_oncejob.fleet.clock import DatabaseClock
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.jobs.triggers import JitteredTrigger
from django_oncejob.jobs.versions import ScheduleBook
from django_oncejob.models import Run
from django_oncejob.monitoring.sender import sender
from django_oncejob.running.history import Ending
from django_oncejob.running.history_writer import HistoryWriter
from django_oncejob.running.pipeline import Pipeline
from django_oncejob.scheduling.executor import ClaimingExecutor
from django_oncejob.scheduling.jobstore import RankedMemoryJobStore

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
        self.writer = HistoryWriter()
        self.clock = DatabaseClock()
        self.pipeline = Pipeline(owner, self.writer)
        #: Each job with its schedule over time, as the versions in the database say.
        self.book = ScheduleBook({job.id: job for job in self.jobs})
        self.executor = ClaimingExecutor(self.book, self.pipeline, max_workers, self.clock)
        # The monitors' deliveries wait for this instance's starts and runs.
        sender().hold_while(self.executor.busy)
        store = RankedMemoryJobStore(owner)
        self.scheduler = ClaimingScheduler(
            self.executor, jobstores={"default": store}, timezone=conf.TIMEZONE
        )
        self.heartbeat = heartbeat.Heartbeat(
            owner,
            interval=conf.HEARTBEAT_INTERVAL,
            timeout=conf.HEARTBEAT_TIMEOUT,
            jobs=self.book,
            rerun=self.executor.submit_rerun,
            running=lambda: {row.pk for row in self.writer.running() if row.pk is not None},
            clock=self.clock,
            peers=self._peers,
        )
        self.control = control.Control(
            owner,
            interval=conf.CONTROL_INTERVAL,
            jobs=self.book,
            executor=self.executor,
            clock=self.clock,
            timeout=conf.HEARTBEAT_TIMEOUT,
        )
        self.control.rescheduled = self._reschedule
        self.followups = followups.Followups(
            owner,
            interval=conf.CONTROL_INTERVAL,
            jobs=self.book,
            executor=self.executor,
            clock=self.clock,
        )
        self.pipeline.retrying = self.followups.expect
        self.pipeline.failed = self.followups.failed = self.control.failures.failed
        self.store = store
        for job in self.jobs:
            # APScheduler holds the job's own callable for its bookkeeping; the
            # executor runs the spec through the claim instead of calling it directly.
            self.scheduler.add_job(
                job.resolve(),
                trigger=self._trigger(job.id),
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
        self.writer.start()
        # Nothing is claimed before this instance has registered and settled what an
        # earlier run under its owner left running.
        self.scheduler.start(paused=True)
        self.heartbeat.tick()
        # The schedules in force: this release's, or another's until the switch to this one.
        try:
            schedules.record_deployed(self.book.deployed, self.owner)
            self._reschedule(schedules.read(self.book))
        except Exception:
            logger.warning(
                "Could not read the jobs' schedule versions; following this release's "
                "definitions until the control thread reads them.",
                exc_info=True,
            )
        # Those were this thread's only queries: its connection goes as CONN_MAX_AGE says.
        close_old_connections()
        self.control.started_at = self.clock.utc_now()
        self.scheduler.resume()
        self.heartbeat.start()
        self.control.start()
        self.followups.start()

    def _trigger(self, job_id: str) -> BaseTrigger | None:
        trigger = self.book.trigger(job_id)
        jitter = self.book[job_id].jitter
        return JitteredTrigger(trigger, job_id, jitter) if trigger and jitter else trigger

    def _reschedule(self, job_ids: Collection[str]) -> None:
        """Fire the jobs by their schedules as the versions now say."""
        for job_id in job_ids:
            trigger = self._trigger(job_id)
            if trigger is None:
                logger.warning(
                    "Job %r: no version of its schedule is this instance's to run; other "
                    "instances run it.",
                    job_id,
                )
                self.scheduler.pause_job(job_id)
            else:
                self.scheduler.reschedule_job(job_id, trigger=trigger)
            pending = self.book.schedule(job_id).pending(timezone.now())
            if pending is not None and pending.begin is not None:
                logger.info(
                    "Job %r switches to a new version of its schedule at %s: %s.",
                    job_id,
                    pending.begin.isoformat(),
                    pending.trigger_text,
                )

    def _peers(self, owners: Collection[str]) -> None:
        """The live instances, after each heartbeat: whose turn each job and attempt is."""
        self.store.prefer(owners)
        self.followups.set_peers(owners)

    def stop_claiming(self) -> None:
        """Claim nothing more; occurrences due from now on are left to other instances."""
        self.heartbeat.reaping.clear()
        self.executor.stop_claiming()
        self.control.stop()
        self.followups.stop()
        self.scheduler.shutdown(wait=False)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for running jobs; ``True`` if none is left."""
        return self.executor.wait(timeout)

    def interrupt(self, reason: str) -> int:
        """Record the occurrences still running here as failed with ``reason``; how many."""
        rows = self.writer.running()
        for row in rows:
            self.writer.finish(row, Ending(Run.Status.FAILED, reason))
        return len(rows)

    def sign_off(self, timeout: float) -> bool:
        """Write the outcomes still queued, stop the heartbeat, record that this instance left.

        ``True`` if every outcome reached the history within ``timeout`` seconds.
        """
        written = self.writer.stop(timeout)
        self.heartbeat.stop()
        try:
            heartbeat.sign_off(self.owner)
        except Exception:
            logger.warning("Could not record that %s stopped.", self.owner, exc_info=True)
        return written
