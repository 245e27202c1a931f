"""The admin: the jobs from settings with their state, the read-only history, the instances.

Settings stay the registry of jobs: nothing here edits a job's definition. The
admin only asks for runs (a :class:`RunRequest` that a live instance takes) and
pauses or resumes jobs (:class:`JobState`); it never runs a job itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.timesince import timesince
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from django_oncejob import registry, status, triggers
from django_oncejob.conf import conf
from django_oncejob.heartbeat import live_instances
from django_oncejob.models import Claim, Instance, JobState, RunRequest
from django_oncejob.pagination import CappedPaginator

if TYPE_CHECKING:
    ClaimAdminBase = admin.ModelAdmin[Claim]
    InstanceAdminBase = admin.ModelAdmin[Instance]
    JobStateAdminBase = admin.ModelAdmin[JobState]
else:
    ClaimAdminBase = InstanceAdminBase = JobStateAdminBase = admin.ModelAdmin

#: The symbol shown before each status, so that it never rests on colour alone.
STATUS_ICONS: dict[str, str] = {
    Claim.Status.RUNNING: "▶",
    Claim.Status.SUCCEEDED: "✓",
    Claim.Status.FAILED: "✗",
    Claim.Status.ABANDONED: "⚠",
    Claim.Status.SKIPPED: "↷",
    Claim.Status.PAUSED: "‖",
    Claim.Status.MISSED: "⊘",
    Claim.Status.ENQUEUED: "⇢",
}
#: How far back the jobs overview counts successes, failures and misses.
RECENT = timedelta(hours=24)
#: Fire times shown per job in the overview.
NEXT_TIMES = 3


def badge(kind: str, icon: str, text: object) -> SafeString:
    """A coloured label with a symbol and words, styled by ``oncejob/styles.html``."""
    return format_html(
        '<span class="oncejob-badge oncejob-{}"><span aria-hidden="true">{}</span> {}</span>',
        kind,
        icon,
        text,
    )


def status_badge(value: str) -> SafeString:
    """The badge of a :class:`Claim` status."""
    label = Claim.Status(value).label if value in Claim.Status.values else value
    return badge(value, STATUS_ICONS.get(value, "•"), label)


class JobFilter(admin.SimpleListFilter):
    """Filter the history by job, offering the jobs from settings (no scan of the history)."""

    title = _("job")
    parameter_name = "job"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        jobs, _errors = registry.settings_jobs()
        choices = [(job_id, job_id) for job_id in jobs]
        # A job gone from settings keeps its history: filtering by it must still work.
        value = self.value()
        if value and value not in jobs:
            choices.append((value, value))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(job=value) if value else queryset


class StartedByFilter(admin.SimpleListFilter):
    """Filter the history by what started a run: the schedule or a person."""

    title = _("started by")
    parameter_name = "started_by"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("schedule", _("schedule")), ("manual", _("manual"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("schedule", "manual"):
            return queryset.filter(manual=self.value() == "manual")
        return queryset


@admin.register(Claim)
class ClaimAdmin(ClaimAdminBase):
    list_display = [
        "job",
        "scheduled",
        "status_label",
        "owner",
        "duration",
        "lateness",
        "requested",
    ]
    list_filter = ["status", JobFilter, StartedByFilter]
    search_fields = ["job", "owner", "requested_by", "error", "task_id"]
    date_hierarchy = "scheduled_for"
    list_select_related = False  # no relations: every column comes from the row itself
    show_full_result_count = False
    paginator = CappedPaginator
    fieldsets = (
        (None, {"fields": ("job", "scheduled", "status_label", "owner", "requested")}),
        (
            _("Timing"),
            {"fields": ("claimed", "started", "finished", "duration", "lateness", "attempts")},
        ),
        (_("Hand-off"), {"fields": ("task_backend", "task_id")}),
        (_("Error"), {"fields": ("error_text", "traceback_text")}),
    )
    readonly_fields = (
        "job",
        "scheduled",
        "status_label",
        "owner",
        "requested",
        "claimed",
        "started",
        "finished",
        "duration",
        "lateness",
        "attempts",
        "task_backend",
        "task_id",
        "error_text",
        "traceback_text",
    )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, {"title": _("History"), **(extra_context or {})})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Claim | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Claim | None = None) -> bool:
        # The rows are the fence against a second run: deleting one re-opens its occurrence.
        # Old rows go with ``manage.py oncejob_prune``.
        return False

    @admin.display(description=_("scheduled for"), ordering="scheduled_for")
    def scheduled(self, obj: Claim) -> str:
        return _when(obj.scheduled_for)

    @admin.display(description=_("claimed at"))
    def claimed(self, obj: Claim) -> str:
        return _when(obj.claimed_at)

    @admin.display(description=_("started at"))
    def started(self, obj: Claim) -> str:
        return _when(obj.started_at)

    @admin.display(description=_("finished at"))
    def finished(self, obj: Claim) -> str:
        return _when(obj.finished_at)

    @admin.display(description=_("status"), ordering="status")
    def status_label(self, obj: Claim) -> SafeString:
        return status_badge(obj.status)

    @admin.display(description=_("duration"))
    def duration(self, obj: Claim) -> str:
        return _seconds(obj.duration)

    @admin.display(description=_("lateness"))
    def lateness(self, obj: Claim) -> str:
        return _seconds(obj.lateness)

    @admin.display(description=_("started by"), ordering="manual")
    def requested(self, obj: Claim) -> str:
        if obj.manual:
            return gettext("manual, by %(user)s") % {"user": obj.requested_by or "?"}
        return gettext("schedule")

    @admin.display(description=_("error"))
    def error_text(self, obj: Claim) -> SafeString | str:
        if not obj.error:
            return "–"
        return format_html('<pre class="oncejob-pre">{}</pre>', obj.error)

    @admin.display(description=_("traceback"))
    def traceback_text(self, obj: Claim) -> SafeString | str:
        if not obj.traceback:
            return "–"
        return format_html('<pre class="oncejob-pre oncejob-traceback">{}</pre>', obj.traceback)


class StateFilter(admin.SimpleListFilter):
    """Filter instances by whether they are alive now."""

    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("alive", _("alive")), ("gone", _("gone"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        alive = live_instances(conf.HEARTBEAT_TIMEOUT)
        if self.value() == "alive":
            return queryset.filter(alive)
        if self.value() == "gone":
            return queryset.exclude(alive)
        return queryset


@admin.register(Instance)
class InstanceAdmin(InstanceAdminBase):
    list_display = [
        "owner",
        "state",
        "host",
        "pid",
        "started",
        "heartbeat",
        "version",
        "running",
    ]
    list_filter = [StateFilter]
    search_fields = ["owner", "host"]
    readonly_fields = (
        "owner",
        "state",
        "host",
        "pid",
        "version",
        "started",
        "heartbeat",
        "stopped",
        "running",
    )
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Instance]:
        running = (
            Claim.objects.filter(owner=OuterRef("owner"), status=Claim.Status.RUNNING)
            .order_by()
            .values("owner")
            .annotate(count=Count("pk"))
            .values("count")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(running_count=Coalesce(Subquery(running), 0, output_field=IntegerField()))
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        title = _("Instances")
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Instance | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Instance | None = None) -> bool:
        return False

    @admin.display(description=_("state"))
    def state(self, obj: Instance) -> SafeString:
        if obj.is_alive(conf.HEARTBEAT_TIMEOUT):
            return badge("alive", "●", _("alive"))
        return badge("gone", "○", _("gone"))

    @admin.display(description=_("started at"), ordering="started_at")
    def started(self, obj: Instance) -> str:
        return _when(obj.started_at)

    @admin.display(description=_("last heartbeat"), ordering="heartbeat_at")
    def heartbeat(self, obj: Instance) -> str:
        seconds = max(0, int((timezone.now() - obj.heartbeat_at).total_seconds()))
        if seconds < 120:
            ago = gettext("%(seconds)s s ago") % {"seconds": seconds}
        else:
            ago = gettext("%(time)s ago") % {"time": timesince(obj.heartbeat_at)}
        return f"{_when(obj.heartbeat_at)} ({ago})"

    @admin.display(description=_("stopped at"))
    def stopped(self, obj: Instance) -> str:
        return _when(obj.stopped_at)

    @admin.display(description=_("jobs running now"), ordering="running_count")
    def running(self, obj: Instance) -> int:
        return int(getattr(obj, "running_count", 0))


@dataclass
class JobRow:
    """One job of the overview: its spec from settings and what the database says of it."""

    spec: registry.JobSpec
    state: JobState | None
    next_times: list[datetime]
    last: Claim | None
    counts: status.Counts
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
        return _seconds(self.last.duration) if self.last is not None else "–"


@admin.register(JobState)
class JobStateAdmin(JobStateAdminBase):
    """The jobs from settings, titled "Jobs": state, next times, last run, run now, pause."""

    change_list_template = "admin/django_oncejob/jobstate/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: JobState | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: JobState | None = None) -> bool:
        return False

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
        jobs, errors = registry.settings_jobs()
        ids = list(jobs)
        now = timezone.now()
        states = {state.job: state for state in JobState.objects.filter(job__in=ids)}
        last = status.last_rows(ids)
        counts = status.recent_counts(ids, now - RECENT)
        alive = Instance.objects.filter(live_instances(conf.HEARTBEAT_TIMEOUT)).count()
        history_url = self._url("django_oncejob_claim_changelist")
        rows = []
        for job in jobs.values():
            row = JobRow(
                spec=job,
                state=states.get(job.id),
                next_times=(
                    list(triggers.fire_times(job.trigger, now, NEXT_TIMES)) if job.enabled else []
                ),
                last=last.get(job.id),
                counts=counts.get(job.id, status.Counts()),
                history_url=f"{history_url}?{urlencode({'job': job.id})}",
            )
            if row.last is not None:
                row.last_url = self._url("django_oncejob_claim_change", row.last.pk)
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
        if not Instance.objects.filter(live_instances(conf.HEARTBEAT_TIMEOUT)).exists():
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
        waiting = RunRequest.objects.filter(job=job.id, taken_at__isnull=True).first()
        if waiting is not None:
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
        RunRequest.objects.create(
            job=job.id, requested_by=request.user.get_username(), requested_at=now
        )
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

    def _job(self, request: HttpRequest, job_id: str, *, enabled: bool) -> registry.JobSpec | None:
        """The job ``job_id`` from settings, or ``None`` with an error message."""
        jobs, _errors = registry.settings_jobs()
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


def _when(value: datetime | None) -> str:
    """A time to the second, in the current time zone: the history is read to the second."""
    if value is None:
        return "–"
    return formats.date_format(timezone.localtime(value), "Y-m-d H:i:s")


def _seconds(value: timedelta | None) -> str:
    if value is None:
        return "–"
    # Translators: a duration in seconds, to the millisecond, e.g. 1.250 s.
    return gettext("%(seconds)s s") % {"seconds": f"{value.total_seconds():.3f}"}
