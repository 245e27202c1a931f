"""The jobs overview in the admin: the jobs from settings, their state, run now and pause.

Settings stay the registry of jobs: nothing here edits a job's definition. The
page only asks for runs (a :class:`~django_oncejob.models.RunRequest` that a live
instance takes) and pauses or resumes jobs
(:class:`~django_oncejob.models.JobState`); it never runs a job itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, router, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from django_oncejob.admin.base import ReadOnlyAdmin, seconds, status_badge
from django_oncejob.conf import conf
from django_oncejob.jobs import registry, triggers
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Counts, Instance, JobState, Run, RunRequest

#: How far back the jobs overview counts successes, failures and misses.
RECENT = timedelta(hours=24)
#: Fire times shown per job in the overview.
NEXT_TIMES = 3


@dataclass
class JobRow:
    """One job of the overview: its spec from settings and what the database says of it."""

    spec: JobSpec
    state: JobState | None
    next_times: list[datetime]
    last: Run | None
    counts: Counts
    history_url: str
    last_url: str = ""
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def paused(self) -> bool:
        return self.state is not None and self.state.paused

    @property
    def last_badge(self) -> SafeString:
        return status_badge(self.last.status) if self.last is not None else SafeString("")

    @property
    def last_when(self) -> datetime | None:
        if self.last is None:
            return None
        return self.last.started_at or self.last.scheduled_for

    @property
    def last_duration(self) -> str:
        return seconds(self.last.duration) if self.last is not None else "–"


@admin.register(JobState)
class JobStateAdmin(ReadOnlyAdmin[JobState]):
    """The jobs from settings, titled "Jobs": state, next times, last run, run now, pause."""

    change_list_template = "admin/django_oncejob/jobstate/change_list.html"

    def has_view_permission(self, request: HttpRequest, obj: JobState | None = None) -> bool:
        user = request.user
        return (
            super().has_view_permission(request, obj)
            or user.has_perm("django_oncejob.run_job")
            or user.has_perm("django_oncejob.pause_job")
        )

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        views = [
            ("run", self.run_view),
            ("pause", self.pause_view),
            ("resume", self.resume_view),
        ]
        return [
            path(
                f"<str:job_id>/{name}/",
                self.admin_site.admin_view(require_POST(view)),
                name=f"{info[0]}_{info[1]}_{name}",
            )
            for name, view in views
        ] + super().get_urls()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        jobs, errors = registry.parsed_jobs()
        ids = list(jobs)
        now = timezone.now()
        states = {state.job: state for state in JobState.objects.filter(job__in=ids)}
        last = Run.objects.latest_per_job(ids)
        counts = Run.objects.counts_per_job(ids, now - RECENT)
        alive = Instance.objects.alive(conf.HEARTBEAT_TIMEOUT).count()
        history_url = self._url("django_oncejob_run_changelist")
        rows = []
        for job in jobs.values():
            row = JobRow(
                spec=job,
                state=states.get(job.id),
                next_times=(
                    list(triggers.fire_times(job.trigger, now, NEXT_TIMES)) if job.enabled else []
                ),
                last=last.get(job.id),
                counts=counts.get(job.id, Counts()),
                history_url=f"{history_url}?{urlencode({'job': job.id})}",
            )
            if row.last is not None:
                row.last_url = self._url("django_oncejob_run_change", row.last.pk)
            row.urls = {
                "failed": f"{row.history_url}&status__in=failed,abandoned",
                "missed": f"{row.history_url}&status__exact=missed",
                "succeeded": f"{row.history_url}&status__exact=succeeded",
                **{
                    name: self._url(f"django_oncejob_jobstate_{name}", job.id)
                    for name in ("run", "pause", "resume")
                },
            }
            rows.append(row)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Jobs"),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "rows": rows,
            "invalid": len(errors),
            "alive": alive,
            "heartbeat_timeout": conf.HEARTBEAT_TIMEOUT,
            "history_url": history_url,
            "instances_url": self._url("django_oncejob_instance_changelist"),
            "can_run": request.user.has_perm("django_oncejob.run_job"),
            "can_pause": request.user.has_perm("django_oncejob.pause_job"),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.change_list_template, context)

    def run_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        if not request.user.has_perm("django_oncejob.run_job"):
            raise PermissionDenied
        job = self._job(request, job_id, enabled=True)
        if job is None:
            return self._back()
        now = timezone.now()
        if not Instance.objects.alive(conf.HEARTBEAT_TIMEOUT).exists():
            self.message_user(
                request,
                gettext(
                    "No runjobs instance is alive (none sent a heartbeat in the last %(timeout)s "
                    "seconds), so nothing would take the request: job “%(job)s” was not asked "
                    "to run. Start manage.py runjobs and try again."
                )
                % {"timeout": conf.HEARTBEAT_TIMEOUT, "job": job.id},
                messages.ERROR,
            )
            return self._back()
        try:
            # A savepoint: a refused insert must not break a project's ATOMIC_REQUESTS.
            with transaction.atomic(using=router.db_for_write(RunRequest)):
                RunRequest.objects.create(
                    job=job.id, requested_by=request.user.get_username(), requested_at=now
                )
        except IntegrityError:
            # Taken by an instance since, the waiting request was most likely this user's.
            waiting = RunRequest.objects.filter(job=job.id, taken_at__isnull=True).first() or (
                RunRequest(requested_by=request.user.get_username(), requested_at=now)
            )
            self.message_user(
                request,
                gettext(
                    "Job “%(job)s” is already waiting to run, as %(user)s asked at %(when)s; "
                    "no second run was asked for."
                )
                % {
                    "job": job.id,
                    "user": waiting.requested_by,
                    "when": formats.localize(timezone.localtime(waiting.requested_at)),
                },
                messages.WARNING,
            )
            return self._back()
        self.message_user(
            request,
            gettext(
                "Job “%(job)s” will run once, on one live instance, within about %(interval)s "
                "seconds. It appears in the history as a manual run."
            )
            % {"job": job.id, "interval": conf.CONTROL_INTERVAL},
            messages.SUCCESS,
        )
        return self._back()

    def pause_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        return self._set_paused(request, job_id, paused=True)

    def resume_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        return self._set_paused(request, job_id, paused=False)

    def _set_paused(self, request: HttpRequest, job_id: str, *, paused: bool) -> HttpResponse:
        if not request.user.has_perm("django_oncejob.pause_job"):
            raise PermissionDenied
        job = self._job(request, job_id, enabled=False)
        if job is None:
            return self._back()
        JobState.objects.update_or_create(
            job=job.id,
            defaults={
                "paused": paused,
                "changed_at": timezone.now(),
                "changed_by": request.user.get_username(),
            },
        )
        if paused:
            text = gettext(
                "Job “%(job)s” is paused: within about %(interval)s seconds every instance "
                "stops running it, and records its occurrences as skipped until it is resumed."
            )
        else:
            text = gettext(
                "Job “%(job)s” is resumed: its next occurrences run as scheduled, from within "
                "about %(interval)s seconds."
            )
        self.message_user(
            request, text % {"job": job.id, "interval": conf.CONTROL_INTERVAL}, messages.SUCCESS
        )
        return self._back()

    def _job(self, request: HttpRequest, job_id: str, *, enabled: bool) -> JobSpec | None:
        """The job ``job_id`` from settings, or ``None`` with an error message."""
        jobs, _errors = registry.parsed_jobs()
        job = jobs.get(job_id)
        if job is None:
            self.message_user(
                request,
                gettext("There is no valid job “%(job)s” in ONCEJOB['JOBS']; nothing was done.")
                % {"job": job_id},
                messages.ERROR,
            )
            return None
        if enabled and not job.enabled:
            self.message_user(
                request,
                gettext("Job “%(job)s” is disabled in settings, so no instance runs it.")
                % {"job": job_id},
                messages.ERROR,
            )
            return None
        return job

    def _back(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(self._url("django_oncejob_jobstate_changelist"))

    def _url(self, name: str, *args: object) -> str:
        site = self.admin_site.name
        return reverse(f"{site}:{name}", args=args, current_app=site)
