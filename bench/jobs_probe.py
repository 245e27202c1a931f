"""Probe the Jobs page, a job's page and ``oncejob_health`` with many jobs. Prints JSON.

Run by run.py (the ``jobs`` section) against a bench database that holds the
history of BENCH_JOBS jobs.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import CommandError, call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from django_oncejob.jobs.registry import get_jobs  # noqa: E402
from django_oncejob.models import Run  # noqa: E402


def timed(call: Callable[[], object], rounds: int = 5) -> dict[str, object]:
    call()  # the first call parses the jobs, once per process
    times = []
    for _ in range(rounds):
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1000)
    return {
        "ms_median": round(statistics.median(times), 1),
        "ms_max": round(max(times), 1),
        "queries": len(queries.captured_queries),
    }


def main() -> None:
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)

    def page(url: str) -> Callable[[], object]:
        def get() -> object:
            response = client.get(url)
            assert response.status_code == 200, response.status_code
            return response

        return get

    def health() -> object:
        # Some of the jobs failed: the command says so, which is not the point here.
        with contextlib.suppress(CommandError):
            call_command("oncejob_health", "--check", "failures,missed", stdout=io.StringIO())
        return None

    job = next(iter(get_jobs()))
    result = {
        "jobs": len(get_jobs()),
        "rows": Run.objects.count(),
        "jobs overview": timed(page("/admin/django_oncejob/jobstate/")),
        "a job's page": timed(page(f"/admin/django_oncejob/jobstate/{job}/change/")),
        "oncejob_health --check failures,missed": timed(health),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
