"""The test settings with ``DEFAULT_AUTO_FIELD`` set, which must not change any migration."""

from __future__ import annotations

from tests.settings import *  # noqa: F403

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
