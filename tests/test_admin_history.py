"""The history list at scale: a date hierarchy and a count that do not read the whole table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import date_hierarchy as django_date_hierarchy
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_oncejob.admin.pagination import CappedPaginator
from django_oncejob.models import Run
from django_oncejob.templatetags.oncejob_history import date_hierarchy

pytestmark = pytest.mark.django_db

HISTORY = "admin:django_oncejob_run_changelist"


def rows(*times: datetime, job: str = "sync", status: str = "succeeded") -> None:
    Run.objects.bulk_create(
        Run(job=job, scheduled_for=when, owner="web-1:41", status=status, claimed_at=when)
        for when in times
    )


def changelist(admin_user: Any, **params: Any) -> Any:
    request = RequestFactory().get("/", params)
    request.user = admin_user
    return admin.site._registry[Run].get_changelist_instance(request)


SPREADS = {
    "years": [datetime(2024, 3, 1, tzinfo=UTC), datetime(2026, 7, 9, tzinfo=UTC)],
    "months": [datetime(2026, 2, 27, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC)],
    "days": [datetime(2026, 5, 1, 23, tzinfo=UTC), datetime(2026, 5, 14, tzinfo=UTC)],
    "one day": [datetime(2026, 5, 3, 1, tzinfo=UTC), datetime(2026, 5, 3, 22, tzinfo=UTC)],
}


@pytest.mark.parametrize("spread", SPREADS, ids=str)
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"scheduled_for__year": "2026"},
        {"scheduled_for__year": "2026", "scheduled_for__month": "5"},
        {"scheduled_for__year": "2026", "scheduled_for__month": "5", "scheduled_for__day": "3"},
        {"job": "sync"},
        {"status__exact": "failed"},
        {"scheduled_for__month": "5"},
        {"scheduled_for__day": "3"},
        {"scheduled_for__month": "5", "scheduled_for__day": "3"},
    ],
    ids=["top", "year", "month", "day", "job", "status", "no-year", "day-only", "no-year-day"],
)
@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/Los_Angeles"])
def test_date_hierarchy_offers_what_djangos_offers(
    admin_user: Any, settings: Any, spread: str, params: dict[str, str], zone: str
) -> None:
    settings.TIME_ZONE = zone
    low, high = SPREADS[spread]
    step = (high - low) / 40
    rows(*(low + step * index for index in range(41)))
    rows(low + step * 7, high - step * 3, job="other", status="failed")
    cl = changelist(admin_user, **params)
    expected = django_date_hierarchy(cl)
    # Django 6.0 and later label the links with the field's name; earlier ones ignore it.
    expected.setdefault("field_name", "scheduled for")
    assert date_hierarchy(cl) == expected


def test_date_hierarchy_with_no_history(admin_user: Any) -> None:
    cl = changelist(admin_user)
    assert date_hierarchy(cl)["choices"] == []


def test_date_hierarchy_reads_ranges_not_distinct_dates(admin_client: Client) -> None:
    rows(datetime(2025, 12, 30, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(reverse(HISTORY))
    assert response.status_code == 200
    assert ">2025</a>" in response.content.decode()
    assert ">2026</a>" in response.content.decode()
    sql = " ".join(query["sql"].upper() for query in captured)
    assert "DISTINCT" not in sql
    assert "DATE_TRUNC" not in sql


def test_the_count_stops_at_the_cap(admin_client: Client, monkeypatch: Any) -> None:
    monkeypatch.setattr(CappedPaginator, "cap", 150)
    start = datetime(2026, 5, 3, tzinfo=UTC)
    rows(*(start + timedelta(minutes=minute) for minute in range(160)))
    with CaptureQueriesContext(connection) as captured:
        content = admin_client.get(reverse(HISTORY)).content.decode()
    counts = [query["sql"] for query in captured if "COUNT(" in query["sql"].upper()]
    assert counts and all("LIMIT 151" in sql for sql in counts), counts
    assert "150 runs" in content
    assert "More than 150 runs: only the first 150 are counted." in content
    # The last page within the cap still opens.
    assert admin_client.get(reverse(HISTORY), {"p": "2"}).status_code == 200


def test_the_count_is_exact_below_the_cap(admin_client: Client) -> None:
    start = datetime(2026, 5, 3, tzinfo=UTC)
    rows(*(start + timedelta(minutes=minute) for minute in range(120)))
    content = admin_client.get(reverse(HISTORY), {"job": "sync"}).content.decode()
    assert "120 runs" in content
    assert "More than" not in content
