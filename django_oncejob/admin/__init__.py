"""The admin: the jobs from settings with their state, the read-only history, the instances."""

from __future__ import annotations

from django_oncejob.admin.history import RunAdmin
from django_oncejob.admin.instances import InstanceAdmin
from django_oncejob.admin.jobs import JobStateAdmin

__all__ = ["RunAdmin", "InstanceAdmin", "JobStateAdmin"]
