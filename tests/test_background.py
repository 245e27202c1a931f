"""The background threads' base survives whatever a round raises."""

from __future__ import annotations

import threading

import pytest
from django.db import InterfaceError, OperationalError

from django_oncejob.fleet.background import BackgroundThread
from tests.processes import wait_for


class Failing(BackgroundThread):
    """Raises each of ``errors`` in turn, then counts quiet rounds."""

    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__("test-periodic", "me:1", interval=0.01)
        self.errors = errors
        self.quiet = 0
        self.lock = threading.Lock()

    def work(self) -> None:
        with self.lock:
            if self.errors:
                raise self.errors.pop(0)
            self.quiet += 1


def test_a_background_thread_survives_any_exception(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[BaseException] = [
        InterfaceError("connection already closed"),
        OperationalError("server closed the connection unexpectedly"),
        RuntimeError("cannot schedule new futures after shutdown"),
        ValueError("anything at all"),
    ]
    thread = Failing(list(errors))
    thread.start()
    try:
        wait_for(lambda: thread.quiet >= 3, 5, "quiet rounds after the failures")
        assert thread.is_alive()
    finally:
        thread.stop()
    failures = [r for r in caplog.records if r.getMessage() == "A background round of me:1 failed."]
    assert [type(r.exc_info[1]) for r in failures if r.exc_info] == [type(e) for e in errors]
