from __future__ import annotations

import getpass
from argparse import ArgumentParser
from collections import Counter
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext, gettext_lazy

from django_oncejob.cache.deployment import wait_for_deployment_key
from django_oncejob.conf import conf
from django_oncejob.fleet.heartbeat import worker_heartbeat
from django_oncejob.jobs.registry import get_jobs
from django_oncejob.management.base import TranslatedCommand, require_migrated
from django_oncejob.monitoring import flush
from django_oncejob.running import backfill
from django_oncejob.running.pipeline import Pipeline
from django_oncejob.running.steps import Outcome


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Run a job's occurrences scheduled in a past range, here, one after another. Each "
        "goes through its claim and its history row, as a scheduled one does: an occurrence "
        "already in the history is not run again, by a second backfill or by the schedule."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("job", help=gettext("The job id."))
        parser.add_argument(
            "--from",
            dest="start",
            required=True,
            help=gettext("The first scheduled time, ISO 8601 (e.g. 2026-12-01T00:00:00+00:00)."),
        )
        parser.add_argument(
            "--until",
            dest="end",
            required=True,
            help=gettext("The last scheduled time, ISO 8601; it must be in the past."),
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help=gettext("List the occurrences in the range; run nothing."),
        )

    def handle(self, *, job: str, start: str, end: str, dry_run: bool, **options: Any) -> None:
        jobs = get_jobs()
        spec = jobs.get(job)
        if spec is None:
            raise CommandError(
                gettext("No job %(job)s in ONCEJOB['JOBS'] (jobs: %(jobs)s).")
                % {"job": repr(job), "jobs": ", ".join(jobs) or "-"}
            )
        first, last = _instant(start, "--from"), _instant(end, "--until")
        if last < first:
            raise CommandError(gettext("--until must not be before --from."))
        if last > timezone.now():
            raise CommandError(
                gettext("--until must be in the past: the schedule runs what is still to come.")
            )
        times = backfill.scheduled_between(spec, first, last)
        if dry_run:
            for time in times:
                self.stdout.write(time.isoformat())
            self.stdout.write(gettext("%(count)d occurrence(s).") % {"count": len(times)})
            return
        require_migrated()
        wait_for_deployment_key()
        owner = conf.OWNER
        outcomes: Counter[Outcome] = Counter()
        # It beats while it runs, as a task worker does: the instances must not take its
        # running rows for a dead instance's.
        with worker_heartbeat.running(owner, conf.HEARTBEAT_INTERVAL, conf.HEARTBEAT_TIMEOUT):
            ran = backfill.run_all(
                Pipeline(owner),
                spec,
                times,
                f"oncejob_backfill ({getpass.getuser()})",
                lambda outcome: outcomes.update([outcome]),
            )
        flush(conf.MONITOR_TIMEOUT)
        self.stdout.write(
            gettext(
                "Job %(job)s: %(ran)d of %(count)d occurrence(s) from %(start)s to %(end)s ran "
                "here (%(outcomes)s); the others were in the history or claimed already."
            )
            % {
                "job": repr(job),
                "ran": ran,
                "count": len(times),
                "start": first.isoformat(),
                "end": last.isoformat(),
                "outcomes": ", ".join(
                    f"{o.value} {n}" for o, n in sorted(outcomes.items(), key=str)
                )
                or "-",
            }
        )
        if outcomes[Outcome.FAILED] or outcomes[Outcome.TIMED_OUT]:
            raise CommandError(gettext("Some occurrences failed: see the history."))


def _instant(text: str, option: str) -> datetime:
    value = parse_datetime(text)
    if value is None:
        raise CommandError(
            gettext("%(option)s must be an ISO 8601 date and time, got %(value)s.")
            % {"option": option, "value": repr(text)}
        )
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value
