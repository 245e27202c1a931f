"""The instances in the admin: each ``runjobs`` and task worker that beats, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_oncejob.admin.base import ReadOnlyAdmin, ago, badge, when
from django_oncejob.conf import conf
from django_oncejob.models import Instance, InstanceQuerySet, Run


class StateFilter(admin.SimpleListFilter):
    """Filter instances by whether they are alive now."""

    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("alive", _("alive")), ("gone", _("gone"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        assert isinstance(queryset, InstanceQuerySet)
        if self.value() == "alive":
            return queryset.alive(conf.HEARTBEAT_TIMEOUT)
        if self.value() == "gone":
            return queryset.gone(conf.HEARTBEAT_TIMEOUT)
        return queryset


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin[Instance]):
    """The runjobs instances and task workers that beat in the database, read-only."""

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
            Run.objects.filter(owner=OuterRef("owner"), status=Run.Status.RUNNING)
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

    @admin.display(description=_("state"))
    def state(self, obj: Instance) -> SafeString:
        if obj.is_alive(conf.HEARTBEAT_TIMEOUT):
            return badge("alive", "●", _("alive"))
        if obj.clean_stop:
            return badge("gone", "○", _("stopped"))
        return badge("gone", "○", _("went silent"))

    @admin.display(description=_("started at"), ordering="started_at")
    def started(self, obj: Instance) -> str:
        return when(obj.started_at)

    @admin.display(description=_("last heartbeat"), ordering="heartbeat_at")
    def heartbeat(self, obj: Instance) -> str:
        return f"{when(obj.heartbeat_at)} ({ago(obj.heartbeat_at)})"

    @admin.display(description=_("stopped at"))
    def stopped(self, obj: Instance) -> str:
        return when(obj.stopped_at)

    @admin.display(description=_("jobs running now"), ordering="running_count")
    def running(self, obj: Instance) -> int:
        return int(getattr(obj, "running_count", 0))
