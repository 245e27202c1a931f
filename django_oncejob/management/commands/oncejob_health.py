from __future__ import annotations

import socket
from argparse import ArgumentParser, ArgumentTypeError
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.db.models import Count
from django.utils import timezone

from django_oncejob import registry, status
from django_oncejob.conf import conf, user_config
from django_oncejob.heartbeat import live_instances
from django_oncejob.models import Claim, Instance

CHECKS = ("instances", "failures", "missed")


def check_names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in CHECKS]
    if unknown or not names:
        raise ArgumentTypeError(
            f"choose one or more of {', '.join(CHECKS)}, separated by commas; got {value!r}"
        )
    return names


def seconds(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ArgumentTypeError(f"must be a whole number of seconds >= 1, got {value!r}")
    return number


class Command(BaseCommand):
    help = (
        "Exit with status 0 if the scheduled jobs are healthy; otherwise print one line "
        "saying why and exit with status 1. Checks that an instance is alive, that no job's "
        "last run failed, and that no occurrence was missed recently."
    )
    # A probe must be quick, and must not fail on a warning about something else.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--check",
            type=check_names,
            default=None,
            metavar="NAMES",
            help="What to check, separated by commas: instances (a runjobs instance is "
            "alive), failures (no job's last run failed or was abandoned), missed (no "
            "occurrence was missed within --since). Default: all three.",
        )
        parser.add_argument(
            "--instance",
            nargs="?",
            const="",
            default=None,
            metavar="OWNER",
            help="Check only this host's instance: the one named OWNER, else the one named "
            "ONCEJOB['OWNER'] when that is set, else any instance on this host name. "
            "Implies --check instances unless --check is given.",
        )
        parser.add_argument(
            "--since",
            type=seconds,
            default=3600,
            metavar="SECONDS",
            help="How far back a missed occurrence counts, in seconds (default 3600).",
        )

    def handle(
        self,
        *,
        check: list[str] | None,
        instance: str | None,
        since: int,
        **options: Any,
    ) -> None:
        if check is None:
            check = ["instances"] if instance is not None else list(CHECKS)
        jobs, errors = registry.settings_jobs()
        if errors:
            raise CommandError(
                f"ONCEJOB has {len(errors)} error(s), so runjobs cannot start: run "
                "manage.py check to see them."
            )
        enabled = [job.id for job in jobs.values() if job.enabled]
        problems: list[str] = []
        fine: list[str] = []
        try:
            if "instances" in check:
                self.check_instances(instance, problems, fine)
            if "failures" in check:
                self.check_failures(enabled, problems, fine)
            if "missed" in check:
                self.check_missed(enabled, since, problems, fine)
        except DatabaseError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CommandError(f"The database did not answer: {reason}") from exc
        if problems:
            raise CommandError("; ".join(problems))
        if options["verbosity"] > 0:
            self.stdout.write(f"Healthy: {'; '.join(fine)}.")

    def check_instances(self, instance: str | None, problems: list[str], fine: list[str]) -> None:
        timeout = conf.HEARTBEAT_TIMEOUT
        alive = Instance.objects.filter(live_instances(timeout))
        if instance is None:
            count = alive.count()
            if count:
                fine.append(f"{count} instance{'s' if count != 1 else ''} alive")
            else:
                problems.append(
                    f"No runjobs instance is alive: none sent a heartbeat in the last {timeout} s."
                )
            return
        if instance:
            mine, name = alive.filter(owner=instance), f"instance {instance!r}"
        elif user_config().get("OWNER"):
            mine, name = alive.filter(owner=conf.OWNER), f"instance {conf.OWNER!r}"
        else:
            host = socket.gethostname()
            mine, name = alive.filter(host=host[:255]), f"instance on host {host!r}"
        if mine.exists():
            fine.append(f"{name} alive")
        else:
            problems.append(
                f"The runjobs {name} is not alive: it sent no heartbeat in the last "
                f"{timeout} s, or stopped."
            )

    def check_failures(self, jobs: list[str], problems: list[str], fine: list[str]) -> None:
        last = status.last_rows(jobs, status.ENDED)
        failed = [row for row in last.values() if row.status in status.FAILURES]
        if not failed:
            fine.append("no job's last run failed")
            return
        failed.sort(key=lambda row: row.job)
        first = failed[0]
        when = (first.finished_at or first.scheduled_for).isoformat(timespec="seconds")
        detail = f": {first.error.splitlines()[0][:200]}" if first.error else ""
        verb = "failed" if first.status == Claim.Status.FAILED else "was abandoned"
        text = f"The last run of job {first.job!r} {verb} at {when} on {first.owner}{detail}"
        if len(failed) > 1:
            others = ", ".join(repr(row.job) for row in failed[1:])
            text += f" (and the last runs of {others} failed too)"
        problems.append(text)

    def check_missed(
        self, jobs: list[str], since: int, problems: list[str], fine: list[str]
    ) -> None:
        rows = (
            Claim.objects.filter(
                job__in=jobs,
                status=Claim.Status.MISSED,
                scheduled_for__gte=timezone.now() - timedelta(seconds=since),
            )
            .order_by("job")
            .values("job")
            .annotate(count=Count("pk"))
        )
        missed = {row["job"]: row["count"] for row in rows}
        if not missed:
            fine.append(f"no occurrence missed in the last {since} s")
            return
        total = sum(missed.values())
        per_job = ", ".join(f"{job!r} ({count})" for job, count in missed.items())
        problems.append(
            f"{total} occurrence{'s were' if total != 1 else ' was'} missed in the last "
            f"{since} s: {per_job}"
        )
