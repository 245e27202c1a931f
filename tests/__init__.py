from __future__ import annotations

from importlib.util import find_spec

# As a project does, so that runjobs sends tasks with this app (tests/test_handoff.py).
if find_spec("celery") is not None:
    from tests.celery_app import app as celery_app

    __all__ = ["celery_app"]
