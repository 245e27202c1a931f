"""The jobs in the admin: the overview, each job's page, run now, pause and resume.

Settings stay the registry of jobs: nothing here edits a job's definition. The
pages only ask for runs (a :class:`~django_oncejob.models.RunRequest` that a live
instance takes) and pause or resume jobs
(:class:`~django_oncejob.models.JobState`); they never run a job themselves. Each
of these actions is logged as a ``LogEntry`` of the job, whose id is its object id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pprint import pformat
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import PAGE_VAR, SEARCH_VAR
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import IntegrityError, router, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from django_oncejob.admin import overrides
from django_oncejob.admin.base import ReadOnlyAdmin, seconds, status_badge
from django_oncejob.conf import conf
from django_oncejob.fleet import schedules
from django_oncejob.jobs import registry, triggers
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.jobs.versions import OVERRIDE, RESET
from django_oncejob.models import (
    Backfill,
    Counts,
    Instance,
    JobState,
    Run,
    RunRequest,
    ScheduleVersion,
)
from django_oncejob.running import backfill

#: How far back the jobs overview counts successes, failures and misses.
RECENT = timedelta(hours=24)
#: Fire times shown per job in the overview, and on its page.
NEXT_TIMES = 3
PAGE_NEXT_TIMES = 10
#: Runs shown on a job's page.
PAGE_RUNS = 20
#: Backfills shown on a job's page.
PAGE_BACKFILLS = 5
#: Versions of its schedule shown on a job's page.
PAGE_VERSIONS = 10
#: Characters kept of the note given with a pause.
NOTE_LENGTH = 1000


def _local_time(text: str) -> datetime | None:
    """A time typed in the admin (``2026-12-24T18:00``, as datetime-local sends it), read
    in the current time zone; ``None`` if it is not one."""
    value = parse_datetime(text.strip()) if text else None
    if value is None:
        return None
    return timezone.make_aware(value) if timezone.is_naive(value) else value


@dataclass
class JobRow:
    """One job of the overview: its spec from settings and what the database says of it."""

    spec: JobSpec
    state: JobState | None
    next_times: list[datetime]
    last: Run | None
    counts: Counts
    history_url: str
    last_url: str = ""
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def paused(self) -> bool:
        return self.state is not None and self.state.paused

    @property
    def last_badge(self) -> SafeString:
        return status_badge(self.last.status) if self.last is not None else SafeString("")

    @property
    def last_when(self) -> datetime | None:
        if self.last is None:
            return None
        return self.last.started_at or self.last.scheduled_for

    @property
    def last_duration(self) -> str:
        return seconds(self.last.duration) if self.last is not None else "–"


def _matches(job: JobSpec, query: str) -> bool:
    """Whether the search ``query`` is in the job's id or description, in any case."""
    query = query.casefold()
    return not query or query in job.id.casefold() or query in job.description.casefold()


def definition(job: JobSpec) -> list[tuple[str, str]]:
    """A job's settings, labelled, as its page lists them."""
    if job.enqueue == "tasks":
        handoff = gettext("django.tasks, backend %(backend)s, queue %(queue)s") % {
            "backend": repr(job.backend),
            "queue": repr(job.queue) if job.queue else gettext("its default"),
        }
    elif job.enqueue == "celery":
        handoff = gettext("Celery, queue %(queue)s") % {
            "queue": repr(job.queue) if job.queue else gettext("its default")
        }
    else:
        handoff = gettext("none: it runs in runjobs")
    yes, no = gettext("yes"), gettext("no")
    grace = gettext("%(seconds)s s") % {"seconds": job.misfire_grace_time}
    rows = [
        (gettext("Function"), job.func or "–"),
        (gettext("Celery task"), job.task),
        (gettext("Arguments"), pformat(list(job.args)) if job.args else "–"),
        (gettext("Keyword arguments"), pformat(dict(job.kwargs)) if job.kwargs else "–"),
        (gettext("Schedule"), job.trigger_text),
        (gettext("Time zone"), job.timezone),
        (gettext("Misfire grace time"), grace),
        *policies(job),
        (gettext("Run again if abandoned"), yes if job.rerun_abandoned else no),
        (gettext("Hand-off"), handoff),
        (gettext("Enabled in settings"), yes if job.enabled else no),
    ]
    return [(label, value) for label, value in rows if value]


def policies(job: JobSpec) -> list[tuple[str, str]]:
    """A job's schedule policies in words, as its page lists them."""
    if job.retries:
        retries = gettext(
            "%(retries)s, the first %(delay)s s after a failure, each next one %(backoff)s× "
            "later; none after the next occurrence is due"
        ) % {"retries": job.retries, "delay": job.retry_delay, "backoff": job.retry_backoff}
    else:
        retries = gettext("none")
    overlap = {
        "allow": gettext("allowed: runs may overlap"),
        "skip": gettext("skip: an occurrence due while a run goes on is skipped"),
        "buffer_one": gettext(
            "buffer one: an occurrence due while a run goes on waits for it, one at most"
        ),
    }[job.overlap]
    if job.lock_lifetime is not None:
        overlap += " " + gettext("(lock held %(seconds)s s at most)") % {
            "seconds": job.lock_lifetime
        }
    catchup = {
        "none": gettext("none: occurrences due while no instance ran are recorded as missed"),
        "latest": gettext("the latest occurrence due while no instance ran, within %(window)s s"),
        "all": gettext("every occurrence due while no instance ran, within %(window)s s"),
    }[job.catchup] % {"window": job.catchup_window}
    return [
        (gettext("Retries"), retries),
        (
            gettext("Time limit"),
            gettext("%(seconds)s s, then timed out") % {"seconds": job.max_runtime}
            if job.max_runtime
            else gettext("none"),
        ),
        (gettext("Overlap"), overlap),
        (gettext("Catch-up"), catchup),
        (
            gettext("Jitter"),
            gettext("up to %(seconds)s s after the scheduled time, alike on every instance")
            % {"seconds": job.jitter}
            if job.jitter
            else gettext("none"),
        ),
        (
            gettext("Pause after failures"),
            gettext("%(count)s in a row") % {"count": job.pause_after_failures}
            if job.pause_after_failures
            else gettext("never"),
        ),
    ]


@admin.register(JobState)
class JobStateAdmin(ReadOnlyAdmin[JobState]):
    """The jobs from settings, titled "Jobs": state, next times, last run, run now, pause."""

    change_list_template = "admin/django_oncejob/jobstate/change_list.html"
    job_template = "admin/django_oncejob/jobstate/job.html"
    schedule_template = "admin/django_oncejob/jobstate/schedule.html"
    object_history_template = "admin/django_oncejob/jobstate/object_history.html"

    def has_view_permission(self, request: HttpRequest, obj: JobState | None = None) -> bool:
        user = request.user
        return (
            super().has_view_permission(request, obj)
            or user.has_perm("django_oncejob.run_job")
            or user.has_perm("django_oncejob.pause_job")
        )

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        views = [
            ("run", self.run_view),
            ("pause", self.pause_view),
            ("resume", self.resume_view),
            ("backfill", self.backfill_view),
        ]
        return [
            path(
                f"<str:job_id>/{name}/",
                self.admin_site.admin_view(require_POST(view)),
                name=f"{info[0]}_{info[1]}_{name}",
            )
            for name, view in views
        ] + [
            path(
                "<str:job_id>/schedule/",
                self.admin_site.admin_view(self.schedule_view),
                name=f"{info[0]}_{info[1]}_schedule",
            ),
            path(
                "<str:job_id>/reset/",
                self.admin_site.admin_view(require_POST(self.reset_view)),
                name=f"{info[0]}_{info[1]}_reset",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        jobs, errors = registry.parsed_jobs()
        query = request.GET.get(SEARCH_VAR, "").strip()
        found = [job for job in jobs.values() if _matches(job, query)]
        # A page's worth of rows, as every changelist: each row costs its next fire
        # times, its links and its cells, which thousands of jobs would make seconds.
        page = Paginator(found, self.list_per_page).get_page(request.GET.get(PAGE_VAR))
        ids = [job.id for job in page]
        now = timezone.now()
        states = {state.job: state for state in JobState.objects.filter(job__in=ids)}
        last = Run.objects.latest_per_job(ids)
        counts = Run.objects.counts_per_job(ids, now - RECENT)
        # Each job as the schedule in force defines it, overrides and switches included.
        book = overrides.in_force({job.id: job for job in page})
        rows = [
            self._row(book[job.id], states.get(job.id), last.get(job.id), counts, now, NEXT_TIMES)
            for job in page
        ]
        context = {
            **self._context(request),
            "title": _("Jobs"),
            "rows": rows,
            "page": page,
            "page_range": page.paginator.get_elided_page_range(page.number),
            "search_var": SEARCH_VAR,
            "page_var": PAGE_VAR,
            "query": query,
            "total": len(jobs),
            "invalid": len(errors),
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.change_list_template, context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The page of one job: its definition, next runs, state, recent runs and actions."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = self._job(request, unquote(object_id), enabled=False)
        if job is None:
            return self._back(request, "")
        now = timezone.now()
        # The job as the schedule in force defines it, overrides and switches included.
        book = overrides.in_force({job.id: job})
        schedule = book.schedule(job.id)
        job = book[job.id]
        row = self._row(
            job,
            JobState.objects.filter(job=job.id).first(),
            Run.objects.latest_per_job([job.id]).get(job.id),
            Run.objects.counts_per_job([job.id], now - RECENT),
            now,
            PAGE_NEXT_TIMES,
        )
        runs = list(Run.objects.filter(job=job.id).defer("traceback")[:PAGE_RUNS])
        backfills = list(Backfill.objects.filter(job=job.id)[:PAGE_BACKFILLS])
        for run in runs:
            run.url = self._url("django_oncejob_run_change", run.pk)  # type: ignore[attr-defined]
        context = {
            **self._context(request),
            "title": job.id,
            "subtitle": job.description or None,
            "row": row,
            "definition": definition(job),
            "runs": runs,
            "backfills": backfills,
            "schedule": schedule,
            "pending": schedule.pending(now),
            "versions": [
                (version, overrides.describe(version.definition) if version.definition else "–")
                for version in ScheduleVersion.objects.filter(job=job.id).order_by("-pk")[
                    :PAGE_VERSIONS
                ]
            ],
            "can_change_schedule": job.overridable
            and request.user.has_perm("django_oncejob.change_schedule"),
            "jobs_url": self._url("django_oncejob_jobstate_changelist"),
            "actions_url": self._url("django_oncejob_jobstate_history", job.id),
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.job_template, context)

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> JobState | None:
        """The state of the job ``object_id`` from settings (unsaved if it has none yet).

        A job's id is its object id, in its URLs and in its ``LogEntry`` rows.
        """
        jobs, _errors = registry.parsed_jobs()
        if object_id not in jobs:
            return None
        return JobState.objects.filter(job=object_id).first() or JobState(job=object_id)

    def _row(
        self,
        job: JobSpec,
        state: JobState | None,
        last: Run | None,
        counts: dict[str, Counts],
        now: datetime,
        next_times: int,
    ) -> JobRow:
        runs_url = self._url("django_oncejob_run_changelist")
        row = JobRow(
            spec=job,
            state=state,
            next_times=(
                list(triggers.fire_times(job.trigger, now, next_times)) if job.enabled else []
            ),
            last=last,
            counts=counts.get(job.id, Counts()),
            history_url=f"{runs_url}?{urlencode({'job': job.id})}",
        )
        if last is not None:
            row.last_url = self._url("django_oncejob_run_change", last.pk)
        row.urls = {
            "page": self._url("django_oncejob_jobstate_change", job.id),
            "failed": f"{row.history_url}&status__in=failed,abandoned",
            "missed": f"{row.history_url}&status__exact=missed",
            "succeeded": f"{row.history_url}&status__exact=succeeded",
            **{
                name: self._url(f"django_oncejob_jobstate_{name}", job.id)
                for name in ("run", "pause", "resume", "backfill", "schedule", "reset")
            },
        }
        return row

    def _context(self, request: HttpRequest) -> dict[str, Any]:
        """What the overview and a job's page both show."""
        request.current_app = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "alive": Instance.objects.alive(conf.HEARTBEAT_TIMEOUT).count(),
            "heartbeat_timeout": conf.HEARTBEAT_TIMEOUT,
            "history_url": self._url("django_oncejob_run_changelist"),
            "instances_url": self._url("django_oncejob_instance_changelist"),
            "can_run": request.user.has_perm("django_oncejob.run_job"),
            "can_pause": request.user.has_perm("django_oncejob.pause_job"),
        }

    def run_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        if not request.user.has_perm("django_oncejob.run_job"):
            raise PermissionDenied
        job = self._job(request, job_id, enabled=True)
        if job is None:
            return self._back(request, job_id)
        now = timezone.now()
        if not Instance.objects.alive(conf.HEARTBEAT_TIMEOUT).exists():
            self.message_user(
                request,
                gettext(
                    "No runjobs instance is alive (none sent a heartbeat in the last %(timeout)s "
                    "seconds), so nothing would take the request: job “%(job)s” was not asked "
                    "to run. Start manage.py runjobs and try again."
                )
                % {"timeout": conf.HEARTBEAT_TIMEOUT, "job": job.id},
                messages.ERROR,
            )
            return self._back(request, job.id)
        try:
            # A savepoint: a refused insert must not break a project's ATOMIC_REQUESTS.
            with transaction.atomic(using=router.db_for_write(RunRequest)):
                RunRequest.objects.create(
                    job=job.id, requested_by=request.user.get_username(), requested_at=now
                )
        except IntegrityError:
            # Taken by an instance since, the waiting request was most likely this user's.
            waiting = RunRequest.objects.filter(job=job.id, taken_at__isnull=True).first() or (
                RunRequest(requested_by=request.user.get_username(), requested_at=now)
            )
            self.message_user(
                request,
                gettext(
                    "Job “%(job)s” is already waiting to run, as %(user)s asked at %(when)s; "
                    "no second run was asked for."
                )
                % {
                    "job": job.id,
                    "user": waiting.requested_by,
                    "when": formats.localize(timezone.localtime(waiting.requested_at)),
                },
                messages.WARNING,
            )
            return self._back(request, job.id)
        self._log(request, job.id, gettext("Asked for a run now."))
        self.message_user(
            request,
            gettext(
                "Job “%(job)s” will run once, on one live instance, within about %(interval)s "
                "seconds. It appears in the history as a manual run."
            )
            % {"job": job.id, "interval": conf.CONTROL_INTERVAL},
            messages.SUCCESS,
        )
        return self._back(request, job.id)

    def pause_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        return self._set_paused(request, job_id, paused=True)

    def resume_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        return self._set_paused(request, job_id, paused=False)

    def _set_paused(self, request: HttpRequest, job_id: str, *, paused: bool) -> HttpResponse:
        if not request.user.has_perm("django_oncejob.pause_job"):
            raise PermissionDenied
        job = self._job(request, job_id, enabled=False)
        if job is None:
            return self._back(request, "")
        note = request.POST.get("note", "").strip()[:NOTE_LENGTH] if paused else ""
        until = None
        if paused and request.POST.get("until"):
            until = _local_time(request.POST["until"])
            if until is None or until <= timezone.now():
                self.message_user(
                    request,
                    gettext(
                        "“Until” must be a time to come, such as 2026-12-24 18:00; job "
                        "“%(job)s” was not paused."
                    )
                    % {"job": job.id},
                    messages.ERROR,
                )
                return self._back(request, job.id)
        JobState.objects.update_or_create(
            job=job.id,
            defaults={
                "paused": paused,
                "paused_until": until,
                "note": note,
                "changed_at": timezone.now(),
                "changed_by": request.user.get_username(),
            },
        )
        if paused:
            text = gettext(
                "Job “%(job)s” is paused: within about %(interval)s seconds every instance "
                "stops running it, and records its occurrences as skipped until it is resumed."
            )
            if until is not None:
                text += " " + gettext("It resumes by itself at %(until)s.") % {
                    "until": formats.localize(timezone.localtime(until))
                }
            log = gettext("Paused.")
            if note:
                log = gettext("Paused: %(note)s") % {"note": note}
        else:
            text = gettext(
                "Job “%(job)s” is resumed: its next occurrences run as scheduled, from within "
                "about %(interval)s seconds."
            )
            log = gettext("Resumed.")
        self._log(request, job.id, log)
        self.message_user(
            request, text % {"job": job.id, "interval": conf.CONTROL_INTERVAL}, messages.SUCCESS
        )
        return self._back(request, job.id)

    def backfill_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        """Ask a live instance to run the job's occurrences in a past range."""
        if not request.user.has_perm("django_oncejob.run_job"):
            raise PermissionDenied
        job = self._job(request, job_id, enabled=True)
        if job is None:
            return self._back(request, job_id)
        start = _local_time(request.POST.get("start", ""))
        end = _local_time(request.POST.get("end", ""))
        error = None
        if start is None or end is None:
            error = gettext("Give both the first and the last time, such as 2026-12-01 00:00.")
        elif end < start:
            error = gettext("The last time must not be before the first.")
        elif end > timezone.now():
            error = gettext(
                "The last time must be in the past: the schedule runs what is still to come."
            )
        elif not (times := backfill.scheduled_between(job, start, end)):
            error = gettext("The job has no occurrence in that range.")
        elif len(times) >= backfill.MOST:
            error = gettext(
                "That range holds %(most)s occurrences or more: take a shorter one."
            ) % {"most": backfill.MOST}
        if error is not None:
            self.message_user(
                request,
                gettext("Job “%(job)s” was not backfilled: %(error)s")
                % {"job": job.id, "error": error},
                messages.ERROR,
            )
            return self._back(request, job.id)
        assert start is not None and end is not None
        Backfill.objects.create(
            job=job.id, start=start, end=end, requested_by=request.user.get_username()
        )
        local = {
            "start": formats.localize(timezone.localtime(start)),
            "end": formats.localize(timezone.localtime(end)),
        }
        self._log(request, job.id, gettext("Backfill from %(start)s to %(end)s.") % local)
        self.message_user(
            request,
            gettext(
                "Job “%(job)s” will be backfilled from %(start)s to %(end)s by one live "
                "instance: %(count)s occurrence(s), each run unless the history holds it already."
            )
            % {"job": job.id, "count": len(times), **local},
            messages.SUCCESS,
        )
        return self._back(request, job.id)

    def schedule_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        """The form that overrides a job's schedule, arguments and policies."""
        job = self._overridable(request, job_id)
        if job is None:
            return self._back(request, job_id)
        book = overrides.in_force({job.id: job})
        current = book[job.id]
        base = book.deployed_definition(job.id)
        form = overrides.OverrideForm(
            current,
            base,
            request.POST if request.method == "POST" else None,
            initial=overrides.initial(current),
        )
        if request.method == "POST" and form.is_valid():
            override = form.cleaned_data["override"]
            version = schedules.change(
                job.id,
                OVERRIDE,
                override,
                request.user.get_username(),
                form.cleaned_data.get("note", ""),
            )
            self._log(
                request,
                job.id,
                gettext("Schedule overridden, from %(at)s: %(before)s → %(after)s")
                % {
                    "at": version.effective_from.isoformat() if version.effective_from else "",
                    "before": overrides.describe(current.definition),
                    "after": overrides.describe(override),
                },
            )
            self._switch_message(request, job.id, version)
            return HttpResponseRedirect(self._url("django_oncejob_jobstate_change", job.id))
        context = {
            **self._context(request),
            "title": gettext("Change the schedule of %(job)s") % {"job": job.id},
            "job": current,
            "form": form,
            "job_url": self._url("django_oncejob_jobstate_change", job.id),
            "jobs_url": self._url("django_oncejob_jobstate_changelist"),
        }
        return TemplateResponse(request, self.schedule_template, context)

    def reset_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        """Go back to the deployed schedule of a job, at the next switch."""
        job = self._overridable(request, job_id)
        if job is None:
            return self._back(request, job_id)
        version = schedules.change(job.id, RESET, {}, request.user.get_username())
        self._log(request, job.id, gettext("Schedule reset to the deployed one."))
        self._switch_message(request, job.id, version)
        return HttpResponseRedirect(self._url("django_oncejob_jobstate_change", job.id))

    def _switch_message(self, request: HttpRequest, job_id: str, version: ScheduleVersion) -> None:
        assert version.effective_from is not None
        self.message_user(
            request,
            gettext(
                "Job “%(job)s” switches to its new schedule at %(at)s, on every instance at "
                "once: its occurrences before then follow the old one."
            )
            % {"job": job_id, "at": formats.localize(timezone.localtime(version.effective_from))},
            messages.SUCCESS,
        )

    def _overridable(self, request: HttpRequest, job_id: str) -> JobSpec | None:
        if not request.user.has_perm("django_oncejob.change_schedule"):
            raise PermissionDenied
        job = self._job(request, job_id, enabled=False)
        if job is not None and not job.overridable:
            self.message_user(
                request,
                gettext(
                    "Job “%(job)s” does not allow its schedule to be changed here: its "
                    "definition sets no 'overridable': True."
                )
                % {"job": job_id},
                messages.ERROR,
            )
            return None
        return job

    def _job(self, request: HttpRequest, job_id: str, *, enabled: bool) -> JobSpec | None:
        """The job ``job_id`` from settings, or ``None`` with an error message."""
        jobs, _errors = registry.parsed_jobs()
        job = jobs.get(job_id)
        if job is None:
            self.message_user(
                request,
                gettext("There is no valid job “%(job)s” in ONCEJOB['JOBS']; nothing was done.")
                % {"job": job_id},
                messages.ERROR,
            )
            return None
        if enabled and not job.enabled:
            self.message_user(
                request,
                gettext("Job “%(job)s” is disabled in settings, so no instance runs it.")
                % {"job": job_id},
                messages.ERROR,
            )
            return None
        return job

    def _log(self, request: HttpRequest, job_id: str, message: str) -> None:
        """Record what ``request``'s user did to a job, for its history and Recent actions."""
        LogEntry.objects.create(
            user_id=request.user.pk,  # type: ignore[misc]  # the admin's user is signed in
            content_type=ContentType.objects.get_for_model(JobState),
            object_id=job_id,
            object_repr=job_id[:200],
            action_flag=CHANGE,
            change_message=message,
        )

    def _back(self, request: HttpRequest, job_id: str) -> HttpResponseRedirect:
        """To the job's page if the action was taken there, else to the overview."""
        if job_id and request.POST.get("back") == "job":
            return HttpResponseRedirect(self._url("django_oncejob_jobstate_change", job_id))
        return HttpResponseRedirect(self._url("django_oncejob_jobstate_changelist"))

    def _url(self, name: str, *args: object) -> str:
        site = self.admin_site.name
        return reverse(f"{site}:{name}", args=args, current_app=site)
