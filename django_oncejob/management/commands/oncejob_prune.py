from __future__ import annotations

from argparse import ArgumentParser
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from django_oncejob.conf import conf
from django_oncejob.models import Claim, Instance, RunRequest


class Command(BaseCommand):
    help = (
        "Delete the job history older than a number of days, in batches: claims (never "
        "running or enqueued ones), run requests, and instances stopped or silent since "
        "before then."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Keep this many days of history (default: ONCEJOB['RETENTION_DAYS']).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            help="Rows deleted per query (default 1000).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted; delete nothing.",
        )

    def handle(self, *, days: int | None, batch_size: int, dry_run: bool, **options: Any) -> None:
        if days is None:
            days = conf.RETENTION_DAYS
        if days is None:
            raise CommandError(
                "Say how many days of history to keep: give --days N, or set "
                "ONCEJOB['RETENTION_DAYS']."
            )
        if days < 1:
            raise CommandError(f"--days must be 1 or more, got {days}.")
        if batch_size < 1:
            raise CommandError(f"--batch-size must be 1 or more, got {batch_size}.")
        if days * 86400 < conf.CLAIM_TIMEOUT:
            raise CommandError(
                f"Keeping {days} day(s) would delete claims younger than "
                f"ONCEJOB['CLAIM_TIMEOUT'] ({conf.CLAIM_TIMEOUT} s), which may still stop an "
                "occurrence from running twice. Keep more days."
            )
        cutoff = timezone.now() - timedelta(days=days)
        self.verbosity = int(options["verbosity"])
        targets: list[tuple[str, str, QuerySet[Any]]] = [
            (
                "claim",
                "claims",
                Claim.objects.filter(scheduled_for__lt=cutoff).exclude(
                    status__in=[Claim.Status.RUNNING, Claim.Status.ENQUEUED]
                ),
            ),
            ("run request", "run requests", RunRequest.objects.filter(requested_at__lt=cutoff)),
            (
                "instance",
                "instances",
                Instance.objects.filter(Q(stopped_at__lt=cutoff) | Q(heartbeat_at__lt=cutoff)),
            ),
        ]
        counts = []
        for one, many, queryset in targets:
            count = queryset.count() if dry_run else self.delete(many, queryset, batch_size)
            counts.append(f"{count} {one if count == 1 else many}")
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb} {', '.join(counts[:-1])} and {counts[-1]} from before "
            f"{_iso(cutoff)} ({days} day{'s' if days != 1 else ''} ago)."
        )

    def delete(self, name: str, queryset: QuerySet[Model], batch_size: int) -> int:
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
                self.stdout.write(f"Deleted {deleted} {name} (up to id {batch[-1]}).")
            if len(batch) < batch_size:
                return total


def _iso(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="seconds")
