from __future__ import annotations

from argparse import ArgumentParser
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import CommandError
from django.db.models import Model, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy, gettext_noop, ngettext

from django_oncejob.conf import conf
from django_oncejob.management.base import TranslatedCommand
from django_oncejob.models import Instance, Run, RunRequest


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Delete the job history older than a number of days, in batches: runs (never "
        "running or enqueued ones), run requests, and instances stopped or silent since "
        "before then."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help=gettext("Keep this many days of history (default: ONCEJOB['RETENTION_DAYS'])."),
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            help=gettext("Rows deleted per query (default 1000)."),
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help=gettext("Count what would be deleted; delete nothing."),
        )

    def handle(self, *, days: int | None, batch_size: int, dry_run: bool, **options: Any) -> None:
        if days is None:
            days = conf.RETENTION_DAYS
        if days is None:
            raise CommandError(
                gettext(
                    "Say how many days of history to keep: give --days N, or set "
                    "ONCEJOB['RETENTION_DAYS']."
                )
            )
        if days < 1:
            raise CommandError(gettext("--days must be 1 or more, got %(days)s.") % {"days": days})
        if batch_size < 1:
            raise CommandError(
                gettext("--batch-size must be 1 or more, got %(size)s.") % {"size": batch_size}
            )
        if days * 86400 < conf.CLAIM_TIMEOUT:
            raise CommandError(
                gettext(
                    # Translators: timeout is a number of seconds.
                    "Keeping %(days)s day(s) would delete runs younger than "
                    "ONCEJOB['CLAIM_TIMEOUT'] (%(timeout)s s), which may still stop an "
                    "occurrence from running twice. Keep more days."
                )
                % {"days": days, "timeout": conf.CLAIM_TIMEOUT}
            )
        cutoff = timezone.now() - timedelta(days=days)
        self.verbosity = int(options["verbosity"])
        # Each with the line that -v 2 writes per batch it deletes.
        targets: list[tuple[QuerySet[Any], str]] = [
            (
                Run.objects.filter(scheduled_for__lt=cutoff).exclude(
                    status__in=[
                        Run.Status.RUNNING,
                        Run.Status.ENQUEUED,
                        Run.Status.RETRYING,
                        Run.Status.WAITING,
                    ]
                ),
                gettext_noop("Deleted %(count)s runs (up to id %(id)s)."),
            ),
            (
                RunRequest.objects.filter(requested_at__lt=cutoff),
                gettext_noop("Deleted %(count)s run requests (up to id %(id)s)."),
            ),
            (
                Instance.objects.filter(Q(stopped_at__lt=cutoff) | Q(heartbeat_at__lt=cutoff)),
                gettext_noop("Deleted %(count)s instances (up to id %(id)s)."),
            ),
        ]
        runs, requests, instances = (
            queryset.count() if dry_run else self.delete(queryset, batch_size, progress)
            for queryset, progress in targets
        )
        if dry_run:
            summary = ngettext(
                # Translators: runs, requests and instances are counts of rows, e.g. "3 runs".
                "Would delete %(runs)s, %(requests)s and %(instances)s from before "
                "%(cutoff)s (%(days)s day ago).",
                "Would delete %(runs)s, %(requests)s and %(instances)s from before "
                "%(cutoff)s (%(days)s days ago).",
                days,
            )
        else:
            summary = ngettext(
                # Translators: runs, requests and instances are counts of rows, e.g. "3 runs".
                "Deleted %(runs)s, %(requests)s and %(instances)s from before %(cutoff)s "
                "(%(days)s day ago).",
                "Deleted %(runs)s, %(requests)s and %(instances)s from before %(cutoff)s "
                "(%(days)s days ago).",
                days,
            )
        self.stdout.write(
            summary
            % {
                "runs": ngettext("%(count)s run", "%(count)s runs", runs) % {"count": runs},
                "requests": ngettext("%(count)s run request", "%(count)s run requests", requests)
                % {"count": requests},
                "instances": ngettext("%(count)s instance", "%(count)s instances", instances)
                % {"count": instances},
                "cutoff": _iso(cutoff),
                "days": days,
            }
        )

    def delete(self, queryset: QuerySet[Model], batch_size: int, progress: str) -> int:
        """Delete the rows of ``queryset`` a batch of primary keys at a time."""
        total = 0
        while True:
            batch = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not batch:
                return total
            # The filter is kept, so a row that changed since it was read is left alone.
            deleted, _ = queryset.filter(pk__in=batch).delete()
            total += deleted
            if self.verbosity >= 2:
                self.stdout.write(gettext(progress) % {"count": deleted, "id": batch[-1]})
            if len(batch) < batch_size:
                return total


def _iso(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="seconds")
