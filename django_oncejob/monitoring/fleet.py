"""The fleet's state as Prometheus metrics, read from the database by a view the project mounts.

Every instance serves what it did itself (:mod:`~django_oncejob.monitoring.metrics`);
this view serves what holds for the whole fleet, whichever instance did it, and
still answers when every ``runjobs`` is down::

    from django_oncejob.monitoring.fleet import metrics_view

    urlpatterns = [path("oncejob/metrics", metrics_view)]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import DurationField, ExpressionWrapper, F
from django.db.models.functions import Now
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from django_oncejob.conf import conf
from django_oncejob.jobs import registry
from django_oncejob.models import Instance, JobState, Run


class FleetCollector:
    """A prometheus_client collector that reads the history, the jobs and the instances."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        jobs, _errors = registry.parsed_jobs()
        now = timezone.now()
        ids = list(jobs)
        success = GaugeMetricFamily(
            "oncejob_job_last_success_timestamp_seconds",
            "When each job's latest successful occurrence ended, as a Unix time.",
            labels=["job_id"],
        )
        for job_id, row in Run.objects.latest_per_job(ids, [Run.Status.SUCCEEDED]).items():
            if row.finished_at is not None:
                success.add_metric([job_id], row.finished_at.timestamp())
        yield success
        failure = GaugeMetricFamily(
            "oncejob_job_last_failure_timestamp_seconds",
            "When each job's latest failed or abandoned occurrence was due, as a Unix time.",
            labels=["job_id"],
        )
        for job_id, row in Run.objects.latest_per_job(ids, Run.FAILURES).items():
            failure.add_metric([job_id], row.scheduled_for.timestamp())
        yield failure
        paused = set(JobState.objects.filter(paused=True).values_list("job", flat=True))
        next_fire = GaugeMetricFamily(
            "oncejob_job_next_fire_timestamp_seconds",
            "When each enabled job's next occurrence is due, as a Unix time.",
            labels=["job_id"],
        )
        paused_metric = GaugeMetricFamily(
            "oncejob_job_paused", "1 for a job paused in the admin, else 0.", labels=["job_id"]
        )
        for job in jobs.values():
            paused_metric.add_metric([job.id], 1.0 if job.id in paused else 0.0)
            if job.enabled and (when := job.trigger.get_next_fire_time(None, now)) is not None:
                next_fire.add_metric([job.id], when.timestamp())
        yield next_fire
        yield paused_metric
        # The age by the database's clock, which every heartbeat is written by.
        age_now = ExpressionWrapper(Now() - F("heartbeat_at"), output_field=DurationField())
        alive = list(
            Instance.objects.alive(conf.HEARTBEAT_TIMEOUT)
            .annotate(age=age_now)
            .values_list("owner", "age")
        )
        yield GaugeMetricFamily(
            "oncejob_instances_alive",
            "runjobs instances whose heartbeat holds.",
            value=len(alive),
        )
        age = GaugeMetricFamily(
            "oncejob_instance_heartbeat_age_seconds",
            "Seconds since each live instance's last heartbeat.",
            labels=["owner"],
        )
        for owner, seconds in alive:
            age.add_metric([owner], max(0.0, seconds.total_seconds()))
        yield age


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The fleet's metrics in Prometheus' text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry_ = CollectorRegistry(auto_describe=False)
    registry_.register(FleetCollector())
    return HttpResponse(generate_latest(registry_), content_type=CONTENT_TYPE_LATEST)
