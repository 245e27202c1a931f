"""Django's DatabaseCache as the claim cache: works, with warnings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.translation import gettext_lazy as _

from django_oncejob.cache.base import CacheAdapter
from django_oncejob.messages import interpolate


class DatabaseAdapter(CacheAdapter):
    def checks(self, alias: str, config: dict[str, Any]) -> list[checks.CheckMessage]:
        where = f"CACHES[{alias!r}]"
        return [
            *_check_database_cache(alias, where),
            checks.Warning(
                interpolate(
                    _(
                        "ONCEJOB['CACHE'] is %(alias)s, a DatabaseCache: its add() is not atomic "
                        "against an expired row of the same key, and culling past MAX_ENTRIES "
                        "deletes keys that have not expired, so a claim can fail to stop a second "
                        "instance."
                    ),
                    alias=repr(alias),
                ),
                hint=interpolate(
                    _(
                        # Translators: where is the cache's setting, e.g. CACHES['default'].
                        "The history table's unique (job, scheduled_for) still stops a second run. "
                        "Set %(where)s['OPTIONS']['MAX_ENTRIES'] above the number of claims alive "
                        "at once (one per occurrence for CLAIM_TIMEOUT seconds: the default 300 is "
                        "passed within hours by one per-minute job). For claims that hold on their "
                        "own, point ONCEJOB['CACHE'] at a Redis cache."
                    ),
                    where=where,
                ),
                obj=where,
                id="django_oncejob.W001",
            ),
        ]


def _check_database_cache(alias: str, where: str) -> list[checks.CheckMessage]:
    engine = str(settings.DATABASES.get("default", {}).get("ENGINE", ""))
    if "sqlite" not in engine:
        return []
    return [
        checks.Warning(
            interpolate(
                _(
                    "ONCEJOB['CACHE'] is %(alias)s, a DatabaseCache on SQLite: its add() answers "
                    "False, as if another instance held the claim, when SQLite says 'database is "
                    "locked', so with several instances an occurrence can run nowhere, and nothing "
                    "is logged."
                ),
                alias=repr(alias),
            ),
            hint=interpolate(
                _("Point ONCEJOB['CACHE'] at a Redis cache, or keep a single instance.")
            ),
            obj=where,
            id="django_oncejob.W008",
        )
    ]
