"""CPU of one losing occurrence under django-oncejob vs one bare redis-py SET NX EX.

Run by run.py in a fresh process with the bench settings (its Redis). Both sides
run in this one process, interleaved round by round, each ``--calls`` times a
round, on a key that is already taken: the loser's path. CPU is the process's
(``time.process_time``), so waiting for Redis's answer is not counted, only the
client work. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402

from django_oncejob.claim import claim  # noqa: E402
from django_oncejob.registry import parse_job  # noqa: E402
from django_oncejob.runner import Outcome, run_occurrence  # noqa: E402

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
    client.set("seed:micro", "a", nx=True, ex=86400)
    definition = {"func": "bench.workload.noop", "args": ["micro"], "interval": {"seconds": 1}}
    job, errors = parse_job("micro", definition)
    assert job is not None, errors
    claim("micro", WHEN, "a")  # taken: every call below loses
    assert run_occurrence(job, WHEN, "b") is Outcome.LOST

    sides = {
        "bare_set_nx_ex_us": lambda: client.set("seed:micro", "b", nx=True, ex=86400),
        "oncejob_claim_us": lambda: claim("micro", WHEN, "b"),
        "oncejob_losing_occurrence_us": lambda: run_occurrence(job, WHEN, "b"),
    }
    for func in sides.values():  # warm up
        per_call_us(func, 500)
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(options.rounds):
        for name, func in sides.items():
            samples[name].append(per_call_us(func, options.calls))
    # The median round, and the quietest one: other work on the machine inflates both sides.
    result = {name: round(statistics.median(values), 2) for name, values in samples.items()}
    result.update({f"{name}_min": round(min(values), 2) for name, values in samples.items()})
    result["ratio_losing_occurrence_to_bare"] = round(
        result["oncejob_losing_occurrence_us"] / result["bare_set_nx_ex_us"], 2
    )
    result["ratio_claim_to_bare"] = round(
        result["oncejob_claim_us"] / result["bare_set_nx_ex_us"], 2
    )
    result["ratio_losing_occurrence_to_bare_min"] = round(
        result["oncejob_losing_occurrence_us_min"] / result["bare_set_nx_ex_us_min"], 2
    )
    result["rounds"] = options.rounds
    result["calls_per_round"] = options.calls
    print(json.dumps(result))


if __name__ == "__main__":
    main()
