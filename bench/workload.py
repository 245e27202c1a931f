"""The jobs every system under test runs, and how they record each run.

Half the jobs do nothing, half do a fixed amount of CPU work (about 5 ms on an
idle core: ``BENCH_SPIN`` loop turns, calibrated once by run.py so every system
does the same work). Each run appends ``job scheduled start pid`` to this
process's record file, in one ``os.write``: the harness merges the files.

The scheduled time comes from :func:`django_oncejob.current_occurrence` under
django-oncejob, and from :data:`SCHEDULED`, which :class:`RecordingExecutor`
sets per run time, under plain APScheduler.
"""

from __future__ import annotations

import contextvars
import os
import time
from datetime import UTC, datetime, timedelta

from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor

SCHEDULED: contextvars.ContextVar[datetime | None] = contextvars.ContextVar(
    "bench_scheduled", default=None
)
SPIN = int(os.environ.get("BENCH_SPIN", "20000"))
_fd: int | None = None
_from_oncejob = os.environ.get("BENCH_SYSTEM") == "oncejob"


def _record(job: str) -> None:
    start = time.time()
    global _fd
    if _from_oncejob:
        from django_oncejob import current_occurrence

        occurrence = current_occurrence()
        scheduled = occurrence.scheduled_for if occurrence else None
    else:
        scheduled = SCHEDULED.get()
    if _fd is None:
        path = os.environ["BENCH_RECORD_DIR"] + f"/runs-{os.getpid()}.txt"
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    stamp = scheduled.timestamp() if scheduled else float("nan")
    os.write(_fd, f"{job} {stamp:.6f} {start:.6f} {os.getpid()}\n".encode())


def spin(turns: int) -> int:
    total = 0
    for i in range(turns):
        total += i * i
    return total


def noop(job: str) -> None:
    _record(job)


def cpu(job: str) -> None:
    _record(job)
    spin(SPIN)


def job_table(count: int) -> list[tuple[str, str]]:
    """``(job id, dotted path)`` for ``count`` jobs: even ones no-op, odd ones CPU work."""
    return [
        (f"job-{i:05d}", "bench.workload.noop" if i % 2 == 0 else "bench.workload.cpu")
        for i in range(count)
    ]


#: Where every one-second interval in the bench is counted from (whole seconds).
ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)


class RecordingExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    """APScheduler's thread pool executor, telling each run its scheduled time.

    ``claim``, if given, is called per run time after the misfire check, as
    django-oncejob does: only a true result runs the job here.
    """

    def __init__(self, max_workers: int = 10, claim=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(max_workers)
        self._claim = claim

    def _do_submit_job(self, job, run_times):  # type: ignore[no-untyped-def]
        def callback(f):  # type: ignore[no-untyped-def]
            exc = f.exception()
            if exc:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, f.result())

        f = self._pool.submit(self._run, job, run_times)
        f.add_done_callback(callback)

    def _run(self, job, run_times):  # type: ignore[no-untyped-def]
        events = []
        for run_time in run_times:
            late = datetime.now(UTC) - run_time
            if job.misfire_grace_time is not None and late > timedelta(
                seconds=job.misfire_grace_time
            ):
                events.extend(run_job(job, job._jobstore_alias, [run_time], self._logger.name))
                continue
            if self._claim is not None and not self._claim(job.id, run_time):
                continue
            token = SCHEDULED.set(run_time)
            try:
                events.extend(run_job(job, job._jobstore_alias, [run_time], self._logger.name))
            finally:
                SCHEDULED.reset(token)
        return events
