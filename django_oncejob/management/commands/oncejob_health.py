from __future__ import annotations

import socket
from argparse import ArgumentParser, ArgumentTypeError
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy, ngettext

from django_oncejob.conf import conf
from django_oncejob.jobs import registry
from django_oncejob.management.base import TranslatedCommand, require_migrated
from django_oncejob.models import Instance, Run

CHECKS = ("instances", "failures", "missed")


def check_names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in CHECKS]
    if unknown or not names:
        raise ArgumentTypeError(
            gettext("choose one or more of %(checks)s, separated by commas; got %(value)s")
            % {"checks": ", ".join(CHECKS), "value": repr(value)}
        )
    return names


def seconds(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ArgumentTypeError(
            gettext("must be a whole number of seconds >= 1, got %(value)s")
            % {"value": repr(value)}
        )
    return number


class Command(TranslatedCommand):
    help = gettext_lazy(
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
            help=gettext(
                "What to check, separated by commas: instances (a runjobs instance is "
                "alive), failures (no job's last run failed or was abandoned), missed (no "
                "occurrence was missed within --since). Default: all three."
            ),
        )
        parser.add_argument(
            "--instance",
            nargs="?",
            const="",
            default=None,
            metavar="OWNER",
            help=gettext(
                "Check only this host's instance: the one named OWNER, else the one named "
                "ONCEJOB['OWNER'] when that is set, else any instance on this host name. "
                "Implies --check instances unless --check is given."
            ),
        )
        parser.add_argument(
            "--since",
            type=seconds,
            default=3600,
            metavar="SECONDS",
            help=gettext("How far back a missed occurrence counts, in seconds (default 3600)."),
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
        jobs, errors = registry.parsed_jobs()
        if errors:
            raise CommandError(
                gettext(
                    "ONCEJOB has %(count)s error(s), so runjobs cannot start: run "
                    "manage.py check to see them."
                )
                % {"count": len(errors)}
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
            # Looked at only now: a probe that passes costs no more queries for it.
            require_migrated()
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CommandError(
                gettext("The database did not answer: %(reason)s") % {"reason": reason}
            ) from exc
        if problems:
            # Translators: between the problems found, each a sentence without its full stop.
            if len(problems) == 1:
                raise CommandError(problems[0])
            separator = gettext("; ")
            raise CommandError(separator.join(problem.rstrip(".。") for problem in problems))
        if options["verbosity"] > 0:
            self.stdout.write(gettext("Healthy: %(checks)s.") % {"checks": "; ".join(fine)})

    def check_instances(self, instance: str | None, problems: list[str], fine: list[str]) -> None:
        timeout = conf.HEARTBEAT_TIMEOUT
        alive = Instance.objects.alive(timeout)
        if instance is None:
            count = alive.count()
            if count:
                fine.append(
                    ngettext("%(count)s instance alive", "%(count)s instances alive", count)
                    % {"count": count}
                )
            else:
                problems.append(
                    gettext(
                        "No runjobs instance is alive: none sent a heartbeat in the last "
                        "%(timeout)s s."
                    )
                    % {"timeout": timeout}
                )
            return
        owner = instance or (conf.OWNER if conf.OWNER_IS_SET else "")
        host = socket.gethostname()
        if owner:
            mine = alive.filter(owner=owner)
            alive_text = gettext("instance %(owner)s alive")
            dead_text = gettext(
                "The runjobs instance %(owner)s is not alive: it sent no heartbeat in the last "
                "%(timeout)s s, or stopped."
            )
        else:
            mine = alive.filter(host=host[:255])
            alive_text = gettext("instance on host %(host)s alive")
            dead_text = gettext(
                "The runjobs instance on host %(host)s is not alive: it sent no heartbeat in "
                "the last %(timeout)s s, or stopped."
            )
        values = {"owner": repr(owner), "host": repr(host), "timeout": timeout}
        if mine.exists():
            fine.append(alive_text % values)
        else:
            problems.append(dead_text % values)

    def check_failures(self, jobs: list[str], problems: list[str], fine: list[str]) -> None:
        last = Run.objects.latest_per_job(jobs, Run.ENDED)
        failed = [row for row in last.values() if row.status in Run.FAILURES]
        if not failed:
            fine.append(gettext("no job's last run failed"))
            return
        failed.sort(key=lambda row: row.job)
        first = failed[0]
        if first.status == Run.Status.FAILED and first.error:
            # Translators: error is the first line of the job's exception.
            text = gettext("The last run of job %(job)s failed at %(when)s on %(owner)s: %(error)s")
        elif first.status == Run.Status.FAILED:
            text = gettext("The last run of job %(job)s failed at %(when)s on %(owner)s")
        elif first.status == Run.Status.TIMED_OUT:
            # Translators: error says how long the job may run.
            text = gettext(
                "The last run of job %(job)s timed out at %(when)s on %(owner)s: %(error)s"
            )
        elif first.error:
            text = gettext(
                # Translators: error says why the run was abandoned.
                "The last run of job %(job)s was abandoned at %(when)s on %(owner)s: %(error)s"
            )
        else:
            text = gettext("The last run of job %(job)s was abandoned at %(when)s on %(owner)s")
        text %= {
            "job": repr(first.job),
            "when": (first.finished_at or first.scheduled_for).isoformat(timespec="seconds"),
            "owner": first.owner,
            "error": first.error.splitlines()[0][:200] if first.error else "",
        }
        if len(failed) > 1:
            # Translators: problem is the sentence about the first job; others is a list of
            # job ids.
            text = gettext("%(problem)s (and the last runs of %(others)s failed too)") % {
                "problem": text,
                "others": ", ".join(repr(row.job) for row in failed[1:]),
            }
        problems.append(text)

    def check_missed(
        self, jobs: list[str], since: int, problems: list[str], fine: list[str]
    ) -> None:
        rows = (
            Run.objects.filter(
                job__in=jobs,
                status=Run.Status.MISSED,
                scheduled_for__gte=timezone.now() - timedelta(seconds=since),
            )
            .order_by("job")
            .values("job")
            .annotate(count=Count("pk"))
        )
        missed = {row["job"]: row["count"] for row in rows}
        if not missed:
            fine.append(gettext("no occurrence missed in the last %(since)s s") % {"since": since})
            return
        total = sum(missed.values())
        problems.append(
            ngettext(
                # Translators: jobs is a list of job ids, each with its count, e.g. 'sync' (2).
                "%(count)s occurrence was missed in the last %(since)s s: %(jobs)s",
                "%(count)s occurrences were missed in the last %(since)s s: %(jobs)s",
                total,
            )
            % {
                "count": total,
                "since": since,
                "jobs": ", ".join(f"{job!r} ({count})" for job, count in missed.items()),
            }
        )
