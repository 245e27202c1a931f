"""Run scheduled jobs on every Django instance; each occurrence runs on one instance only."""

from __future__ import annotations

from django_oncejob.jobs.decorator import job
from django_oncejob.occurrence import Occurrence, current_occurrence

__all__ = ["Occurrence", "current_occurrence", "job"]
__version__ = "0.1.0"
