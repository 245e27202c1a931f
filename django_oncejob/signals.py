"""Signals sent around each occurrence this instance runs.

Every signal is sent with ``sender`` set to the job id and ``occurrence``, an
:class:`~django_oncejob.Occurrence`.
"""

from __future__ import annotations

from django.dispatch import Signal

#: This instance won the occurrence: the cache claim and the history row are its.
occurrence_claimed = Signal()
#: The job is about to be called, with :func:`~django_oncejob.current_occurrence` set.
occurrence_started = Signal()
#: The job returned. Extra argument: ``result``.
occurrence_succeeded = Signal()
#: The job raised. Extra arguments: ``exception``, and ``retrying``: whether the job tries
#: the occurrence again (``occurrence.attempt`` is the attempt that failed).
occurrence_failed = Signal()
#: The run went past the job's ``max_runtime`` and is recorded as timed out; sent once, by
#: the instance that recorded it (the one running it, or any other if that one died).
occurrence_timed_out = Signal()
#: This instance won nothing to run: ``reason`` is ``"fenced"`` (the history already holds
#: the occurrence), ``"cache-error"`` (the cache failed and ``ON_CACHE_ERROR`` is ``"skip"``),
#: ``"history-error"`` (neither the cache nor the database could fence it) or ``"locked"``
#: (a previous run of a job whose ``overlap`` is ``"skip"`` still holds the job's lock) or
#: ``"paused"``.
occurrence_skipped = Signal()

# Sent once across the fleet, by the instance that saw the change, with ``sender`` set to
# the job id and ``job``, its JobSpec.

#: The job failed after succeeding (or for the first time). Extra argument: ``failures``.
job_failing = Signal()
#: The job succeeded after failing. Extra argument: ``failures``, how many in a row it had.
job_recovered = Signal()
#: The job was paused by its ``pause_after_failures``. Extra argument: ``failures``.
job_paused = Signal()
