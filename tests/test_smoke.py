from __future__ import annotations

from django.core.cache import caches


def test_redis_answers() -> None:
    assert caches["default"].add("smoke", 1, timeout=5) in (True, False)
