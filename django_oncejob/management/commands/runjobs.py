from __future__ import annotations

import getpass
import logging
import os
import signal
import sys
import threading
import time
from argparse import ArgumentParser
from collections.abc import Collection
from types import FrameType
from typing import Any

from django.core import checks
from django.core.management.base import CommandError
from django.db import DatabaseError
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy, ngettext

from django_oncejob import monitoring
from django_oncejob.cache.deployment import wait_for_deployment_key
from django_oncejob.cache.eviction import eviction_warning
from django_oncejob.checks import check_settings
from django_oncejob.conf import conf, text
from django_oncejob.jobs import triggers
from django_oncejob.jobs.registry import get_jobs
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.jobs.versions import ScheduleBook
from django_oncejob.management.base import TranslatedCommand, require_migrated
from django_oncejob.models import Run, ScheduleVersion
from django_oncejob.monitoring import metrics
from django_oncejob.running.pipeline import Pipeline
from django_oncejob.running.steps import Outcome
from django_oncejob.scheduling.scheduler import JobScheduler

logger = logging.getLogger("django_oncejob")

#: Where a job's definition in force comes from, as --list says it.
SOURCES = {
    "settings": gettext_lazy("defined in ONCEJOB['JOBS']"),
    "code": gettext_lazy("declared with @job in code"),
    "override": gettext_lazy("overridden in the admin"),
}

#: Seconds at least that a stopping instance gives its queued outcomes to reach the history.
OUTCOMES_FLUSH = 5.0


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Run the jobs from settings.ONCEJOB on this instance until SIGTERM or SIGINT. "
        "Run it on every instance: each occurrence runs on one of them only."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--list",
            action="store_true",
            dest="list_jobs",
            help=gettext("Print each job, its trigger and its next fire times, then exit."),
        )
        parser.add_argument(
            "--count",
            type=int,
            help=gettext("With --list, how many next fire times to print per job (default 3)."),
        )
        parser.add_argument(
            "--run",
            metavar="JOB",
            dest="run_job",
            help=gettext(
                "Run JOB once now, recorded in the history as a manual run, and exit with "
                "its outcome (0 if it succeeded, or was handed off to its task queue)."
            ),
        )
        parser.add_argument(
            "--owner",
            help=gettext(
                "Name recorded for this instance in the history (default: ONCEJOB['OWNER'] "
                "or '<host>:<pid>')."
            ),
        )

    def handle(
        self,
        *,
        list_jobs: bool,
        count: int | None,
        run_job: str | None,
        owner: str | None,
        **options: Any,
    ) -> None:
        self.check_options(list_jobs, count, run_job, owner)
        errors = [e for e in check_settings() if e.level >= checks.ERROR]
        if errors:
            raise CommandError(
                gettext("ONCEJOB is not valid; nothing was started:")
                + "".join(f"\n  {e.id}: {e.msg} HINT: {e.hint}" for e in errors)
            )
        jobs = get_jobs()
        if not list_jobs:
            require_migrated()
        if list_jobs:
            try:
                self.print_jobs(jobs.values(), 3 if count is None else count)
            except BrokenPipeError:
                # The reader stopped reading (| head): leave quietly, and keep Python's
                # flush at exit from failing again on the broken pipe.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
        if run_job is not None:
            self.run_once(jobs, run_job, owner or conf.OWNER, options["verbosity"])
            return
        self.run(jobs.values(), owner or conf.OWNER, options["verbosity"])

    def check_options(
        self, list_jobs: bool, count: int | None, run_job: str | None, owner: str | None
    ) -> None:
        if count is not None and not list_jobs:
            raise CommandError(gettext("--count goes with --list."))
        if list_jobs and run_job is not None:
            raise CommandError(gettext("--list and --run cannot be given together."))
        if count is not None and count < 0:
            raise CommandError(gettext("--count must be 0 or more."))
        longest = Run._meta.get_field("owner").max_length
        if owner is not None and not text(max_length=longest)(owner):
            raise CommandError(
                gettext(
                    "--owner must be a non-empty string of at most %(longest)s characters, "
                    "got %(value)s."
                )
                % {
                    "longest": longest,
                    "value": repr(owner) if len(owner) <= 60 else f"{len(owner)} characters",
                }
            )

    def run_once(self, jobs: dict[str, JobSpec], job_id: str, owner: str, verbosity: int) -> None:
        if job_id not in jobs:
            raise CommandError(
                # Translators: jobs is the list of job ids, or "none".
                gettext("No job %(job)s in ONCEJOB['JOBS'] (jobs: %(jobs)s).")
                % {"job": repr(job_id), "jobs": ", ".join(jobs) or _none()}
            )
        self.configure_logging(verbosity)
        wait_for_deployment_key()
        requested_by = f"runjobs --run ({getpass.getuser()})"
        outcome = Pipeline(owner).run_manual(jobs[job_id], timezone.now(), requested_by)
        monitoring.flush(conf.MONITOR_TIMEOUT)
        if outcome is Outcome.ENQUEUED:
            self.stdout.write(
                # Translators: queue is 'tasks' or 'celery'.
                gettext("Job %(job)s handed off to %(queue)s.")
                % {"job": repr(job_id), "queue": jobs[job_id].enqueue}
            )
            return
        if outcome is not Outcome.SUCCEEDED:
            raise CommandError(
                # Translators: outcome is the status recorded in the history, e.g. failed.
                gettext("Job %(job)s did not succeed: %(outcome)s.")
                % {"job": repr(job_id), "outcome": outcome.value}
            )
        self.stdout.write(gettext("Job %(job)s succeeded.") % {"job": repr(job_id)})

    def print_jobs(self, jobs: Collection[JobSpec], count: int) -> None:
        now = timezone.now()
        book = self.in_force(jobs)
        for deployed in jobs:
            job = book[deployed.id]
            if job.enabled:
                self.stdout.write(f"{job.id}: {job.trigger_text}")
            else:
                self.stdout.write(
                    gettext("%(job)s (disabled): %(trigger)s")
                    % {"job": job.id, "trigger": job.trigger_text}
                )
            self.stdout.write("    " + gettext("runs %(target)s") % {"target": job.target})
            self.stdout.write("    " + str(SOURCES.get(job.source, job.source)))
            pending = book.schedule(job.id).pending(now)
            if pending is not None:
                assert pending.begin is not None
                self.stdout.write(
                    "    "
                    + gettext("switches at %(at)s to: %(trigger)s")
                    % {
                        "at": pending.begin.isoformat(" "),
                        "trigger": pending.trigger_text,
                    }
                )
            if not job.enabled:
                self.stdout.write("    " + gettext("next: none, the job is disabled"))
                continue
            times = [t.isoformat(" ") for t in triggers.fire_times(job.trigger, now, count)]
            if times:
                self.stdout.write("    " + gettext("next: %(times)s") % {"times": ", ".join(times)})
            else:
                self.stdout.write("    " + gettext("next: never"))
        if not jobs:
            self.stdout.write(gettext("No jobs in ONCEJOB['JOBS']."))

    def in_force(self, jobs: Collection[JobSpec]) -> ScheduleBook:
        """The jobs as the versions in the database say, or as settings and code do if it
        cannot be read."""
        book = ScheduleBook({job.id: job for job in jobs})
        try:
            book.add(ScheduleVersion.objects.filter(job__in=list(book)).order_by("pk"))
        except DatabaseError:
            self.stderr.write(
                gettext(
                    "The schedules' versions could not be read from the database: these are "
                    "the jobs as this release defines them."
                )
            )
        return book

    def run(self, jobs: Collection[JobSpec], owner: str, verbosity: int) -> None:
        self.configure_logging(verbosity)
        if eviction := eviction_warning(conf.CACHE):
            self.stderr.write(f"runjobs {owner}: {eviction}")
        wait_for_deployment_key()
        metrics_server = self.serve_metrics(owner)
        stopping = threading.Event()
        forced = threading.Event()
        #: When the first signal came, on the monotonic clock: SHUTDOWN_TIMEOUT counts from it.
        signalled: list[float] = []

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Only flags here: the main thread does the work of stopping.
            if stopping.is_set():
                forced.set()
            else:
                signalled.append(time.monotonic())
            stopping.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        scheduler = JobScheduler(jobs, owner=owner, max_workers=conf.MAX_WORKERS)
        scheduler.start()
        count = len(scheduler.jobs)
        self.stdout.write(
            ngettext(
                # Translators: names is the list of job ids, or "none".
                "runjobs %(owner)s: scheduled %(count)s job (%(names)s).",
                "runjobs %(owner)s: scheduled %(count)s jobs (%(names)s).",
                count,
            )
            % {
                "owner": owner,
                "count": count,
                "names": ", ".join(job.id for job in scheduler.jobs) or _none(),
            }
        )
        try:
            while not stopping.wait(0.5):
                pass
            self.stdout.write(
                gettext("runjobs %(owner)s: stopping; no new occurrence will be claimed.")
                % {"owner": owner}
            )
            deadline = signalled[0] + conf.SHUTDOWN_TIMEOUT
            finished = self.stop(scheduler, deadline, forced)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if finished:
            # The outcomes still queued get what is left of the timeout, and a moment more.
            written = scheduler.sign_off(max(OUTCOMES_FLUSH, deadline - time.monotonic()))
            monitoring.flush(
                min(conf.MONITOR_TIMEOUT, max(OUTCOMES_FLUSH, deadline - time.monotonic()))
            )
            if metrics_server is not None:
                metrics_server.shutdown()
            self.stdout.write(gettext("runjobs %(owner)s: stopped.") % {"owner": owner})
            if not written:
                raise CommandError(
                    gettext("runjobs %(owner)s: some outcomes could not be recorded.")
                    % {"owner": owner}
                )
            return
        self.abandon(owner, scheduler)

    def serve_metrics(self, owner: str) -> Any:
        """Start serving this instance's Prometheus metrics, if ``METRICS_PORT`` says so."""
        port = conf.METRICS_PORT
        if port is None:
            return None
        try:
            return metrics.serve(port, conf.METRICS_ADDRESS)
        except OSError as exc:
            raise CommandError(
                gettext(
                    "runjobs %(owner)s: cannot serve metrics on %(address)s:%(port)s "
                    "(ONCEJOB['METRICS_PORT']): %(error)s."
                )
                % {"owner": owner, "address": conf.METRICS_ADDRESS, "port": port, "error": exc}
            ) from exc

    def stop(self, scheduler: JobScheduler, deadline: float, forced: threading.Event) -> bool:
        scheduler.stop_claiming()
        while not forced.is_set():
            if scheduler.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                return True
            if time.monotonic() >= deadline:
                return False
        return scheduler.wait(0)

    def abandon(self, owner: str, scheduler: JobScheduler) -> None:
        """Record the jobs still running as interrupted, then leave without joining them."""
        count = scheduler.interrupt("Interrupted: runjobs stopped before the job finished.")
        scheduler.sign_off(OUTCOMES_FLUSH)
        monitoring.flush(OUTCOMES_FLUSH)
        self.stderr.write(
            gettext("runjobs %(owner)s: stopped with %(count)s job(s) still running.")
            % {"owner": owner, "count": count}
        )
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        # Worker threads cannot be killed, and interpreter exit would join them.
        os._exit(1)

    def configure_logging(self, verbosity: int) -> None:
        if logger.hasHandlers():
            return
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(
            {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}.get(verbosity, logging.DEBUG)
        )


def _none() -> str:
    # Translators: stands for an empty list of job ids.
    return gettext("none")
