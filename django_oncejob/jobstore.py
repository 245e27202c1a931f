"""Where each instance's scheduler keeps its jobs: in memory, ties in an order of its own."""

from __future__ import annotations

import bisect
import math
import random
from datetime import datetime

from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.util import datetime_to_utc_timestamp

#: Next run time (a timestamp, infinite when paused), rank, job id.
_Key = tuple[float, float, str]


class ShuffledMemoryJobStore(BaseJobStore):  # type: ignore[misc]
    """APScheduler's memory job store, but for the order of jobs due at the same time.

    APScheduler's own store hands those over by job id, so every instance would
    claim the same jobs first, the same ``BATCH_SIZE`` at a time: the instance that
    got there first would win whole batches and run them all, while the others
    ran nothing. Here each instance ranks its jobs at random when it adds them, so
    instances claim different jobs first, each wins mostly its own, and the runs
    spread over the fleet from the first claim on.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__()
        self._random = rng or random.Random()
        # Sorted, and in step: the keys, and the job of each.
        self._keys: list[_Key] = []
        self._jobs: list[Job] = []
        self._index: dict[str, tuple[Job, _Key]] = {}

    def lookup_job(self, job_id: str) -> Job | None:
        return self._index.get(job_id, (None, None))[0]

    def get_due_jobs(self, now: datetime) -> list[Job]:
        due = bisect.bisect_right(self._keys, (datetime_to_utc_timestamp(now), math.inf, ""))
        return self._jobs[:due]

    def get_next_run_time(self) -> datetime | None:
        return self._jobs[0].next_run_time if self._jobs else None

    def get_all_jobs(self) -> list[Job]:
        return list(self._jobs)

    def add_job(self, job: Job) -> None:
        if job.id in self._index:
            raise ConflictingIdError(job.id)
        self._insert(job, self._random.random())

    def update_job(self, job: Job) -> None:
        _, key = self._remove(job.id)
        self._insert(job, key[1])

    def remove_job(self, job_id: str) -> None:
        self._remove(job_id)

    def remove_all_jobs(self) -> None:
        self._keys, self._jobs, self._index = [], [], {}

    def shutdown(self) -> None:
        self.remove_all_jobs()

    def _insert(self, job: Job, rank: float) -> None:
        timestamp = datetime_to_utc_timestamp(job.next_run_time)
        key = (math.inf if timestamp is None else timestamp, rank, job.id)
        at = bisect.bisect_left(self._keys, key)
        self._keys.insert(at, key)
        self._jobs.insert(at, job)
        self._index[job.id] = (job, key)

    def _remove(self, job_id: str) -> tuple[Job, _Key]:
        if job_id not in self._index:
            raise JobLookupError(job_id)
        job, key = self._index.pop(job_id)
        at = bisect.bisect_left(self._keys, key)
        del self._keys[at]
        del self._jobs[at]
        return job, key
