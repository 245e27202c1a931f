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
#: The job raised. Extra argument: ``exception``.
occurrence_failed = Signal()
#: This instance won nothing to run: ``reason`` is ``"fenced"`` (the history already holds
#: the occurrence), ``"cache-error"`` (the cache failed and ``ON_CACHE_ERROR`` is ``"skip"``),
#: ``"history-error"`` (neither the cache nor the database could fence it) or ``"locked"``
#: (a previous run of a job with ``lock_timeout`` still holds the job's lock) or ``"paused"``.
occurrence_skipped = Signal()
