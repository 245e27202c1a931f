"""The claim's answer and the job-wide lock when the cache misbehaves, on real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test.utils import override_settings

from django_oncejob.cache.atomic import KEY_VERSION
from django_oncejob.cache.claim import ClaimResult, claim, claim_many
from django_oncejob.cache.locks import lock_key, release_lock
from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Run
from django_oncejob.occurrence import Occurrence
from django_oncejob.running.overlap import lock_token
from django_oncejob.running.pipeline import claim_and_run
from django_oncejob.running.steps import Outcome
from tests.proxy import TcpProxy
from tests.rows import fence

pytestmark = pytest.mark.django_db(transaction=True)

WHEN = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs.txt"
    monkeypatch.setenv("ONCEJOB_TEST_RECORD", str(path))
    return path


def spec(**extra: Any) -> JobSpec:
    job, errors = parse_job("report", {"func": "tests.jobs.record", "cron": "0 21 * * *", **extra})
    assert errors == [] and job is not None
    return job


@pytest.fixture
def lossy_cache() -> Iterator[TcpProxy]:
    """The claim cache behind a proxy that can swallow Redis's replies."""
    redis_url = settings.CACHES["default"]["LOCATION"]
    host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        lossy = {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{proxy.host}:{proxy.port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
        oncejob = {**settings.ONCEJOB, "CACHE": "lossy"}
        with override_settings(CACHES={**settings.CACHES, "lossy": lossy}, ONCEJOB=oncejob):
            caches["lossy"].get("warm-up")  # the connection is open: the next reply is the SET's
            yield proxy
            caches["lossy"].close()


def test_a_claim_whose_reply_was_lost_after_redis_applied_it_is_won(
    lossy_cache: TcpProxy,
) -> None:
    lossy_cache.drop_replies(1)
    assert claim("report", WHEN, "host-a:1") is ClaimResult.WON
    assert claim("report", WHEN, "host-b:2") is ClaimResult.LOST


def test_claims_of_a_batch_whose_reply_was_lost_are_settled_by_what_redis_holds(
    lossy_cache: TcpProxy,
) -> None:
    assert claim("job-1", WHEN, "host-b:2") is ClaimResult.WON
    lossy_cache.drop_replies(1)
    batch = [("job-0", WHEN), ("job-1", WHEN), ("job-2", WHEN)]
    assert claim_many(batch, "host-a:1") == [ClaimResult.WON, ClaimResult.LOST, ClaimResult.WON]


def test_a_lock_left_behind_by_a_run_that_ended_is_broken(record_file: Path) -> None:
    job = spec(lock_timeout=600)
    earlier = WHEN - timedelta(minutes=1)
    assert claim_and_run(job, earlier, "host-a:1") is Outcome.SUCCEEDED
    # As if that run's release had failed on a Redis hiccup: its lock is still there.
    token = lock_token(Occurrence("report", earlier, "host-a:1"))
    caches["default"].add(lock_key("report"), token, 600, version=KEY_VERSION)

    assert claim_and_run(job, WHEN, "host-b:2") is Outcome.SUCCEEDED
    assert len(record_file.read_text().splitlines()) == 2
    assert caches["default"].get(lock_key("report"), version=KEY_VERSION) is None


def test_a_lock_held_by_a_run_still_going_is_not_broken() -> None:
    job = spec(lock_timeout=600)
    earlier = WHEN - timedelta(minutes=1)
    assert fence("report", earlier, "host-a:1") is not None  # running
    token = lock_token(Occurrence("report", earlier, "host-a:1"))
    caches["default"].add(lock_key("report"), token, 600, version=KEY_VERSION)

    assert claim_and_run(job, WHEN, "host-b:2") is Outcome.SKIPPED
    assert Run.objects.get(scheduled_for=WHEN).error == (
        "Skipped: a previous run of this job still holds its lock."
    )


def test_a_lost_lock_key_does_not_let_runs_overlap() -> None:
    """Redis restarted, or evicted the lock: the history still shows the run going."""
    job = spec(lock_timeout=600)
    assert fence("report", WHEN - timedelta(minutes=1), "host-a:1") is not None  # running

    assert claim_and_run(job, WHEN, "host-b:2") is Outcome.SKIPPED
    assert Run.objects.get(scheduled_for=WHEN).error == (
        "Skipped: a previous run of this job is still running, by the history."
    )
    # The lock this run took for the check is released again.
    assert caches["default"].get(lock_key("report"), version=KEY_VERSION) is None


def test_a_lock_is_released_only_by_the_run_that_holds_it() -> None:
    caches["default"].add(lock_key("report"), "host-a:1@then", 600, version=KEY_VERSION)
    assert release_lock("report", "host-b:2@now") is False
    assert caches["default"].get(lock_key("report"), version=KEY_VERSION) == "host-a:1@then"
    assert release_lock("report", "host-a:1@then") is True
    assert caches["default"].get(lock_key("report"), version=KEY_VERSION) is None


def test_a_cache_outage_is_logged_when_it_starts_and_when_it_ends(
    lossy_cache: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    lossy_cache.cut()
    for n in range(5):
        assert claim("report", WHEN + timedelta(seconds=n), "host-a:1") is ClaimResult.UNAVAILABLE
    failed = [r for r in caplog.records if "Could not claim" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None
    lossy_cache.restore()
    caches["lossy"].close()
    assert claim("report", WHEN + timedelta(seconds=9), "host-a:1") is ClaimResult.WON
    assert "answers again, after 5 failed claims" in caplog.text
