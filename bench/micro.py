"""CPU of one losing occurrence under django-oncejob vs one bare redis-py SET NX EX,
of one claim in runjobs' pipelined batches, and of one winning occurrence.

Run by run.py in a fresh process with the bench settings (its Redis and PostgreSQL).
The sides run in this one process, interleaved round by round, each ``--calls`` times
a round, on a key that is already taken: the loser's path. Then winners, each on a new
key, a tenth as many a round. CPU is the process's (``time.process_time``), so waiting
for Redis's or PostgreSQL's answer is not counted, only the client work. Prints JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402

from django_oncejob.cache.claim import claim, claim_many  # noqa: E402
from django_oncejob.jobs.parser import parse_job  # noqa: E402
from django_oncejob.running import history  # noqa: E402
from django_oncejob.running.pipeline import claim_and_run  # noqa: E402
from django_oncejob.running.steps import Outcome  # noqa: E402
from django_oncejob.scheduling.executor import BATCH_SIZE  # noqa: E402

WHEN = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)


def per_call_us(func, calls: int) -> float:  # type: ignore[no-untyped-def]
    start = time.process_time()
    for _ in range(calls):
        func()
    return (time.process_time() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5000)
    options = parser.parse_args()

    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    # The same, with the socket timeouts of the cache the claims go to: redis-py then
    # polls the socket before each read.
    cache_options = settings.CACHES["default"]["OPTIONS"]
    timed = redis.Redis.from_url(
        settings.CACHES["default"]["LOCATION"],
        socket_timeout=cache_options["SOCKET_TIMEOUT"],
        socket_connect_timeout=cache_options["SOCKET_CONNECT_TIMEOUT"],
    )
    client.set("seed:micro", "a", nx=True, ex=86400)
    definition = {"func": "bench.workload.noop", "args": ["micro"], "interval": {"seconds": 1}}
    job, errors = parse_job("micro", definition)
    assert job is not None, errors
    claim("micro", WHEN, "a")  # taken: every call below loses
    # What runjobs sends for the jobs due together: one pipeline, BATCH_SIZE claims.
    batch = [(f"micro-{i}", WHEN) for i in range(BATCH_SIZE)]
    claim_many(batch, "a")
    assert claim_and_run(job, WHEN, "b") is Outcome.LOST

    sides = {
        "bare_set_nx_ex_us": lambda: client.set("seed:micro", "b", nx=True, ex=86400),
        "bare_set_nx_ex_timeouts_us": lambda: timed.set("seed:micro", "b", nx=True, ex=86400),
        "oncejob_claim_us": lambda: claim("micro", WHEN, "b"),
        "oncejob_losing_occurrence_us": lambda: claim_and_run(job, WHEN, "b"),
        # Per claim: the side runs once per BATCH_SIZE calls of the others.
        "oncejob_claim_in_batch_us": lambda: claim_many(batch, "b"),
    }
    for func in sides.values():  # warm up
        per_call_us(func, 500)
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(options.rounds):
        for name, func in sides.items():
            if name == "oncejob_claim_in_batch_us":
                per_batch = per_call_us(func, options.calls // BATCH_SIZE)
                samples[name].append(per_batch / BATCH_SIZE)
            else:
                samples[name].append(per_call_us(func, options.calls))
    # The median round, and the quietest one: other work on the machine inflates both sides.
    result = {name: round(statistics.median(values), 2) for name, values in samples.items()}
    result.update({f"{name}_min": round(min(values), 2) for name, values in samples.items()})
    result["ratio_losing_occurrence_to_bare"] = round(
        result["oncejob_losing_occurrence_us"] / result["bare_set_nx_ex_us"], 2
    )
    result["ratio_claim_in_batch_to_bare"] = round(
        result["oncejob_claim_in_batch_us"] / result["bare_set_nx_ex_us"], 2
    )
    result["ratio_claim_to_bare"] = round(
        result["oncejob_claim_us"] / result["bare_set_nx_ex_us"], 2
    )
    result["ratio_losing_occurrence_to_bare_min"] = round(
        result["oncejob_losing_occurrence_us_min"] / result["bare_set_nx_ex_us_min"], 2
    )
    result["ratio_losing_occurrence_to_bare_timeouts"] = round(
        result["oncejob_losing_occurrence_us"] / result["bare_set_nx_ex_timeouts_us"], 2
    )
    result.update(winners(options.rounds, max(1, options.calls // 10)))
    result["rounds"] = options.rounds
    result["calls_per_round"] = options.calls
    print(json.dumps(result))


def winners(rounds: int, calls: int) -> dict[str, float]:
    """CPU of a whole winning occurrence of a job that does nothing, each on a new key.

    Interleaved with the same occurrence fenced through the ORM's own ``save()``, as on
    a database without ``INSERT ... ON CONFLICT ... RETURNING``.
    """
    definition = {"func": "bench.workload.spin", "args": [0], "interval": {"seconds": 1}}
    job, errors = parse_job("winner", definition)
    assert job is not None, errors
    times = itertools.count()

    def win() -> None:
        when = WHEN + timedelta(seconds=next(times))
        assert claim_and_run(job, when, "a") is Outcome.SUCCEEDED

    def composed(calls: int) -> float:
        return per_call_us(win, calls)

    def through_orm(calls: int) -> float:
        # Patched around the whole round, so that the patching is not measured.
        with mock.patch.object(history, "_fences_in_bulk", lambda connection: False):
            return per_call_us(win, calls)

    sides = {
        "oncejob_winning_occurrence_us": composed,
        "oncejob_winning_orm_insert_us": through_orm,
    }
    for measure in sides.values():
        measure(50)
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, measure in sides.items():
            samples[name].append(measure(calls))
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


if __name__ == "__main__":
    main()
