"""django.tasks backends for the hand-off tests, on django.tasks or the backport alike."""

from __future__ import annotations

import importlib
from typing import Any

from django_oncejob.handoff import tasks_module_name

DummyBackend: Any = importlib.import_module(f"{tasks_module_name()}.backends.dummy").DummyBackend


class BrokenBackend(DummyBackend):  # type: ignore[misc]
    """A queue that is down: every enqueue raises."""

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        raise ConnectionError("the queue is down")
