"""Monitors: Sentry Crons, ping URLs, webhooks, Prometheus and OpenTelemetry, once per occurrence.

The fleet tests run real ``runjobs`` processes against a local stand-in for the
monitors' servers (:mod:`tests.monitor_server`), which parses what they send.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from django_oncejob.fleet import heartbeat
from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import JobState, Run
from django_oncejob.monitoring.connections import Connections, DeliveryError
from django_oncejob.monitoring.pings import ping_address
from django_oncejob.monitoring.sender import Sender
from django_oncejob.monitoring.sentry import monitor_config, monitor_slug
from django_oncejob.monitoring.watch import check_in_id
from django_oncejob.occurrence import Occurrence
from tests.processes import ROOT, Fleet, Instance, free_port, stop_worker, wait_for
from tests.test_checks import cron_job, only, only_job_error, only_warning, run, run_job
from tests.tracing import read_spans

FleetFactory = Callable[..., Fleet]


@dataclass
class MonitorServer:
    """The stand-in server, in a process of its own that a test can stop and resume."""

    port: int
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sentry_dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.port}/1"

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def check_ins(self) -> list[dict[str, Any]]:
        return [
            item["payload"]
            for request in self.requests()
            if "envelope" in request
            for item in request["envelope"]["items"]
            if item["header"]["type"] == "check_in"
        ]


@pytest.fixture
def monitor_server(tmp_path: Path) -> Iterator[MonitorServer]:
    port, log = free_port(), tmp_path / "monitor-requests.jsonl"
    server = MonitorServer(port, log, start_monitor_server(port, log))
    try:
        yield server
    finally:
        server.process.send_signal(signal.SIGCONT)
        server.process.kill()
        server.process.wait(10)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """An instance's metrics: the value of each sample, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def start_fleet(
    fleet: FleetFactory,
    server: MonitorServer,
    jobs: dict[str, Any],
    count: int,
    tmp_path: Path,
    settings: dict[str, Any] | None = None,
) -> tuple[Fleet, list[int]]:
    """``count`` instances with every monitor on, each serving its metrics on a port of its own."""
    base = {
        "SENTRY_CRONS": True,
        "WEBHOOK": f"{server.url}/webhook",
        "METRICS_ADDRESS": "127.0.0.1",
        "MONITOR_TIMEOUT": 2,
        **(settings or {}),
    }
    instances = fleet(jobs, base)
    ports = []
    for index in range(count):
        port = free_port()
        ports.append(port)
        instances.start(
            env={
                "ONCEJOB_TEST_SETTINGS": json.dumps({**base, "METRICS_PORT": port}),
                "ONCEJOB_TEST_SENTRY_DSN": server.sentry_dsn,
                "ONCEJOB_TEST_SPANS": str(tmp_path / f"spans-{index}.jsonl"),
            }
        )
    return instances, ports


def ended_rows() -> dict[tuple[str, datetime], Run]:
    return {
        (row.job, row.scheduled_for): row
        for row in Run.objects.filter(status__in=[Run.Status.SUCCEEDED, Run.Status.FAILED])
    }


@pytest.mark.processes
@pytest.mark.long
def test_every_monitor_hears_of_each_occurrence_once(
    fleet: FleetFactory, monitor_server: MonitorServer, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # Every job ends by a known time, so that the counters can be read once all is done.
    ticks_end = now + timedelta(seconds=28)
    minute_end = (now + timedelta(seconds=70)).replace(second=1)
    if minute_end - now > timedelta(seconds=70):
        minute_end -= timedelta(minutes=1)
    jobs = {
        "tick": {
            "func": "tests.jobs.record",
            "cron": {"second": "*", "end_date": ticks_end.isoformat()},
            "ping_url": f"{monitor_server.url}/ping/tick",
        },
        "minutely": {
            "func": "tests.jobs.record",
            "cron": {"minute": "*", "end_date": minute_end.isoformat()},
            "ping_url": f"{monitor_server.url}/ping/minutely",
            "sentry": {"max_runtime": 5, "failure_issue_threshold": 2},
        },
        "broken": {
            "func": "tests.jobs.fail",
            "cron": {"second": "*/2", "end_date": ticks_end.isoformat()},
            "ping_url": f"{monitor_server.url}/ping/broken",
        },
    }
    instances, ports = start_fleet(fleet, monitor_server, jobs, 4, tmp_path)
    ready = datetime.now(UTC)
    wait_for(
        lambda: datetime.now(UTC) > max(ticks_end, minute_end) + timedelta(seconds=2),
        100,
        "the jobs' end",
    )
    rows = ended_rows()
    metrics = [scrape(port) for port in ports]
    codes = instances.stop()
    assert codes == [0] * 4, instances.logs()

    # At least 20 seconds of per-second occurrences ran, and one per-minute one.
    by_job = Counter(job for job, _ in rows)
    assert by_job["tick"] >= 20, by_job
    assert by_job["broken"] >= 10, by_job
    assert by_job["minutely"] >= 1, by_job
    assert {row.status for (job, _), row in rows.items() if job == "broken"} == {"failed"}
    assert len({row.owner for row in rows.values()}) > 1
    assert min(when for _, when in rows) > ready - timedelta(seconds=10)

    # Sentry: one in_progress and one ok or error per occurrence, with the same id.
    expected = {
        check_in_id(Occurrence(job, when, row.owner), 1): (job, row)
        for (job, when), row in rows.items()
    }
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for check_in in monitor_server.check_ins():
        by_id[check_in["check_in_id"]].append(check_in)
    assert set(by_id) == set(expected)
    for identifier, (job, row) in expected.items():
        statuses = sorted(check_in["status"] for check_in in by_id[identifier])
        end = "error" if job == "broken" else "ok"
        assert statuses == sorted(["in_progress", end]), (job, row.scheduled_for, statuses)
        for check_in in by_id[identifier]:
            assert check_in["monitor_slug"] == job
            if check_in["status"] != "in_progress":
                assert 0 <= check_in["duration"] < 5
    configs = {
        check_in["monitor_slug"]: check_in["monitor_config"]
        for check_in in monitor_server.check_ins()
    }
    assert configs["tick"] == {"timezone": "UTC", "checkin_margin": 1}
    assert configs["minutely"] == {
        "schedule": {"type": "crontab", "value": "* * * * *"},
        "timezone": "UTC",
        "checkin_margin": 1,
        "max_runtime": 5,
        "failure_issue_threshold": 2,
    }

    # healthchecks.io: /start, then the URL itself or /fail, each once with the same rid.
    pings: dict[str, list[str]] = defaultdict(list)
    for request in monitor_server.requests():
        if request["path"].startswith("/ping/"):
            pings[request["query"]["rid"]].append(request["path"])
    assert set(pings) == set(expected)
    for identifier, (job, _) in expected.items():
        end = f"/ping/{job}/fail" if job == "broken" else f"/ping/{job}"
        assert sorted(pings[identifier]) == sorted([f"/ping/{job}/start", end])

    # The webhook: a JSON body at each start and end.
    bodies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for request in monitor_server.requests():
        if request["path"] == "/webhook":
            bodies[request["json"]["id"]].append(request["json"])
    assert set(bodies) == set(expected)
    for identifier, (job, row) in expected.items():
        started, ended = sorted(bodies[identifier], key=lambda body: body["status"] != "started")
        assert started["status"] == "started" and started["duration"] is None
        assert ended["status"] == row.status
        assert (ended["job"], ended["owner"]) == (job, row.owner)
        assert datetime.fromisoformat(ended["scheduled_for"]) == row.scheduled_for
        assert (ended["error"] is not None) == (job == "broken")

    # Prometheus: the occurrences counted by the instances add up to the history.
    counted: Counter[tuple[str, str]] = Counter()
    for samples in metrics:
        for (name, labels), value in samples.items():
            if name == "oncejob_occurrences_total":
                found = dict(labels)
                counted[found["job_id"], found["outcome"]] += int(value)
    history = Counter((row.job, row.status) for row in Run.objects.all())
    assert +counted == history
    won = sum(
        value
        for samples in metrics
        for (name, labels), value in samples.items()
        if name == "oncejob_claims_total" and ("result", "won") in labels
    )
    assert won == len(rows)

    # OpenTelemetry: one span per occurrence, on the instance that ran it.
    spans = [span for index in range(4) for span in read_spans(tmp_path / f"spans-{index}.jsonl")]
    assert sorted(
        (span["attributes"]["oncejob.job_id"], span["attributes"]["oncejob.scheduled_for"])
        for span in spans
    ) == sorted((job, when.isoformat()) for job, when in rows)
    for span in spans:
        job = span["attributes"]["oncejob.job_id"]
        assert span["name"] == f"oncejob {job}"
        assert span["status"] == ("ERROR" if job == "broken" else "UNSET")
        assert (
            span["attributes"]["oncejob.outcome"]
            == rows[job, datetime.fromisoformat(span["attributes"]["oncejob.scheduled_for"])].status
        )


def lags(rows: list[Run]) -> list[float]:
    return [row.lateness.total_seconds() for row in rows if row.lateness is not None]


@pytest.mark.processes
@pytest.mark.long
def test_a_stopped_monitor_delays_no_job_and_its_failures_are_counted(
    fleet: FleetFactory, monitor_server: MonitorServer, tmp_path: Path
) -> None:
    jobs = {
        "tick": {
            "func": "tests.jobs.record",
            "cron": {"second": "*"},
            "ping_url": f"{monitor_server.url}/ping/tick",
        }
    }
    instances, ports = start_fleet(fleet, monitor_server, jobs, 2, tmp_path)
    time.sleep(6)
    # The server's process stopped: connections wait unanswered until the timeout.
    stopped_at = datetime.now(UTC)
    monitor_server.process.send_signal(signal.SIGSTOP)
    time.sleep(10)
    resumed_at = datetime.now(UTC)
    monitor_server.process.send_signal(signal.SIGCONT)
    time.sleep(5)
    metrics = [scrape(port) for port in ports]
    codes = instances.stop()
    assert codes == [0, 0], instances.logs()

    rows = list(Run.objects.order_by("scheduled_for"))
    before = [row for row in rows if row.scheduled_for < stopped_at]
    during = [row for row in rows if stopped_at <= row.scheduled_for < resumed_at]
    print(
        f"start lag, monitors answering: median {statistics.median(lags(before)):.3f} s, "
        f"max {max(lags(before)):.3f} s; monitors stopped: median "
        f"{statistics.median(lags(during)):.3f} s, max {max(lags(during)):.3f} s"
    )
    assert len(during) >= 9
    assert {row.status for row in rows} == {Run.Status.SUCCEEDED}
    assert Counter(instances.run_counts().values()) == Counter({1: len(rows)})
    # Every second of the outage ran on time: a delivery waiting on the server would
    # have held a start back by MONITOR_TIMEOUT (2 s).
    assert max(lags(during)) < 1.0
    assert statistics.median(lags(during)) < 0.25
    failures = Counter()
    for samples in metrics:
        for (name, labels), value in samples.items():
            if name == "oncejob_monitor_delivery_failures_total":
                failures[dict(labels)["monitor"]] += int(value)
    assert failures["ping_url"] > 0 and failures["webhook"] > 0, failures
    assert "Could not deliver to monitor ping_url" in instances.logs(tail=None)
    assert "Monitor ping_url answers again." in instances.logs(tail=None)
    # Once the server answered again, the occurrences after it were all reported.
    reported = {
        request["query"]["rid"]
        for request in monitor_server.requests()
        if request["path"] == "/ping/tick" and "rid" in request["query"]
    }
    after = [row for row in rows if row.scheduled_for > resumed_at + timedelta(seconds=3)]
    assert after and all(
        check_in_id(Occurrence("tick", row.scheduled_for, row.owner), 1) in reported
        for row in after
    )


# What each monitor is told, without processes.


def job(definition: dict[str, Any], **settings: Any) -> JobSpec:
    with override_settings(ONCEJOB={"SENTRY_CRONS": True, **settings}):
        spec, errors = parse_job("report", {"func": "tests.jobs.record", **definition})
    assert spec is not None, errors
    return spec


@pytest.mark.parametrize(
    ("trigger", "schedule"),
    [
        ({"cron": "30 2 * * 1-5"}, {"type": "crontab", "value": "30 2 * * 1-5"}),
        ({"cron": "@daily"}, {"type": "crontab", "value": "0 0 * * *"}),
        ({"cron": {"minute": "*/5"}}, {"type": "crontab", "value": "*/5 * * * *"}),
        (
            {"cron": {"hour": 3, "day_of_week": "mon-fri"}},
            {"type": "crontab", "value": "0 3 * * mon-fri"},
        ),
        ({"cron": {"second": "*/10"}}, None),
        ({"cron": {"hour": 3, "day_of_week": "0-4"}}, None),
        ({"interval": {"minutes": 5}}, {"type": "interval", "value": 5, "unit": "minute"}),
        ({"interval": {"hours": 2}}, {"type": "interval", "value": 2, "unit": "hour"}),
        ({"interval": {"days": 7}}, {"type": "interval", "value": 1, "unit": "week"}),
        ({"interval": {"seconds": 90}}, None),
        ({"at": "2030-01-01T00:00:00+00:00"}, None),
    ],
)
def test_monitor_config_follows_the_trigger(trigger: dict[str, Any], schedule: Any) -> None:
    config = monitor_config(job(trigger))
    assert config.get("schedule") == schedule
    assert config["timezone"] == "UTC"


def test_monitor_config_takes_the_time_zone_the_grace_and_the_jobs_own_keys() -> None:
    spec = job(
        {
            "cron": "0 21 * * *",
            "timezone": "Asia/Shanghai",
            "misfire_grace_time": 150,
            "sentry": {"max_runtime": 30, "recovery_threshold": 3},
        }
    )
    assert monitor_config(spec) == {
        "schedule": {"type": "crontab", "value": "0 21 * * *"},
        "timezone": "Asia/Shanghai",
        "checkin_margin": 3,
        "max_runtime": 30,
        "recovery_threshold": 3,
    }
    assert monitor_slug("Nightly.Report_2") == "nightlyreport_2"


def test_sentry_is_opt_in_for_the_project_and_off_per_job() -> None:
    assert job({"cron": "0 21 * * *"}).sentry == {}
    assert job({"cron": "0 21 * * *", "sentry": False}).sentry is None
    assert job({"cron": "0 21 * * *"}, SENTRY_CRONS=False).sentry is None


def test_ping_addresses_keep_the_urls_own_query() -> None:
    url = "https://hc-ping.com/abc/?create=1"
    assert ping_address(url, "/start", "r1") == "https://hc-ping.com/abc/start?create=1&rid=r1"
    assert ping_address("http://h/p", "", "r2") == "http://h/p?rid=r2"


@pytest.mark.django_db
def test_a_check_in_id_is_one_per_occurrence_and_attempt() -> None:
    occurrence = Occurrence("report", datetime(2026, 12, 4, 21, tzinfo=UTC), "a:1")
    same = Occurrence("report", datetime(2026, 12, 4, 21, tzinfo=UTC), "b:2")
    assert check_in_id(occurrence, 1) == check_in_id(same, 1) != check_in_id(occurrence, 2)


def test_the_sender_counts_what_it_cannot_deliver(caplog: pytest.LogCaptureFixture) -> None:
    delivered: list[int] = []
    gate = threading.Event()

    def broken() -> None:
        raise OSError("refused")

    sender = Sender(2, 1)
    sender.send("hook", gate.wait)
    for _ in range(3):
        sender.send("hook", broken)  # the first waits behind the gate; the rest find it full
    gate.set()
    assert sender.drain(5)
    sender.send("hook", lambda: delivered.append(1))
    assert sender.drain(5)
    assert delivered == [1]
    assert sender.failures == Counter({"hook": 3})
    warnings = [r.getMessage() for r in caplog.records if "monitor hook" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "Monitor hook answers again." in caplog.text


def start_monitor_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.monitor_server", str(port), str(log)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"listening\n"
    return process


def test_pings_keep_one_connection_open_and_open_another_once_it_is_closed(
    monitor_server: MonitorServer,
) -> None:
    connections = Connections(2)
    connections.request(f"{monitor_server.url}/ping/a", None, "text/plain")
    connections.request(f"{monitor_server.url}/ping/a/fail?rid=1", b"boom", "text/plain")
    first, second = monitor_server.requests()
    assert (first["method"], second["method"], second["body"]) == ("GET", "POST", "boom")
    assert first["client_port"] == second["client_port"]
    # The server restarts: the open connection is dead, and the next ping opens a new one.
    monitor_server.process.kill()
    monitor_server.process.wait(10)
    monitor_server.process = start_monitor_server(monitor_server.port, monitor_server.log)
    connections.request(f"{monitor_server.url}/ping/a", None, "text/plain")
    third = monitor_server.requests()[-1]
    assert third["path"] == "/ping/a" and third["client_port"] != first["client_port"]
    connections.close()


def test_pings_go_through_the_proxy_the_environment_names(
    monitor_server: MonitorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", monitor_server.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    Connections(2).request("http://hc.example.invalid/ping/b?rid=2", None, "text/plain")
    (request,) = monitor_server.requests()
    assert (request["host"], request["path"], request["query"]) == (
        "hc.example.invalid",
        "/ping/b",
        {"rid": "2"},
    )


def test_a_status_other_than_2xx_or_no_answer_is_a_failed_delivery(
    monitor_server: MonitorServer,
) -> None:
    connections = Connections(1)
    with pytest.raises(DeliveryError, match="HTTP 503"):
        connections.request(f"{monitor_server.url}/status/503/ping", None, "text/plain")
    connections.request(f"{monitor_server.url}/ping", None, "text/plain")
    with pytest.raises(ConnectionRefusedError):
        connections.request(f"http://127.0.0.1:{free_port()}/ping", None, "text/plain")


def test_the_sender_holds_deliveries_while_the_instance_is_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("django_oncejob.monitoring.sender.HOLD", 0.5)
    busy = threading.Event()
    busy.set()
    delivered: list[float] = []
    sender = Sender(10, 1)
    sender.hold_while(busy.is_set)
    sent = time.monotonic()
    sender.send("hook", lambda: delivered.append(time.monotonic() - sent))
    time.sleep(0.2)
    assert delivered == []
    busy.clear()
    assert sender.drain(5)
    assert 0.2 <= delivered[0] < 0.45
    # Busy for longer than HOLD: delivered all the same, HOLD after it was sent.
    busy.set()
    sent = time.monotonic()
    sender.send("hook", lambda: delivered.append(time.monotonic() - sent))
    assert sender.drain(5)
    assert 0.5 <= delivered[1] < 0.9


@pytest.mark.parametrize(
    ("settings", "code"),
    [
        ({"SENTRY_CRONS": "yes"}, "E053"),
        ({"WEBHOOK": "ftp://x"}, "E054"),
        ({"MONITOR_TIMEOUT": 0}, "E055"),
        ({"MONITOR_QUEUE_SIZE": 0}, "E056"),
        ({"METRICS_PORT": 70000}, "E057"),
        ({"METRICS_ADDRESS": "a b"}, "E058"),
        ({"TRACING": 1}, "E059"),
    ],
)
def test_bad_monitor_settings_are_errors(settings: dict[str, Any], code: str) -> None:
    only(run(settings), code)


@pytest.mark.parametrize(
    ("definition", "code", "key"),
    [
        ({"sentry": "on"}, "E060", "sentry"),
        ({"sentry": {"max_runtime": 0}}, "E060", "sentry"),
        ({"sentry": {"margin": 1}}, "E060", "sentry"),
        ({"ping_url": "hc-ping.com/x"}, "E061", "ping_url"),
        ({"webhook": 3}, "E062", "webhook"),
    ],
)
def test_bad_monitor_keys_of_a_job_are_errors(
    definition: dict[str, Any], code: str, key: str
) -> None:
    only_job_error(run_job(cron_job(**definition), SENTRY_CRONS=True), code, key)


def test_a_job_sentry_cannot_schedule_is_a_warning() -> None:
    warning = only_warning(
        run_job({"func": "tests.jobs.record", "interval": {"seconds": 10}}, SENTRY_CRONS=True),
        "W012",
    )
    assert "'x'" in warning.msg
    assert (
        run_job(
            {"func": "tests.jobs.record", "interval": {"seconds": 10}, "sentry": False},
            SENTRY_CRONS=True,
        )
        == []
    )


@pytest.mark.django_db
def test_the_fleet_view_reads_the_history_and_the_instances(client: Any) -> None:
    jobs = {
        "report": {"func": "tests.jobs.record", "cron": "0 21 * * *"},
        "tick": {"func": "tests.jobs.record", "interval": {"seconds": 5}},
    }
    ended = datetime(2026, 12, 3, 21, 0, 2, tzinfo=UTC)
    Run.objects.create(
        job="report",
        scheduled_for=ended.replace(second=0),
        owner="a:1",
        status=Run.Status.SUCCEEDED,
        claimed_at=ended,
        started_at=ended,
        finished_at=ended,
    )
    Run.objects.create(
        job="tick",
        scheduled_for=ended,
        owner="a:1",
        status=Run.Status.FAILED,
        claimed_at=ended,
        started_at=ended,
    )
    JobState.objects.create(job="tick", paused=True)
    heartbeat.beat("a:1", 60)
    with override_settings(ONCEJOB={"JOBS": jobs}, ROOT_URLCONF="tests.urls"):
        response = client.get("/oncejob/metrics")
    assert response.status_code == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }
    assert (
        samples[("oncejob_job_last_success_timestamp_seconds", (("job_id", "report"),))]
        == ended.timestamp()
    )
    assert (
        samples[("oncejob_job_last_failure_timestamp_seconds", (("job_id", "tick"),))]
        == ended.timestamp()
    )
    assert samples[("oncejob_job_paused", (("job_id", "tick"),))] == 1.0
    assert samples[("oncejob_job_paused", (("job_id", "report"),))] == 0.0
    assert samples[("oncejob_job_next_fire_timestamp_seconds", (("job_id", "tick"),))] > time.time()
    assert samples[("oncejob_instances_alive", ())] == 1.0
    assert 0 <= samples[("oncejob_instance_heartbeat_age_seconds", (("owner", "a:1"),))] < 5


# Hand-off: runjobs reports the start, the task worker the end.


def handoff_worker(
    backend: str, workers: Callable[..., Instance], env: dict[str, str], queue: str
) -> Instance:
    if backend == "tasks":
        command = [sys.executable, "-m", "django", "db_worker", "--queue-name", queue]
        command += ["--interval", "0.1", "--no-startup-delay", "-v", "2"]
        return workers(command, env, "Starting worker")
    command = [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker"]
    command += ["--pool", "solo", "--concurrency", "1", "--queues", queue]
    command += ["--hostname", f"{queue}@%h", "--loglevel", "info"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return workers(command, {**env, "ONCEJOB_TEST_CELERY_QUEUE": queue}, " ready.")


@pytest.mark.processes
@pytest.mark.parametrize("backend", ["tasks", "celery"])
def test_a_worker_reports_the_end_of_what_runjobs_handed_off(
    fleet: FleetFactory,
    monitor_server: MonitorServer,
    workers: Callable[..., Instance],
    celery_queue: str,
    tmp_path: Path,
    backend: str,
) -> None:
    if backend == "tasks" and getattr(settings, "TASKS_DATABASE_BACKEND", None) is None:
        pytest.skip("needs django-tasks-db, or django-tasks before 0.12")
    queue = "jobs" if backend == "tasks" else celery_queue
    end = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0).isoformat()
    handed = {"enqueue": backend, "queue": queue}
    jobs = {
        "tick": {
            "func": "tests.jobs.record",
            "cron": {"second": "*", "end_date": end},
            "ping_url": f"{monitor_server.url}/ping/tick",
            **handed,
        },
        "broken": {"func": "tests.jobs.fail", "cron": {"second": "*/2", "end_date": end}, **handed},
    }
    instances, ports = start_fleet(fleet, monitor_server, jobs, 2, tmp_path)
    worker_env = instances.env(
        {
            "ONCEJOB_TEST_SETTINGS": json.dumps(instances.settings),
            "ONCEJOB_TEST_SENTRY_DSN": monitor_server.sentry_dsn,
            "ONCEJOB_TEST_SPANS": str(tmp_path / "spans-worker.jsonl"),
            "SENTRY_ENVIRONMENT": "worker",
            "ONCEJOB_TEST_CELERY_QUEUE": queue,
        }
    )
    worker = handoff_worker(backend, workers, worker_env, queue)
    wait_for(lambda: datetime.now(UTC) > datetime.fromisoformat(end), 20, "the jobs' end")
    unsettled = Run.objects.filter(status__in=[Run.Status.ENQUEUED, Run.Status.RUNNING])
    wait_for(lambda: not unsettled.exists(), 30, "the queue to drain")
    metrics = [scrape(port) for port in ports]
    assert instances.stop() == [0, 0], instances.logs()
    rows = ended_rows()
    expected = {
        check_in_id(Occurrence(job, when, row.owner), 1): job for (job, when), row in rows.items()
    }
    wait_for(
        lambda: len(monitor_server.check_ins()) >= 2 * len(expected),
        10,
        "the worker's check-ins",
    )
    assert stop_worker(worker) == 0, worker.output()

    assert Counter(job for job, _ in rows)["tick"] >= 6
    assert {row.status for (job, _), row in rows.items() if job == "broken"} == {"failed"}
    assert {row.owner.rsplit(":", 1)[-1] for row in rows.values()} == {str(worker.pid)}
    # Sentry: the instance that handed the occurrence off sent in_progress; the worker,
    # ok or error, under the same id.
    by_id: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for check_in in monitor_server.check_ins():
        by_id[check_in["check_in_id"]].append((check_in["status"], check_in["environment"]))
    assert set(by_id) == set(expected)
    for identifier, job in expected.items():
        end = "error" if job == "broken" else "ok"
        assert sorted(by_id[identifier]) == sorted(
            [("in_progress", "production"), (end, "worker")]
        ), job
    # Pings: the start from runjobs, the end from the worker, one each.
    pings: dict[str, list[str]] = defaultdict(list)
    for request in monitor_server.requests():
        if request["path"].startswith("/ping/"):
            pings[request["query"]["rid"]].append(request["path"])
    ticks = {identifier for identifier, job in expected.items() if job == "tick"}
    assert set(pings) == ticks
    assert all(sorted(paths) == ["/ping/tick", "/ping/tick/start"] for paths in pings.values())
    # Metrics: each occurrence counted once as handed off, none left running in runjobs.
    enqueued = running = 0.0
    for samples in metrics:
        for (name, labels), value in samples.items():
            if name == "oncejob_occurrences_total":
                assert dict(labels)["outcome"] == "enqueued"
                enqueued += value
            elif name == "oncejob_running":
                running += value
    assert (enqueued, running) == (len(rows), 0)
    # Traces: the worker's span of each run is a child of the span runjobs began.
    handed_spans = {
        span["span_id"]: span
        for index in range(2)
        for span in read_spans(tmp_path / f"spans-{index}.jsonl")
    }
    run_spans = read_spans(tmp_path / "spans-worker.jsonl")
    assert len(run_spans) == len(rows) == len(handed_spans)
    for span in run_spans:
        parent = handed_spans[span["parent_id"]]
        assert span["trace_id"] == parent["trace_id"]
        assert span["name"] == f"oncejob run {span['attributes']['oncejob.job_id']}"
        assert parent["attributes"]["oncejob.outcome"] == "enqueued"
