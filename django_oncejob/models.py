from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ClaimQuerySet(models.QuerySet["Claim"]):
    """The history's rows, and the changes of hands of a running one.

    Each change is one conditional ``UPDATE`` of a row still running under the owner it
    was read with: when several instances settle the same row at once, exactly one does.
    """

    def orphaned(self, timeout: int) -> ClaimQuerySet:
        """Rows running for over ``timeout`` seconds whose owner's heartbeat no longer holds.

        A task worker beats while it runs a row (``WorkerHeartbeat``), so its rows are not.
        """
        live = Instance.objects.alive(timeout).values("owner")
        started = Now() - timedelta(seconds=timeout)
        return self.filter(status=Claim.Status.RUNNING, started_at__lt=started).exclude(
            owner__in=live
        )

    def take_over(self, row: Claim, owner: str) -> bool:
        """Make ``row`` ``owner``'s to run again; ``False`` if it ended or changed hands."""
        held = self._held(row)
        return bool(held.update(owner=owner, started_at=Now(), attempts=F("attempts") + 1))

    def abandon(self, row: Claim, reason: str) -> bool:
        """Record ``row`` as abandoned for ``reason``; ``False`` if it ended or changed hands."""
        return bool(
            self._held(row).update(
                status=Claim.Status.ABANDONED, finished_at=Now(), error=f"Abandoned: {reason}."
            )
        )

    def _held(self, row: Claim) -> ClaimQuerySet:
        return self.filter(pk=row.pk, status=Claim.Status.RUNNING, owner=row.owner)


class Claim(models.Model):
    """One occurrence that an instance won and ran: the history, and the second fence."""

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
        help_text=_("How many times it was started: more than one after an abandoned run."),
    )
    error = models.TextField(
        _("error"), blank=True, help_text=_("The exception, or why it did not finish.")
    )
    traceback = models.TextField(_("traceback"), blank=True)
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

    objects = ClaimQuerySet.as_manager()

    class Meta:
        verbose_name = _("claim")
        verbose_name_plural = _("claims")
        ordering = ["-scheduled_for", "job"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "scheduled_for"], name="oncejob_claim_one_per_occurrence"
            )
        ]
        indexes = [
            models.Index(fields=["-scheduled_for"], name="oncejob_claim_scheduled_idx"),
            models.Index(fields=["status", "-scheduled_for"], name="oncejob_claim_status_idx"),
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


class JobState(models.Model):
    """What the admin changes about a job from settings: paused or not. Never its definition."""

    job = models.CharField(_("job"), max_length=100, unique=True)
    paused = models.BooleanField(_("paused"), default=False)
    changed_at = models.DateTimeField(_("changed at"), null=True, blank=True)
    changed_by = models.CharField(_("changed by"), max_length=150, blank=True)
    checked_until = models.DateTimeField(
        _("checked for misses until"),
        null=True,
        blank=True,
        help_text=_("Occurrences up to this time have been checked for misses."),
    )

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        ordering = ["job"]
        permissions = [
            ("run_job", _("Can run a job now")),
            ("pause_job", _("Can pause and resume a job")),
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
        indexes = [
            models.Index(
                fields=["requested_at"],
                condition=models.Q(taken_at__isnull=True),
                name="oncejob_runrequest_open_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.job} ({self.requested_by})"
