"""The APScheduler executor that claims the due occurrences right before running them."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job
from django.db.models import F
from django.db.models.functions import Now

from django_oncejob.cache.claim import ClaimResult, claim_many
from django_oncejob.fleet.clock import DatabaseClock
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.jobs.triggers import JitteredTrigger
from django_oncejob.jobs.versions import ScheduleBook
from django_oncejob.models import Backfill, Run, RunRequest
from django_oncejob.monitoring import metrics
from django_oncejob.running import backfill
from django_oncejob.running.pipeline import Pipeline
from django_oncejob.running.steps import Claimed, Fenced, Outcome

logger = logging.getLogger("django_oncejob")

#: Due jobs claimed together at most: the first of a burst of hundreds need not wait
#: for the scheduler to hand over the last before their claim goes out.
BATCH_SIZE = 10
#: Run batches out at once: one is answered while the next is sent, and no more, so
#: that a fast instance does not claim everything due before the others have begun.
BATCHES_IN_FLIGHT = 2


class ClaimingExecutor(BaseExecutor):  # type: ignore[misc]
    """Claims the due occurrences together, then runs the ones won in a thread pool.

    The scheduler hands over the due jobs, and a pool task claims a batch of them
    together (:func:`~django_oncejob.cache.claim.claim_many`), has the pipeline fence the
    ones won, and runs each on a thread, the first on its own. A batch holds no
    more jobs than there are threads free to start them now: an instance whose
    threads are all taken claims nothing until one is free, and leaves what falls
    due meanwhile to the others, as APScheduler's own thread pool would. The
    misfire check comes first, as in APScheduler's own executors, so an instance
    too late to run an occurrence never claims it.
    """

    def __init__(
        self,
        specs: Mapping[str, JobSpec],
        pipeline: Pipeline,
        max_workers: int,
        clock: DatabaseClock | None = None,
    ) -> None:
        super().__init__()
        self.specs = specs
        self.pipeline = pipeline
        self.clock = clock or DatabaseClock()
        self.owner = pipeline.owner
        self._max_workers = max_workers
        self._accepting = threading.Event()
        self._accepting.set()
        self._futures: set[concurrent.futures.Future[Any]] = set()
        #: Jobs handed over by the scheduler and not claimed yet.
        self._due: list[tuple[Job, list[datetime]]] = []
        self._lock = threading.Lock()
        #: Run tasks submitted and not answered yet.
        self._claiming = 0
        #: Runs on a thread or queued for one, and threads a claim keeps for what it may win.
        self._runs = 0
        self._reserved = 0
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        #: Job ids paused in the admin, refreshed by the control thread.
        self.paused: frozenset[str] = frozenset()

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self._max_workers, thread_name_prefix="oncejob"
        )

    def busy(self) -> bool:
        """Whether occurrences are due, being claimed or running here."""
        return bool(self._due) or self._claiming > 0 or self._runs > 0

    @property
    def accepting(self) -> bool:
        return self._accepting.is_set()

    def stop_claiming(self) -> None:
        """From now on, occurrences not claimed yet are left to other instances."""
        self._accepting.clear()
        self.flush()

    def wait(self, timeout: float) -> bool:
        """Wait for the running occurrences; ``True`` if all finished in time."""
        deadline = time.monotonic() + timeout
        # A claim still in flight may start runs: wait for those too.
        while pending := [future for future in list(self._futures) if not future.done()]:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            concurrent.futures.wait(pending, timeout=left)
        return True

    @property
    def running(self) -> int:
        return sum(1 for future in list(self._futures) if not future.done())

    def shutdown(self, wait: bool = True) -> None:
        # Nothing queued is cancelled: a queued claim finds the executor no longer
        # accepting and claims nothing, and what was claimed already still runs.
        if self._pool is not None:
            self._pool.shutdown(wait=wait)

    def submit_rerun(self, spec: JobSpec, row: Run) -> None:
        """Run an occurrence taken over from a dead instance, outside APScheduler's books."""
        self._submit_run(self.pipeline.rerun, spec, row)

    def submit_steps(self, steps: list[Fenced]) -> None:
        """Run occurrences fenced outside APScheduler's books (caught up), one after another."""
        self._submit_run(self._run_steps, steps)

    def submit_backfill(self, spec: JobSpec, request: Backfill) -> None:
        """Run a backfill this instance took, one occurrence after another."""
        self._submit_run(self._backfill, spec, request)

    def _run_steps(self, steps: list[Fenced]) -> None:
        for step in steps:
            self.pipeline.run(step)

    def _backfill(self, spec: JobSpec, request: Backfill) -> None:
        times = backfill.scheduled_between(spec, request.start, request.end)
        Backfill.objects.filter(pk=request.pk).update(total=len(times))
        logger.info(
            "Backfilling job %r: %d occurrence(s) from %s to %s, as %s asked.",
            spec.id,
            len(times),
            request.start.isoformat(),
            request.end.isoformat(),
            request.requested_by,
        )

        def ran(outcome: Outcome) -> None:
            Backfill.objects.filter(pk=request.pk).update(ran=F("ran") + 1)

        backfill.run_all(self.pipeline, spec, times, f"{request.requested_by} (backfill)", ran)
        Backfill.objects.filter(pk=request.pk, taken_by=self.owner).update(finished_at=Now())

    def submit_manual(self, spec: JobSpec, request: RunRequest) -> None:
        """Run a job now, as a run request this instance won asks."""
        self._submit_run(self.pipeline.run_manual, spec, request.requested_at, request.requested_by)

    def _submit(self, func: Callable[..., object], *args: Any) -> None:
        assert self._pool is not None, "The executor has not been started."
        future = self._pool.submit(func, *args)
        self._futures.add(future)
        future.add_done_callback(self._done)

    def _submit_run(self, func: Callable[..., object], *args: Any) -> None:
        """Run ``func`` on a pool thread, counted among the runs until it ends."""
        with self._lock:
            self._runs += 1
        try:
            self._submit(self._counted, func, *args)
        except BaseException:
            self._ended()
            raise

    def _counted(self, func: Callable[..., object], *args: Any) -> None:
        try:
            func(*args)
        finally:
            self._ended()

    def _ended(self) -> None:
        """A run has ended: its thread may take the next claim."""
        with self._lock:
            self._runs -= 1
        self.flush()

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        self._futures.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None:
            logger.error("A task of runjobs %s failed.", self.owner, exc_info=exc)

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        # Held until the scheduler has handed over every job due now (see flush()),
        # or enough of them to be worth claiming while it goes on with the others.
        with self._lock:
            self._due.append((job, run_times))
            full = len(self._due) >= BATCH_SIZE
        if full:
            self.flush()

    def flush(self) -> None:
        """Send claim tasks for the jobs handed over, ``BATCHES_IN_FLIGHT`` at most.

        The scheduler calls this after each pass over its due jobs, the executor
        every ``BATCH_SIZE`` jobs and whenever a task ends: a second in which
        hundreds of jobs are due costs one claim round trip and one fence insert
        per batch.
        """
        sends = 0
        with self._lock:
            if not self._accepting.is_set():
                left, self._due = self._due, []
            else:
                left = []
                sends = max(0, min(len(self._due), BATCHES_IN_FLIGHT - self._claiming))
                self._claiming += sends
        if left:
            for job, run_times in left:
                # No longer accepting: each is logged as missed or left to other instances.
                events: list[JobExecutionEvent] = []
                for run_time in run_times:
                    self._may_claim(job, run_time, events)
                self._run_job_success(job.id, events)
            return
        for _ in range(sends):
            try:
                self._submit(self._claim_batch)
            except RuntimeError:  # shut down: the jobs are left to other instances
                with self._lock:
                    self._claiming -= 1
                self._accepting.clear()
                self.flush()
                return

    def _take_batch(self) -> list[tuple[Job, list[datetime]]]:
        """The next jobs to claim: as many as there are threads free to start them now."""
        with self._lock:
            # Threads neither running nor queued to run a job, nor kept by another claim.
            free = self._max_workers - self._runs - self._reserved
            size = max(0, min(BATCH_SIZE, free))
            batch, self._due = self._due[:size], self._due[size:]
            self._reserved += len(batch)
        return batch

    def _answered(self, kept: int, won: int) -> None:
        """A claim has its answer: its ``won`` jobs become runs, and the next claim may go out."""
        with self._lock:
            self._claiming -= 1
            self._reserved -= kept
            self._runs += won
        self.flush()

    def _claim_batch(self) -> None:
        batch = self._take_batch()
        if not batch:
            # No thread free, or another claim took them: the end of a run sends the next.
            with self._lock:
                self._claiming -= 1
            return
        events: dict[str, list[JobExecutionEvent]] = {job.id: [] for job, _ in batch}
        try:
            due = [
                (job, self._scheduled_for(job, run_time))
                for job, run_times in batch
                for run_time in run_times
                if self._may_claim(job, run_time, events[job.id])
            ]
            results = claim_many([(job.id, run_time) for job, run_time in due], self.owner)
        except Exception as exc:
            self._answered(len(batch), 0)
            self._failed(batch, exc)
            return
        for (job, _), result in zip(due, results, strict=True):
            metrics.claimed(job.id, result.value)
        # A job due at several times runs them one after another, on one thread.
        held = {
            job.id
            for (job, _), result in zip(due, results, strict=True)
            if result is not ClaimResult.LOST
        }
        self._answered(len(batch), len(held))
        claimed = []
        for (job, run_time), result in zip(due, results, strict=True):
            if result is ClaimResult.LOST:
                events[job.id].append(self._event(job.id, run_time, Outcome.LOST))
            else:
                spec = self._spec(job.id, run_time)
                claimed.append(Claimed(spec, run_time, result, paused=spec.id in self.paused))
        # Jobs this instance holds no occurrence of are done here: told before the fence,
        # so that a slow one never makes APScheduler skip their next occurrence.
        self._settle([(job.id, events[job.id]) for job, _ in batch if job.id not in held])
        runs: dict[str, list[Fenced]] = {}
        try:
            fenced = self.pipeline.fence(claimed)
            for step, item in zip(fenced, claimed, strict=True):
                if isinstance(step, Fenced):
                    runs.setdefault(item.job.id, []).append(step)
                else:
                    events[item.job.id].append(self._event(item.job.id, item.scheduled_for, step))
        except Exception as exc:
            for _ in held:
                self._ended()
            self._failed([item for item in batch if item[0].id in held], exc)
            return
        unrun = held - runs.keys()  # fenced, paused or skipped: no run after all
        for _ in unrun:
            self._ended()
        won = [job for job, _ in batch if job.id in runs]
        for job in won[1:]:
            self._submit_or_call(self._counted, self._run_here, job, runs[job.id], events[job.id])
        self._settle([(job.id, events[job.id]) for job, _ in batch if job.id in unrun])
        if won:
            self._counted(self._run_here, won[0], runs[won[0].id], events[won[0].id])

    def _failed(self, batch: list[tuple[Job, list[datetime]]], exc: Exception) -> None:
        logger.error("Could not claim %d job(s).", len(batch), exc_info=exc)
        for job, _ in batch:
            self._run_job_error(job.id, exc, exc.__traceback__)

    def _submit_or_call(self, func: Callable[..., None], *args: Any) -> None:
        """Run ``func`` on a pool thread, or on this one if the pool has shut down.

        Called from a claim's task, which :meth:`wait` waits for: what it claimed
        runs all the same after a shutdown began.
        """
        try:
            self._submit(func, *args)
        except RuntimeError:
            func(*args)

    def _settle(self, done: list[tuple[str, list[JobExecutionEvent]]]) -> None:
        for job_id, events in done:
            self._run_job_success(job_id, events)

    def _spec(self, job_id: str, scheduled_for: datetime) -> JobSpec:
        """The job as the version of its schedule in force at ``scheduled_for`` defines it."""
        if isinstance(self.specs, ScheduleBook):
            return self.specs.spec_at(job_id, scheduled_for) or self.specs[job_id]
        return self.specs[job_id]

    @staticmethod
    def _scheduled_for(job: Job, run_time: datetime) -> datetime:
        """The occurrence's scheduled time, in UTC: ``run_time`` less the job's jitter."""
        if isinstance(job.trigger, JitteredTrigger):
            run_time = job.trigger.scheduled_for(run_time)
        return run_time.astimezone(UTC)

    def _may_claim(self, job: Job, run_time: datetime, events: list[JobExecutionEvent]) -> bool:
        lateness = self.clock.utc_now() - run_time
        if -lateness > timedelta(seconds=job.misfire_grace_time):
            logger.warning(
                "Job %r at %s left to other instances: due only in %s by the database's "
                "clock, which this host's runs ahead of.",
                job.id,
                run_time.isoformat(),
                -lateness,
            )
            return False
        if lateness > timedelta(seconds=job.misfire_grace_time):
            logger.warning(
                "Job %r at %s missed: %s late, past its misfire grace time.",
                job.id,
                run_time.isoformat(),
                lateness,
            )
            events.append(JobExecutionEvent(EVENT_JOB_MISSED, job.id, None, run_time))
            return False
        if not self._accepting.is_set():
            logger.info(
                "Job %r at %s left to other instances: shutting down.",
                job.id,
                run_time.isoformat(),
            )
            return False
        return True

    def _run_here(self, job: Job, runs: list[Fenced], events: list[JobExecutionEvent]) -> None:
        """Run the occurrences of ``job`` this instance fenced, and tell APScheduler."""
        try:
            for step in runs:
                outcome = self.pipeline.run(step)
                events.append(self._event(step.job.id, step.occurrence.scheduled_for, outcome))
        except Exception as exc:
            self._run_job_error(job.id, exc, exc.__traceback__)
        else:
            self._run_job_success(job.id, events)

    @staticmethod
    def _event(job_id: str, run_time: datetime, outcome: Outcome) -> JobExecutionEvent:
        code = EVENT_JOB_ERROR if outcome is Outcome.FAILED else EVENT_JOB_EXECUTED
        return JobExecutionEvent(code, job_id, None, run_time, retval=outcome)
