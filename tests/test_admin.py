from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_oncejob.models import Claim, Instance

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)


@pytest.fixture
def claims() -> list[Claim]:
    ok = Claim.objects.create(
        job="nightly-report",
        scheduled_for=WHEN,
        owner="web-1:41",
        status=Claim.Status.SUCCEEDED,
        claimed_at=WHEN + timedelta(milliseconds=2),
        started_at=WHEN + timedelta(milliseconds=5),
        finished_at=WHEN + timedelta(seconds=2, milliseconds=5),
    )
    failed = Claim.objects.create(
        job="sync",
        scheduled_for=WHEN,
        owner="web-2:77",
        status=Claim.Status.FAILED,
        claimed_at=WHEN,
        started_at=WHEN + timedelta(milliseconds=12),
        finished_at=WHEN + timedelta(milliseconds=40),
        error="RuntimeError: the job broke",
        traceback='Traceback (most recent call last):\n  raise RuntimeError("the job broke")',
    )
    return [ok, failed]


def test_history_list_shows_duration_and_lateness(
    admin_client: Client, claims: list[Claim]
) -> None:
    response = admin_client.get(reverse("admin:django_oncejob_claim_changelist"))

    assert response.status_code == 200
    content = response.content.decode()
    assert "nightly-report" in content
    assert "web-2:77" in content
    assert "2.000 s" in content  # duration
    assert "0.005 s" in content  # lateness


def test_history_list_filters_by_status_and_job(admin_client: Client, claims: list[Claim]) -> None:
    url = reverse("admin:django_oncejob_claim_changelist")
    response = admin_client.get(url, {"status__exact": "failed"})
    assert list(response.context["cl"].result_list) == [claims[1]]
    response = admin_client.get(url, {"job": "nightly-report"})
    assert list(response.context["cl"].result_list) == [claims[0]]
    response = admin_client.get(url, {"q": "web-1"})
    assert list(response.context["cl"].result_list) == [claims[0]]


def test_history_is_read_only(admin_client: Client, claims: list[Claim]) -> None:
    assert admin_client.get(reverse("admin:django_oncejob_claim_add")).status_code == 403

    url = reverse("admin:django_oncejob_claim_change", args=[claims[1].pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "RuntimeError: the job broke" in content
    assert 'name="status"' not in content
    admin_client.post(url, {"status": "succeeded"})
    claims[1].refresh_from_db()
    assert claims[1].status == Claim.Status.FAILED


def test_str_and_timings(claims: list[Claim]) -> None:
    assert str(claims[0]) == "nightly-report @ 2026-11-26T21:00:00+00:00"
    assert claims[0].duration == timedelta(seconds=2)
    assert claims[0].lateness == timedelta(milliseconds=5)
    running = Claim(job="x", scheduled_for=WHEN, started_at=WHEN, claimed_at=WHEN)
    assert running.duration is None


def test_instances_are_listed_alive_or_gone(admin_client: Client) -> None:
    now = timezone.now()
    for owner, silent, stopped in [
        ("web-1:1", 2, None),
        ("web-2:2", 600, None),
        ("web-3:3", 1, now),
    ]:
        beat = now - timedelta(seconds=silent)
        Instance.objects.create(
            owner=owner,
            host="h",
            pid=1,
            version="0.1.0",
            started_at=beat,
            heartbeat_at=beat,
            stopped_at=stopped,
        )

    response = admin_client.get(reverse("admin:django_oncejob_instance_changelist"))

    rows = {i.owner: i.is_alive(60) for i in response.context["cl"].result_list}
    assert rows == {"web-1:1": True, "web-2:2": False, "web-3:3": False}
    content = response.content.decode()
    assert content.count(">alive<") == 1
    assert content.count(">gone<") == 2
    assert admin_client.get(reverse("admin:django_oncejob_instance_add")).status_code == 403
