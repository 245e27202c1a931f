"""Probe the history at its current size: fence insert time, query plans, admin page times.

Run by run.py (the ``history`` section) against a bench database, before and
after it holds 1,000,000 history rows. Prints JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from django_oncejob.models import Run  # noqa: E402
from django_oncejob.running import history  # noqa: E402


def fence_inserts(count: int) -> dict[str, float]:
    base = datetime(2040, 1, 1, tzinfo=UTC) + timedelta(days=Run.objects.count() % 1000)
    times = []
    for i in range(count):
        start = time.perf_counter()
        row = history.running("probe", base + timedelta(seconds=i), "probe:1", timezone.now())
        assert history.insert_running([row]) == [True]
        times.append((time.perf_counter() - start) * 1000)
        history.write_endings([(row, history.Ending(Run.Status.SUCCEEDED))])
    times.sort()
    return {
        "inserts": count,
        "insert_ms_median": round(statistics.median(times), 2),
        "insert_ms_p99": round(times[int(len(times) * 0.99) - 1], 2),
    }


def explain(sql: str, params: list[object]) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return [line for (line,) in cursor.fetchall()]


def plans() -> dict[str, list[str]]:
    row = Run.objects.order_by("-pk").first()
    assert row is not None
    when = row.scheduled_for
    return {
        # What each occurrence runs: the fence's uniqueness check and the outcome's UPDATE.
        "fence_uniqueness_probe": explain(
            "SELECT 1 FROM django_oncejob_run WHERE job = %s AND scheduled_for = %s",
            [row.job, when],
        ),
        "ending_update": explain(
            "UPDATE django_oncejob_run SET status = 'succeeded' WHERE id = %s AND owner = %s",
            [row.pk, row.owner],
        ),
        "missed_sweep_select": explain(
            "SELECT scheduled_for FROM django_oncejob_run WHERE job = %s "
            "AND scheduled_for > %s AND scheduled_for <= %s",
            [row.job, when - timedelta(minutes=10), when],
        ),
        "indexes": [
            f"{name}: {definition}"
            for name, definition in connection.cursor()
            .execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
                ["django_oncejob_run"],
            )
            .fetchall()
        ],
    }


def admin_pages() -> dict[str, object]:
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    newest = Run.objects.order_by("-scheduled_for").values_list("scheduled_for", flat=True)[0]
    pages = {
        "claim changelist": "/admin/django_oncejob/run/",
        "claim changelist, job filter": "/admin/django_oncejob/run/?job=job-00042",
        "claim changelist, status filter": "/admin/django_oncejob/run/?status__exact=failed",
        "claim changelist, day (date_hierarchy)": (
            f"/admin/django_oncejob/run/?scheduled_for__year={newest.year}"
            f"&scheduled_for__month={newest.month}&scheduled_for__day={newest.day}"
        ),
        "claim changelist, search": "/admin/django_oncejob/run/?q=job-00042",
        "claim changelist, page 50": "/admin/django_oncejob/run/?p=50",
        "jobs overview": "/admin/django_oncejob/jobstate/",
        "instances": "/admin/django_oncejob/instance/",
    }
    result: dict[str, object] = {}
    for name, url in pages.items():
        times = []
        for _ in range(5):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                times = [float("nan")]
                break
        slowest = max(queries.captured_queries, key=lambda q: float(q["time"]), default=None)
        result[name] = {
            "status": response.status_code,
            "ms_median": round(statistics.median(times), 1),
            "queries": len(queries.captured_queries),
            "slowest_query_ms": round(float(slowest["time"]) * 1000, 1) if slowest else None,
            "slowest_query": slowest["sql"][:300] if slowest else None,
        }
    return result


def main() -> None:
    phase = sys.argv[1]
    result: dict[str, object] = {"rows": Run.objects.count(), **fence_inserts(300)}
    if phase == "full":
        result["plans"] = plans()
        result["admin"] = admin_pages()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
