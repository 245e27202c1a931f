from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from django_oncejob.conf import conf
from django_oncejob.models import Claim, Instance

if TYPE_CHECKING:
    ClaimAdminBase = admin.ModelAdmin[Claim]
    InstanceAdminBase = admin.ModelAdmin[Instance]
else:
    ClaimAdminBase = InstanceAdminBase = admin.ModelAdmin


@admin.register(Claim)
class ClaimAdmin(ClaimAdminBase):
    list_display = ["job", "scheduled_for", "status", "owner", "duration", "lateness"]
    list_filter = ["status", "job"]
    search_fields = ["job", "owner", "error"]
    date_hierarchy = "scheduled_for"
    readonly_fields = (
        "job",
        "scheduled_for",
        "status",
        "owner",
        "claimed_at",
        "started_at",
        "finished_at",
        "duration",
        "lateness",
        "attempts",
        "error",
        "traceback",
    )
    fields = readonly_fields
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Claim | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Claim | None = None) -> bool:
        # The rows are the fence against a second run: deleting one re-opens its occurrence.
        return False

    @admin.display(description=_("duration"))
    def duration(self, obj: Claim) -> str:
        return _seconds(obj.duration)

    @admin.display(description=_("lateness"))
    def lateness(self, obj: Claim) -> str:
        return _seconds(obj.lateness)


@admin.register(Instance)
class InstanceAdmin(InstanceAdminBase):
    list_display = ["owner", "state", "host", "pid", "version", "started_at", "heartbeat_at"]
    search_fields = ["owner", "host"]
    readonly_fields = (
        "owner",
        "host",
        "pid",
        "version",
        "started_at",
        "heartbeat_at",
        "stopped_at",
    )
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Instance | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Instance | None = None) -> bool:
        return False

    @admin.display(description=_("state"))
    def state(self, obj: Instance) -> str:
        return str(_("alive") if obj.is_alive(conf.HEARTBEAT_TIMEOUT) else _("gone"))


def _seconds(value: timedelta | None) -> str:
    if value is None:
        return "–"
    return f"{value.total_seconds():.3f} s"
