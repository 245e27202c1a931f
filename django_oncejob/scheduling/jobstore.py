"""Where each instance's scheduler keeps its jobs: in memory, ties in an order of its own."""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import threading
from collections.abc import Collection
from datetime import datetime

from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.util import datetime_to_utc_timestamp

#: Next run time (a timestamp, infinite when paused), rank, job id.
_Key = tuple[float, float, str]


class RankedMemoryJobStore(BaseJobStore):  # type: ignore[misc]
    """APScheduler's memory store, but for the order of jobs due at the same time.

    APScheduler's own store hands those over by job id, so every instance would
    claim the same jobs first: the instance that got there first would win whole
    batches, while the others lost every claim they sent. Here each job has one
    live instance that claims it first (rendezvous hashing of the job id over the
    live owners, see :meth:`prefer`), the second choice next, and so on, ties at
    random. Each instance thus claims first what the others claim last, wins
    those, and its later claims, mostly lost, delay none of its runs. Until the
    live owners are known, the order is at random.
    """

    def __init__(self, owner: str = "", rng: random.Random | None = None) -> None:
        super().__init__()
        self.owner = owner
        self._random = rng or random.Random()
        #: The live owners, this one among them, or none while they are not known.
        self._owners: frozenset[str] = frozenset()
        # APScheduler holds its own lock around each call; prefer() comes from another thread.
        self._lock = threading.RLock()
        # Sorted, and in step: the keys, and the job of each.
        self._keys: list[_Key] = []
        self._jobs: list[Job] = []
        self._index: dict[str, tuple[Job, _Key]] = {}

    def prefer(self, owners: Collection[str]) -> None:
        """Rank the jobs due together among these live owners: first choices first."""
        live = frozenset(owners) | {self.owner}
        with self._lock:
            if live == self._owners:
                return
            self._owners = live
            ranked = [(job, self._rank(job.id, key[1] % 1)) for job, key in self._index.values()]
            self.remove_all_jobs()
            for job, rank in ranked:
                self._insert(job, rank)

    def lookup_job(self, job_id: str) -> Job | None:
        return self._index.get(job_id, (None, None))[0]

    def get_due_jobs(self, now: datetime) -> list[Job]:
        with self._lock:
            due = bisect.bisect_right(self._keys, (datetime_to_utc_timestamp(now), math.inf, ""))
            return self._jobs[:due]

    def get_next_run_time(self) -> datetime | None:
        with self._lock:
            return self._jobs[0].next_run_time if self._jobs else None

    def get_all_jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs)

    def add_job(self, job: Job) -> None:
        with self._lock:
            if job.id in self._index:
                raise ConflictingIdError(job.id)
            self._insert(job, self._rank(job.id, self._random.random()))

    def update_job(self, job: Job) -> None:
        with self._lock:
            _, key = self._remove(job.id)
            self._insert(job, key[1])

    def remove_job(self, job_id: str) -> None:
        with self._lock:
            self._remove(job_id)

    def remove_all_jobs(self) -> None:
        with self._lock:
            self._keys, self._jobs, self._index = [], [], {}

    def shutdown(self) -> None:
        self.remove_all_jobs()

    def _rank(self, job_id: str, tie: float) -> float:
        """How many live owners come before this one for ``job_id``, plus ``tie`` (under 1)."""
        ahead = 0
        if len(self._owners) > 1:
            mine = _score(job_id, self.owner)
            ahead = sum(1 for owner in self._owners if _score(job_id, owner) > mine)
        return ahead + tie

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


def _score(job_id: str, owner: str) -> int:
    digest = hashlib.blake2b(f"{job_id}\0{owner}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
