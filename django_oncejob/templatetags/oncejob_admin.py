"""Times and statuses on the jobs pages, shown as the rest of the admin shows them."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils.safestring import SafeString

from django_oncejob.admin import base

register = template.Library()


@register.filter
def oncejob_ago(value: datetime) -> str:
    return base.ago(value)


@register.filter
def oncejob_until(value: datetime) -> str:
    return base.until(value)


@register.filter
def oncejob_status(value: str) -> SafeString:
    return base.status_badge(value)


@register.filter
def oncejob_seconds(value: timedelta | None) -> str:
    return base.seconds(value)
