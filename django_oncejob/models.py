from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connections, models
from django.db.models import Count, F, Q, Window
from django.db.models.functions import Now, RowNumber
from django.db.models.query import RawQuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

#: Jobs per query of :meth:`RunQuerySet.latest_per_job` on a database other than
#: PostgreSQL: SQLite allows 500 terms in a compound SELECT.
LATEST_PER_QUERY = 200


class RunQuerySet(models.QuerySet["Run"]):
    """The history's rows, and the changes of hands of a running one.

    Each change is one conditional ``UPDATE`` of a row still running under the owner it
    was read with: when several instances settle the same row at once, exactly one does.
    """

    def orphaned(self, timeout: int) -> RunQuerySet:
        """Rows running for over ``timeout`` seconds whose owner's heartbeat no longer holds.

        A task worker beats while it runs a row (``WorkerHeartbeat``), so its rows are not.
        """
        live = Instance.objects.alive(timeout).values("owner")
        started = Now() - timedelta(seconds=timeout)
        return self.filter(status=Run.Status.RUNNING, started_at__lt=started).exclude(
            owner__in=live
        )

    def take_over(self, row: Run, owner: str, max_runtime: int | None = None) -> bool:
        """Make ``row`` ``owner``'s to run again; ``False`` if it ended or changed hands."""
        deadline = None if max_runtime is None else Now() + timedelta(seconds=max_runtime)
        return bool(
            self._held(row).update(
                owner=owner, started_at=Now(), attempts=F("attempts") + 1, deadline=deadline
            )
        )

    def abandon(self, row: Run, reason: str) -> bool:
        """Record ``row`` as abandoned for ``reason``; ``False`` if it ended or changed hands."""
        return bool(
            self._held(row).update(
                status=Run.Status.ABANDONED, finished_at=Now(), error=f"Abandoned: {reason}."
            )
        )

    def _held(self, row: Run) -> RunQuerySet:
        return self.filter(pk=row.pk, status=Run.Status.RUNNING, owner=row.owner)

    def latest_per_job(
        self, job_ids: Collection[str], statuses: Collection[str] | None = None
    ) -> dict[str, Run]:
        """Each job's latest row among ``statuses`` (by default, the started ones)."""
        ids = sorted(set(job_ids))
        wanted = [str(status) for status in (Run.STARTED if statuses is None else statuses)]
        if not ids:
            return {}
        connection = connections[self.db]
        if connection.vendor == "postgresql":
            return {row.job: row for row in self._latest_by_lateral_join(ids, wanted)}
        found: dict[str, Run] = {}
        for start in range(0, len(ids), LATEST_PER_QUERY):
            chunk = ids[start : start + LATEST_PER_QUERY]
            found.update((row.job, row) for row in self._latest_by_union(chunk, wanted))
        return found

    def _latest_by_lateral_join(self, ids: list[str], wanted: list[str]) -> RawQuerySet[Run]:
        # One query for any number of jobs, each walking the (job, scheduled_for) index
        # from its end: a UNION of one "LIMIT 1" per job overflows PostgreSQL's stack
        # depth at a few thousand jobs.
        quote = connections[self.db].ops.quote_name
        columns = ", ".join(
            quote(str(field.column))
            for field in Run._meta.concrete_fields
            if field.name != "traceback"
        )
        sql = (
            f"SELECT latest.* FROM unnest(%s::text[]) AS wanted(job) CROSS JOIN LATERAL ("
            f"SELECT {columns} FROM {quote(Run._meta.db_table)} "
            f"WHERE {quote('job')} = wanted.job AND {quote('status')} = ANY(%s::text[]) "
            f"ORDER BY {quote('scheduled_for')} DESC LIMIT 1) AS latest"
        )
        return self.raw(sql, [ids, wanted])

    def _latest_by_union(self, ids: list[str], wanted: list[str]) -> models.QuerySet[Run]:
        if connections[self.db].features.supports_slicing_ordering_in_compound:
            parts = [
                self.filter(job=job, status__in=wanted)
                .defer("traceback")
                .order_by("-scheduled_for")[:1]
                for job in ids
            ]
            return parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
        rank = Window(RowNumber(), partition_by=[F("job")], order_by=F("scheduled_for").desc())
        return (
            self.filter(job__in=ids, status__in=wanted)
            .defer("traceback")
            .annotate(rank=rank)
            .filter(rank=1)
        )

    def counts_per_job(self, job_ids: Collection[str], since: datetime) -> dict[str, Counts]:
        """Successes, failures and misses of each job scheduled since ``since``, in one query."""
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        rows = (
            self.filter(job__in=ids, scheduled_for__gte=since)
            .order_by()
            .values("job")
            .annotate(
                succeeded=Count("pk", filter=Q(status=Run.Status.SUCCEEDED)),
                failed=Count("pk", filter=Q(status__in=Run.FAILURES)),
                missed=Count("pk", filter=Q(status=Run.Status.MISSED)),
            )
        )
        return {row["job"]: Counts(row["succeeded"], row["failed"], row["missed"]) for row in rows}


@dataclass(frozen=True)
class Counts:
    """How many occurrences of one job succeeded, failed and were missed in a period."""

    succeeded: int = 0
    failed: int = 0
    missed: int = 0


class Run(models.Model):
    """What became of one occurrence: the history, and the second fence.

    The unique (job, scheduled_for) row is inserted by the one instance that won the
    occurrence's claim, before the job is called; it then records how the run ended.
    Occurrences that nobody ran (missed) or that were not run (paused, skipped) have
    a row too.
    """

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")
        #: The instance running it stopped sending heartbeats: it may or may not have finished.
        ABANDONED = "abandoned", _("abandoned")
        #: Won here but not run: the job's lock showed a previous run still going.
        SKIPPED = "skipped", _("skipped")
        #: Due while the job was paused: recorded once, not run.
        PAUSED = "paused", _("skipped: paused")
        #: No instance ran it before its misfire grace time ran out.
        MISSED = "missed", _("missed")
        #: Handed to a task queue; a worker sets it running when it takes the task.
        ENQUEUED = "enqueued", _("enqueued")
        #: An attempt failed; the next is due at ``next_attempt_at``, on any instance.
        RETRYING = "retrying", _("failed, retrying")
        #: It ran past the job's ``max_runtime``.
        TIMED_OUT = "timed_out", _("timed out")
        #: Due while a previous run of the job went on: it starts when that run ends.
        WAITING = "waiting", _("waiting")

    #: An occurrence that was started, or handed to a task queue.
    STARTED = (
        Status.ENQUEUED,
        Status.RUNNING,
        Status.RETRYING,
        Status.SUCCEEDED,
        Status.FAILED,
        Status.ABANDONED,
        Status.TIMED_OUT,
    )
    #: A run that has ended.
    ENDED = (Status.SUCCEEDED, Status.FAILED, Status.ABANDONED, Status.TIMED_OUT)
    #: The failures: the job raised or was interrupted, ran too long, or its instance died.
    FAILURES = (Status.FAILED, Status.ABANDONED, Status.TIMED_OUT)

    job = models.CharField(_("job"), max_length=100, help_text=_("The job id from settings."))
    scheduled_for = models.DateTimeField(
        _("scheduled for"), help_text=_("The occurrence's scheduled fire time.")
    )
    owner = models.CharField(
        _("owner"),
        max_length=255,
        help_text=_("The runjobs instance that ran it, or the task worker it was handed to."),
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.RUNNING
    )
    claimed_at = models.DateTimeField(
        _("claimed at"), help_text=_("When the instance won the claim in the cache.")
    )
    started_at = models.DateTimeField(
        _("started at"), null=True, blank=True, help_text=_("When the job was called.")
    )
    finished_at = models.DateTimeField(
        _("finished at"), null=True, blank=True, help_text=_("When the job returned or raised.")
    )
    manual = models.BooleanField(
        _("manual"), default=False, help_text=_("Run on request rather than by its schedule.")
    )
    requested_by = models.CharField(
        _("requested by"), max_length=150, blank=True, help_text=_("Who asked for a manual run.")
    )
    attempts = models.PositiveSmallIntegerField(
        _("attempts"),
        default=1,
        help_text=_(
            "How many times it was started: more than one after a retry or an abandoned run."
        ),
    )
    deadline = models.DateTimeField(
        _("deadline"),
        null=True,
        blank=True,
        help_text=_("When the current attempt times out: its start plus the job's max_runtime."),
    )
    next_attempt_at = models.DateTimeField(
        _("next attempt at"),
        null=True,
        blank=True,
        help_text=_("When the next attempt of a failed occurrence is due."),
    )
    error = models.TextField(
        _("error"), blank=True, help_text=_("The exception, or why it did not finish.")
    )
    traceback = models.TextField(_("traceback"), blank=True)
    result = models.TextField(
        _("result"),
        blank=True,
        help_text=_("What the job returned, as repr() shows it; empty when it returned None."),
    )
    task_backend = models.CharField(
        _("task backend"),
        max_length=120,
        blank=True,
        help_text=_(
            "Where it was handed off: 'tasks:<backend alias>' or 'celery'; "
            "empty when it ran in runjobs."
        ),
    )
    task_id = models.CharField(
        _("task id"),
        max_length=255,
        blank=True,
        help_text=_("The id the task queue gave the hand-off."),
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        verbose_name = _("run")
        verbose_name_plural = _("runs")
        ordering = ["-scheduled_for", "job"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "scheduled_for"], name="oncejob_run_one_per_occurrence"
            ),
            # overlap "buffer_one": at most one occurrence of a job waits for the run before it.
            models.UniqueConstraint(
                fields=["job"],
                condition=models.Q(status="waiting"),
                name="oncejob_run_one_waiting",
            ),
        ]
        indexes = [
            models.Index(fields=["-scheduled_for"], name="oncejob_run_scheduled_idx"),
            models.Index(fields=["status", "-scheduled_for"], name="oncejob_run_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.job} @ {self.scheduled_for.isoformat()}"

    @property
    def duration(self) -> timedelta | None:
        """How long the job ran, once it has finished."""
        if self.finished_at is None or self.started_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def lateness(self) -> timedelta | None:
        """How long after its scheduled time the job started."""
        if self.started_at is None:
            return None
        return self.started_at - self.scheduled_for


class Attempt(models.Model):
    """An attempt of an occurrence that failed and was tried again: the run keeps the last."""

    run = models.ForeignKey(
        Run, on_delete=models.CASCADE, related_name="failed_attempts", verbose_name=_("run")
    )
    number = models.PositiveSmallIntegerField(_("attempt"))
    owner = models.CharField(_("owner"), max_length=255)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"))
    error = models.TextField(_("error"), blank=True)
    traceback = models.TextField(_("traceback"), blank=True)

    class Meta:
        verbose_name = _("failed attempt")
        verbose_name_plural = _("failed attempts")
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="oncejob_attempt_one_per_number")
        ]

    def __str__(self) -> str:
        return f"{self.run} #{self.number}"


class InstanceQuerySet(models.QuerySet["Instance"]):
    """Instances by whether their heartbeat holds now, by the database's clock.

    ``timeout`` stands in for an instance's own HEARTBEAT_TIMEOUT where it recorded none.
    """

    def alive(self, timeout: int) -> InstanceQuerySet:
        return self.filter(_alive(timeout))

    def gone(self, timeout: int) -> InstanceQuerySet:
        return self.exclude(_alive(timeout))


def _alive(timeout: int) -> Q:
    return Q(stopped_at__isnull=True) & (
        Q(expires_at__gte=Now())
        | Q(expires_at__isnull=True, heartbeat_at__gte=Now() - timedelta(seconds=timeout))
    )


class Instance(models.Model):
    """A ``runjobs`` process, kept alive by its heartbeat."""

    owner = models.CharField(_("owner"), max_length=255, unique=True)
    host = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("process id"))
    version = models.CharField(_("version"), max_length=50, help_text=_("django-oncejob's."))
    started_at = models.DateTimeField(_("started at"))
    heartbeat_at = models.DateTimeField(_("last heartbeat"))
    stopped_at = models.DateTimeField(
        _("stopped at"),
        null=True,
        blank=True,
        help_text=_("When it stopped, or was found silent by another instance."),
    )
    expires_at = models.DateTimeField(
        _("alive until"),
        null=True,
        blank=True,
        help_text=_(
            "When it counts as gone unless it beats again: its last heartbeat plus its own "
            "HEARTBEAT_TIMEOUT, on the database's clock."
        ),
    )
    clean_stop = models.BooleanField(
        _("stopped cleanly"),
        default=False,
        help_text=_(
            "It stopped on SIGTERM or SIGINT and signed off, rather than going silent: "
            "killed, or cut off from the database."
        ),
    )
    clock_offset = models.FloatField(
        _("clock offset"),
        default=0.0,
        help_text=_("Seconds its clock was ahead of the database's at its last heartbeat."),
    )

    objects = InstanceQuerySet.as_manager()

    class Meta:
        verbose_name = _("instance")
        verbose_name_plural = _("instances")
        ordering = ["-heartbeat_at"]

    def __str__(self) -> str:
        return self.owner

    def is_alive(self, timeout: int) -> bool:
        """Whether it has not stopped and its last heartbeat still holds.

        ``timeout`` stands in for the instance's own, for one that recorded none.
        """
        if self.stopped_at is not None:
            return False
        expires_at = self.expires_at or self.heartbeat_at + timedelta(seconds=timeout)
        return timezone.now() <= expires_at


class JobStateQuerySet(models.QuerySet["JobState"]):
    def paused_now(self) -> JobStateQuerySet:
        """The jobs paused, and not past the end of their pause, by the database's clock."""
        return self.filter(
            Q(paused=True) & (Q(paused_until__isnull=True) | Q(paused_until__gt=Now()))
        )

    def pause_over(self) -> JobStateQuerySet:
        """The jobs paused until a time that has come."""
        return self.filter(paused=True, paused_until__lte=Now())


class JobState(models.Model):
    """What the admin and the job's failure policy change about a job: paused or not, and its
    failures in a row. Never its definition."""

    job = models.CharField(_("job"), max_length=100, unique=True)
    paused = models.BooleanField(_("paused"), default=False)
    changed_at = models.DateTimeField(_("changed at"), null=True, blank=True)
    changed_by = models.CharField(_("changed by"), max_length=150, blank=True)
    note = models.TextField(
        _("note"), blank=True, help_text=_("Why the job was paused, for whoever resumes it.")
    )
    paused_until = models.DateTimeField(
        _("paused until"),
        null=True,
        blank=True,
        help_text=_("When the pause ends by itself; empty: until someone resumes the job."),
    )
    failures = models.PositiveIntegerField(
        _("failures in a row"),
        default=0,
        help_text=_("How many of its latest occurrences failed since it last succeeded."),
    )
    failing_since = models.DateTimeField(
        _("failing since"),
        null=True,
        blank=True,
        help_text=_("When the first of its latest failures in a row was due."),
    )
    checked_until = models.DateTimeField(
        _("checked for misses until"),
        null=True,
        blank=True,
        help_text=_("Occurrences up to this time have been checked for misses."),
    )

    objects = JobStateQuerySet.as_manager()

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        ordering = ["job"]
        permissions = [
            ("run_job", _("Can run a job now")),
            ("pause_job", _("Can pause and resume a job")),
            ("change_schedule", _("Can change the schedule of a job that allows it")),
        ]

    def __str__(self) -> str:
        return self.job


class RunRequest(models.Model):
    """A request from the admin or the command line to run a job once, now."""

    job = models.CharField(_("job"), max_length=100)
    requested_by = models.CharField(_("requested by"), max_length=150)
    requested_at = models.DateTimeField(_("requested at"))
    taken_by = models.CharField(_("taken by"), max_length=255, blank=True)
    taken_at = models.DateTimeField(_("taken at"), null=True, blank=True)

    class Meta:
        verbose_name = _("run request")
        verbose_name_plural = _("run requests")
        ordering = ["-requested_at"]
        # One waiting request per job: a double click, or two people at once, run it once.
        constraints = [
            models.UniqueConstraint(
                fields=["job"],
                condition=models.Q(taken_at__isnull=True),
                name="oncejob_runrequest_one_waiting",
            )
        ]
        indexes = [
            models.Index(
                fields=["requested_at"],
                condition=models.Q(taken_at__isnull=True),
                name="oncejob_runrequest_open_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.job} ({self.requested_by})"


class Backfill(models.Model):
    """A request to run a job's occurrences in a past range, each through its claim and fence.

    The admin writes it; one live instance takes it and runs the occurrences one after
    another. An occurrence already in the history is not run again, so a backfill that
    is repeated, or that overlaps the schedule, runs each occurrence once.
    """

    job = models.CharField(_("job"), max_length=100)
    start = models.DateTimeField(_("from"), help_text=_("The first scheduled time it covers."))
    end = models.DateTimeField(_("until"), help_text=_("The last scheduled time it covers."))
    requested_by = models.CharField(_("requested by"), max_length=150)
    requested_at = models.DateTimeField(_("requested at"), default=timezone.now)
    taken_by = models.CharField(_("taken by"), max_length=255, blank=True)
    taken_at = models.DateTimeField(_("taken at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    ran = models.PositiveIntegerField(
        _("ran"), default=0, help_text=_("Occurrences it ran; the others were in the history.")
    )
    total = models.PositiveIntegerField(
        _("occurrences"), default=0, help_text=_("Occurrences of the job in its range.")
    )

    class Meta:
        verbose_name = _("backfill")
        verbose_name_plural = _("backfills")
        ordering = ["-requested_at"]
        indexes = [
            models.Index(
                fields=["requested_at"],
                condition=models.Q(finished_at__isnull=True),
                name="oncejob_backfill_open_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.job} {self.start.isoformat()} – {self.end.isoformat()}"


class ScheduleVersion(models.Model):
    """A change of a job's schedule, in force for the whole fleet from ``effective_from`` on.

    A deploy whose settings or code define a job otherwise than the version in force
    records a ``deploy`` version; the admin records ``override`` and ``reset`` versions.
    Every instance reads them, and all switch at the same instant, chosen when the change
    was saved, far enough ahead for each to have read it: the occurrences before it follow
    the old schedule, those from it on the new one.
    """

    class Source(models.TextChoices):
        DEPLOY = "deploy", _("deploy")
        OVERRIDE = "override", _("override in the admin")
        RESET = "reset", _("reset to the deployed schedule")

    job = models.CharField(_("job"), max_length=100)
    source = models.CharField(_("source"), max_length=20, choices=Source.choices)
    definition = models.JSONField(
        _("definition"),
        help_text=_(
            "A deploy's whole definition of the job; an override's keys, which replace the "
            "deployed ones; nothing for a reset."
        ),
    )
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    effective_from = models.DateTimeField(
        _("in force from"),
        null=True,
        blank=True,
        help_text=_("The first scheduled time it applies to; empty: since the job began."),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.CharField(_("created by"), max_length=255)
    note = models.TextField(_("note"), blank=True)

    class Meta:
        verbose_name = _("schedule version")
        verbose_name_plural = _("schedule versions")
        ordering = ["job", "effective_from", "pk"]
        indexes = [models.Index(fields=["job", "effective_from"], name="oncejob_version_job_idx")]

    def __str__(self) -> str:
        return f"{self.job} {self.source} {self.pk}"


class Deployment(models.Model):
    """The deployment whose history this database holds: one row, made by ``migrate``.

    Its ``key`` is in every claim and lock key, so that two deployments sharing one
    cache (staging and production on one Redis) never take each other's occurrences,
    while every instance of one deployment, reading the same row, shares its claims.
    """

    key = models.CharField(_("key"), max_length=32, unique=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("deployment")
        verbose_name_plural = _("deployments")

    def __str__(self) -> str:
        return self.key
