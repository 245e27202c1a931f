"""What the admin's pages share: read-only model admins, status badges, times."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Generic, TypeVar

from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext

from django_oncejob.models import Run

M = TypeVar("M", bound=models.Model)

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin
else:

    class _ModelAdmin(admin.ModelAdmin, Generic[M]):
        pass


class ReadOnlyAdmin(_ModelAdmin[M]):
    """A model admin that adds, changes and deletes nothing: what it shows is a record."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False


#: The symbol shown before each status, so that it never rests on colour alone.
STATUS_ICONS: dict[str, str] = {
    Run.Status.RUNNING: "▶",
    Run.Status.SUCCEEDED: "✓",
    Run.Status.FAILED: "✗",
    Run.Status.ABANDONED: "⚠",
    Run.Status.SKIPPED: "↷",
    Run.Status.PAUSED: "‖",
    Run.Status.MISSED: "⊘",
    Run.Status.ENQUEUED: "⇢",
    Run.Status.RETRYING: "↻",
    Run.Status.TIMED_OUT: "⧖",
    Run.Status.WAITING: "…",
}


def badge(kind: str, icon: str, text: object) -> SafeString:
    """A coloured label with a symbol and words, styled by ``oncejob/styles.html``."""
    return format_html(
        '<span class="oncejob-badge oncejob-{}"><span aria-hidden="true">{}</span> {}</span>',
        kind,
        icon,
        text,
    )


def status_badge(value: str) -> SafeString:
    """The badge of a :class:`Run` status."""
    label = Run.Status(value).label if value in Run.Status.values else value
    return badge(value, STATUS_ICONS.get(value, "•"), label)


def when(value: datetime | None) -> str:
    """A time to the second, in the current time zone: the history is read to the second."""
    if value is None:
        return "–"
    return formats.date_format(timezone.localtime(value), "Y-m-d H:i:s")


def seconds(value: timedelta | None) -> str:
    if value is None:
        return "–"
    # Translators: a duration in seconds, to the millisecond, e.g. 1.250 s.
    return gettext("%(seconds)s s") % {"seconds": f"{value.total_seconds():.3f}"}


def ago(value: datetime) -> str:
    """How long ago ``value`` was: in seconds under two minutes, where "0 minutes" says nothing."""
    elapsed = max(0, int((timezone.now() - value).total_seconds()))
    if elapsed < 120:
        return gettext("%(seconds)s s ago") % {"seconds": elapsed}
    return gettext("%(time)s ago") % {"time": timesince(value)}


def until(value: datetime) -> str:
    """How long until ``value``, as :func:`ago` counts it."""
    left = max(0, int((value - timezone.now()).total_seconds()))
    if left < 120:
        return gettext("in %(seconds)s s") % {"seconds": left}
    return gettext("in %(time)s") % {"time": timeuntil(value)}
