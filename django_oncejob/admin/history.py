"""The history in the admin: every occurrence claimed, read-only, with its outcome."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from django_oncejob.admin.base import ReadOnlyAdmin, seconds, status_badge, when
from django_oncejob.admin.pagination import CappedPaginator
from django_oncejob.jobs import registry
from django_oncejob.models import Attempt, Run


class JobFilter(admin.SimpleListFilter):
    """Filter the history by job, offering the jobs from settings (no scan of the history)."""

    title = _("job")
    parameter_name = "job"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        jobs, _errors = registry.parsed_jobs()
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


class AttemptInline(admin.TabularInline):  # type: ignore[type-arg]
    """The failed attempts of an occurrence its job tried again, under its run."""

    model = Attempt
    fields = ("number", "owner", "started_at", "finished_at", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = _("failed attempt")
    verbose_name_plural = _("failed attempts")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin[Run]):
    """The history: every occurrence claimed, read-only.

    Its rows are the fence against a second run, so none is added, changed or deleted
    here; old rows go with ``manage.py oncejob_prune``.
    """

    list_display = [
        "job",
        "scheduled",
        "status_label",
        "owner_label",
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
        (None, {"fields": ("job", "scheduled", "status_label", "owner_label", "requested")}),
        (
            _("Timing"),
            {
                "fields": (
                    "claimed",
                    "started",
                    "finished",
                    "duration",
                    "lateness",
                    "attempts_label",
                    "deadline_label",
                    "next_attempt_label",
                )
            },
        ),
        (_("Hand-off"), {"fields": ("task_backend", "task_id")}),
        (_("Result"), {"fields": ("result",)}),
        (_("Error"), {"fields": ("error_text", "traceback_text")}),
    )
    # Every field the page shows, and none of them editable.
    readonly_fields = tuple(flatten_fieldsets(fieldsets))
    inlines = [AttemptInline]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, {"title": _("History"), **(extra_context or {})})

    @admin.display(description=_("scheduled for"), ordering="scheduled_for")
    def scheduled(self, obj: Run) -> str:
        return when(obj.scheduled_for)

    @admin.display(description=_("owner"), ordering="owner")
    def owner_label(self, obj: Run) -> str:
        if obj.status == Run.Status.MISSED:
            # Nobody claimed it: the row's owner is the instance that noticed.
            return gettext("none (noticed by %(owner)s)") % {"owner": obj.owner}
        return obj.owner

    @admin.display(description=_("claimed at"))
    def claimed(self, obj: Run) -> str:
        return "–" if obj.status == Run.Status.MISSED else when(obj.claimed_at)

    @admin.display(description=_("attempts"))
    def attempts_label(self, obj: Run) -> str:
        return "–" if obj.status == Run.Status.MISSED else str(obj.attempts)

    @admin.display(description=_("deadline"))
    def deadline_label(self, obj: Run) -> str:
        return when(obj.deadline)

    @admin.display(description=_("next attempt at"))
    def next_attempt_label(self, obj: Run) -> str:
        return when(obj.next_attempt_at)

    @admin.display(description=_("started at"))
    def started(self, obj: Run) -> str:
        return when(obj.started_at)

    @admin.display(description=_("finished at"))
    def finished(self, obj: Run) -> str:
        return when(obj.finished_at)

    @admin.display(description=_("status"), ordering="status")
    def status_label(self, obj: Run) -> SafeString:
        return status_badge(obj.status)

    @admin.display(description=_("duration"))
    def duration(self, obj: Run) -> str:
        return seconds(obj.duration)

    @admin.display(description=_("lateness"))
    def lateness(self, obj: Run) -> str:
        return seconds(obj.lateness)

    @admin.display(description=_("started by"), ordering="manual")
    def requested(self, obj: Run) -> str:
        if obj.manual:
            return gettext("manual, by %(user)s") % {"user": obj.requested_by or "?"}
        return gettext("schedule")

    @admin.display(description=_("error"))
    def error_text(self, obj: Run) -> SafeString | str:
        if not obj.error:
            return "–"
        return format_html('<pre class="oncejob-pre">{}</pre>', obj.error)

    @admin.display(description=_("traceback"))
    def traceback_text(self, obj: Run) -> SafeString | str:
        if not obj.traceback:
            return "–"
        return format_html('<pre class="oncejob-pre oncejob-traceback">{}</pre>', obj.traceback)
