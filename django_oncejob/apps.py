from __future__ import annotations

from django.apps import AppConfig
from django.core import checks
from django.utils.translation import gettext_lazy as _


class OncejobConfig(AppConfig):
    name = "django_oncejob"
    verbose_name = _("Scheduled jobs")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_oncejob.checks import check_settings
        from django_oncejob.handoff import enqueue
        from django_oncejob.jobs.decorator import autodiscover

        checks.register(check_settings)
        enqueue.connect()
        autodiscover()
