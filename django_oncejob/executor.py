"""The APScheduler executor that claims each occurrence right before running it."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
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

from django_oncejob.models import Claim, RunRequest
from django_oncejob.registry import JobSpec
from django_oncejob.runner import Outcome, rerun_occurrence, run_manual, run_occurrence

logger = logging.getLogger("django_oncejob")


class ClaimingExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs each scheduled time of a job through :func:`run_occurrence` in a thread pool.

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
        """From now on, occurrences already handed to the pool are left to other instances."""
        self._accepting.clear()

    def wait(self, timeout: float | None) -> bool:
        """Wait for the running occurrences; ``True`` if all finished in time."""
        _, not_done = concurrent.futures.wait(list(self._futures), timeout=timeout)
        return not not_done

    @property
    def running(self) -> int:
        return sum(1 for future in list(self._futures) if not future.done())

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def submit_rerun(self, spec: JobSpec, row: Claim) -> None:
        """Run an occurrence taken over from a dead instance, outside APScheduler's books."""
        self._submit(rerun_occurrence, spec, row)

    def submit_manual(self, spec: JobSpec, request: RunRequest) -> None:
        """Run a job now, as a run request this instance won asks."""
        self._submit(run_manual, spec, request.requested_at, request.requested_by, self.owner)

    def _submit(self, func: Callable[..., Outcome], *args: Any) -> None:
        assert self._pool is not None, "The executor has not been started."
        future = self._pool.submit(func, *args)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        assert self._pool is not None, "The executor has not been started."
        future = self._pool.submit(self._run, job, run_times)
        self._futures.add(future)

        def done(future: concurrent.futures.Future[list[JobExecutionEvent]]) -> None:
            self._futures.discard(future)
            if future.cancelled():
                self._run_job_success(job.id, [])
                return
            exc = future.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        future.add_done_callback(done)

    def _run(self, job: Job, run_times: list[datetime]) -> list[JobExecutionEvent]:
        events = []
        spec = self.specs[job.id]
        for run_time in run_times:
            lateness = datetime.now(UTC) - run_time
            if lateness > timedelta(seconds=job.misfire_grace_time):
                logger.warning(
                    "Job %r at %s missed: %s late, past its misfire grace time.",
                    job.id,
                    run_time.isoformat(),
                    lateness,
                )
                events.append(JobExecutionEvent(EVENT_JOB_MISSED, job.id, None, run_time))
                continue
            if not self._accepting.is_set():
                logger.info(
                    "Job %r at %s left to other instances: shutting down.",
                    job.id,
                    run_time.isoformat(),
                )
                continue
            outcome = run_occurrence(spec, run_time, self.owner, paused=spec.id in self.paused)
            code = EVENT_JOB_ERROR if outcome is Outcome.FAILED else EVENT_JOB_EXECUTED
            events.append(JobExecutionEvent(code, job.id, None, run_time, retval=outcome))
        return events
