"""Prometheus metrics of one process, in prometheus_client's default registry.

Recorded wherever prometheus-client is installed, so that a process which already
exposes its metrics shows these too; ``runjobs`` serves them itself on
``ONCEJOB["METRICS_PORT"]``. The label is ``job_id``, not ``job``: Prometheus gives
every scraped series a ``job`` label of its own.
"""

from __future__ import annotations

import functools
import logging
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_oncejob.monitoring.watch import Watch

logger = logging.getLogger("django_oncejob")

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600)


@functools.cache
def installed() -> bool:
    return find_spec("prometheus_client") is not None


class _Metrics:
    """The metrics, made once per process: prometheus_client refuses a second of a name."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.occurrences = Counter(
            "oncejob_occurrences",
            "Occurrences this process settled, by outcome; summed over the fleet, once each.",
            ["job_id", "outcome"],
        )
        self.claims = Counter(
            "oncejob_claims",
            "Claims of occurrences by this process: won, lost (another instance's key) "
            "or fenced (another instance's history row).",
            ["job_id", "result"],
        )
        self.start_lag = Histogram(
            "oncejob_start_lag_seconds",
            "Seconds from an occurrence's scheduled time to its start here.",
            ["job_id"],
            buckets=LAG_BUCKETS,
        )
        self.duration = Histogram(
            "oncejob_run_duration_seconds",
            "Seconds a job ran here, by outcome.",
            ["job_id", "outcome"],
            buckets=DURATION_BUCKETS,
        )
        self.running = Gauge("oncejob_running", "Runs going on in this process now.", ["job_id"])
        self.cache_errors = Counter(
            "oncejob_cache_errors", "Claims and job locks the cache failed to answer."
        )
        self.delivery_failures = Counter(
            "oncejob_monitor_delivery_failures",
            "Check-ins, pings and webhooks that could not be delivered, by monitor.",
            ["monitor"],
        )


@functools.cache
def _metrics() -> _Metrics | None:
    return _Metrics() if installed() else None


def claimed(job_id: str, result: str) -> None:
    """A claim's answer: ``"won"``, ``"lost"``, ``"fenced"`` or ``"unavailable"``."""
    if (metrics := _metrics()) is not None:
        if result == "unavailable":
            metrics.cache_errors.inc()
        else:
            metrics.claims.labels(job_id, result).inc()


def settled(job_id: str, outcome: str) -> None:
    """This process recorded how an occurrence ended, or handed it off."""
    if (metrics := _metrics()) is not None:
        metrics.occurrences.labels(job_id, outcome).inc()


def cache_error() -> None:
    if (metrics := _metrics()) is not None:
        metrics.cache_errors.inc()


def delivery_failed(monitor: str) -> None:
    if (metrics := _metrics()) is not None:
        metrics.delivery_failures.labels(monitor).inc()


class Metrics:
    """The monitor that times each run here."""

    def started(self, watch: Watch) -> None:
        metrics = _metrics()
        assert metrics is not None
        metrics.start_lag.labels(watch.job.id).observe(max(0.0, watch.lag))
        if not watch.handed_off:
            metrics.running.labels(watch.job.id).inc()

    def ended(self, watch: Watch) -> None:
        metrics = _metrics()
        assert metrics is not None
        if not watch.started_here:
            return
        if not watch.handed_off:
            metrics.running.labels(watch.job.id).dec()
        if watch.status == "enqueued":
            return  # the worker times the run
        metrics.duration.labels(watch.job.id, watch.status).observe(watch.duration or 0.0)


def serve(port: int, address: str) -> Any:
    """Serve this process's metrics over HTTP on a thread of its own; returns the server."""
    from prometheus_client import start_http_server

    _metrics()
    server, _thread = start_http_server(port, addr=address)
    logger.info("Serving Prometheus metrics on http://%s:%s/metrics.", address, port)
    return server
