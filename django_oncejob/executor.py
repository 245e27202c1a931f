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
from django.db import close_old_connections

from django_oncejob.claim import ClaimResult, claim_many
from django_oncejob.models import Claim, RunRequest
from django_oncejob.registry import JobSpec
from django_oncejob.runner import (
    Claimed,
    Fenced,
    Outcome,
    fence,
    rerun_occurrence,
    run_fenced,
    run_manual,
)

logger = logging.getLogger("django_oncejob")

#: Due jobs claimed together at most: the first of a burst of hundreds need not wait
#: for the scheduler to hand over the last before their claim goes out.
BATCH_SIZE = 10
#: Claim batches out at once: one is answered while the next is sent, and no more, so
#: that a fast instance does not claim everything due before the others have begun.
BATCHES_IN_FLIGHT = 2


class ClaimingExecutor(BaseExecutor):  # type: ignore[misc]
    """Claims the due occurrences together, then runs the ones won in a thread pool.

    The scheduler hands over the due jobs, and a pool task claims each ``BATCH_SIZE``
    of them together (:func:`~django_oncejob.claim.claim_many`) and fences the ones
    won (:func:`~django_oncejob.runner.fence`); each then runs on a thread
    (:func:`~django_oncejob.runner.run_fenced`), the first on the claim's own.
    At most ``BATCHES_IN_FLIGHT`` batches are out at once, each on a pool thread as
    a job is: an instance whose threads are all taken claims nothing until one is
    free, and leaves what falls due meanwhile to the others, as APScheduler's own
    thread pool would.
    The misfire check comes first, as in APScheduler's own executors, so an
    instance too late to run an occurrence never claims it.
    """

    def __init__(self, specs: Mapping[str, JobSpec], owner: str, max_workers: int) -> None:
        super().__init__()
        self.specs = specs
        self.owner = owner
        self._max_workers = max_workers
        self._accepting = threading.Event()
        self._accepting.set()
        self._futures: set[concurrent.futures.Future[Any]] = set()
        #: Jobs handed over by the scheduler and not claimed yet.
        self._due: list[tuple[Job, list[datetime]]] = []
        self._due_lock = threading.Lock()
        #: Claim batches sent or waiting for a thread, and not answered yet.
        self._claiming = 0
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        #: Job ids paused in the admin, refreshed by the control thread.
        self.paused: frozenset[str] = frozenset()

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self._max_workers, thread_name_prefix="oncejob"
        )

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

    def submit_rerun(self, spec: JobSpec, row: Claim) -> None:
        """Run an occurrence taken over from a dead instance, outside APScheduler's books."""
        self._submit(rerun_occurrence, spec, row)

    def submit_manual(self, spec: JobSpec, request: RunRequest) -> None:
        """Run a job now, as a run request this instance won asks."""
        self._submit(run_manual, spec, request.requested_at, request.requested_by, self.owner)

    def _submit(self, func: Callable[..., object], *args: Any) -> None:
        assert self._pool is not None, "The executor has not been started."
        future = self._pool.submit(func, *args)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        # Held until the scheduler has handed over every job due now (see flush()),
        # or enough of them to be worth claiming while it goes on with the others.
        with self._due_lock:
            self._due.append((job, run_times))
            full = len(self._due) >= BATCH_SIZE
        if full:
            self.flush()

    def flush(self) -> None:
        """Claim the jobs handed over, ``BATCH_SIZE`` at a time.

        The scheduler calls this after each pass over its due jobs, the executor
        every ``BATCH_SIZE`` jobs and whenever a batch has its answer: a second in
        which hundreds of jobs are due costs one claim round trip and one fence insert
        per ``BATCH_SIZE`` jobs, with at most ``BATCHES_IN_FLIGHT`` of them out at once.
        """
        left: list[tuple[Job, list[datetime]]] = []
        while True:
            with self._due_lock:
                if not self._accepting.is_set():
                    left, self._due = self._due, []
                    break
                if not self._due or self._claiming >= BATCHES_IN_FLIGHT:
                    return
                batch, self._due = self._due[:BATCH_SIZE], self._due[BATCH_SIZE:]
                self._claiming += 1
            try:
                self._submit(self._claim_batch, batch)
            except RuntimeError:  # shut down: the batch is left to other instances
                with self._due_lock:
                    self._claiming -= 1
                self._settle([(job.id, []) for job, _ in batch])
        for job, run_times in left:
            # No longer accepting: each is logged as missed or left to other instances.
            events: list[JobExecutionEvent] = []
            for run_time in run_times:
                self._may_claim(job, run_time, events)
            self._run_job_success(job.id, events)

    def _claimed(self) -> None:
        """A batch has its answer from the cache: the next may go out."""
        with self._due_lock:
            self._claiming -= 1
        self.flush()

    def _claim_batch(self, batch: list[tuple[Job, list[datetime]]]) -> None:
        events: dict[str, list[JobExecutionEvent]] = {job.id: [] for job, _ in batch}
        try:
            due = [
                (job, run_time.astimezone(UTC))
                for job, run_times in batch
                for run_time in run_times
                if self._may_claim(job, run_time, events[job.id])
            ]
            results = claim_many([(job.id, run_time) for job, run_time in due], self.owner)
        except Exception as exc:
            self._failed(batch, exc)
            return
        finally:
            # Answered: the next batch may go out while this one is fenced and run.
            self._claimed()
        runs: dict[str, list[Fenced]] = {}
        try:
            claimed = []
            for (job, run_time), result in zip(due, results, strict=True):
                if result is ClaimResult.LOST:
                    events[job.id].append(self._event(job.id, run_time, Outcome.LOST))
                else:
                    spec = self.specs[job.id]
                    claimed.append(Claimed(spec, run_time, result, paused=spec.id in self.paused))
            fenced = fence(claimed, self.owner, keep_connection=True)
            for step, item in zip(fenced, claimed, strict=True):
                if isinstance(step, Fenced):
                    runs.setdefault(item.job.id, []).append(step)
                else:
                    events[item.job.id].append(self._event(item.job.id, item.scheduled_for, step))
        except Exception as exc:
            close_old_connections()
            self._failed(batch, exc)
            return
        won = [job for job, _ in batch if job.id in runs]
        for job in won[1:]:
            self._submit_or_call(self._run_here, job, runs[job.id], events[job.id])
        self._settle([(job.id, events[job.id]) for job, _ in batch if job.id not in runs])
        if won:
            # One runs on this thread, which holds the interpreter now (a pool thread
            # would first have to win it back from the jobs already running here) and
            # the fence's database connection.
            self._run_here(won[0], runs[won[0].id], events[won[0].id], connected=True)
        else:
            close_old_connections()

    def _failed(self, batch: list[tuple[Job, list[datetime]]], exc: Exception) -> None:
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

    def _may_claim(self, job: Job, run_time: datetime, events: list[JobExecutionEvent]) -> bool:
        lateness = datetime.now(UTC) - run_time
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

    def _run_here(
        self,
        job: Job,
        runs: list[Fenced],
        events: list[JobExecutionEvent],
        *,
        connected: bool = False,
    ) -> None:
        """Run the occurrences of ``job`` this instance fenced, and tell APScheduler."""
        try:
            done = self._run(runs, events, connected=connected)
        except Exception as exc:
            self._run_job_error(job.id, exc, exc.__traceback__)
        else:
            self._run_job_success(job.id, done)

    def _run(
        self, runs: list[Fenced], events: list[JobExecutionEvent], *, connected: bool = False
    ) -> list[JobExecutionEvent]:
        for i, step in enumerate(runs):
            outcome = run_fenced(step, connected=connected and i == 0)
            events.append(self._event(step.job.id, step.occurrence.scheduled_for, outcome))
        return events

    @staticmethod
    def _event(job_id: str, run_time: datetime, outcome: Outcome) -> JobExecutionEvent:
        code = EVENT_JOB_ERROR if outcome is Outcome.FAILED else EVENT_JOB_EXECUTED
        return JobExecutionEvent(code, job_id, None, run_time, retval=outcome)
