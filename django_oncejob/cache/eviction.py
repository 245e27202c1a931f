"""Asks the Redis behind the claim cache whether it may evict claim keys.

Claim keys carry a timeout, so every ``maxmemory-policy`` but ``noeviction``
can drop them when Redis runs out of memory: ``volatile-*`` picks among keys
with a timeout, ``allkeys-*`` among all keys.
"""

from __future__ import annotations

import redis
from django.core.cache import caches

from django_oncejob.cache import adapter


def eviction_warning(alias: str) -> str | None:
    """A warning for ``runjobs`` when the Redis of cache ``alias`` may evict claims, else ``None``.

    A server that refuses ``CONFIG GET`` or cannot be reached is reported too,
    since nothing can then be said about its policy. Caches that are not Redis
    give ``None``.
    """
    clients = adapter(alias).redis_clients(caches[alias])
    where = f"Redis of CACHES[{alias!r}]"
    for client in clients:
        try:
            policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
        except redis.ResponseError as exc:
            return (
                f"Could not ask the {where} for its maxmemory-policy: the server refused "
                f"CONFIG GET ({_sentence(exc)}). Make sure it is 'noeviction', or claim keys "
                "may be evicted when Redis runs out of memory."
            )
        except (redis.RedisError, OSError) as exc:
            return (
                f"Could not ask the {where} for its maxmemory-policy: {_sentence(exc)}. Claims "
                "fail until it answers; ONCEJOB['ON_CACHE_ERROR'] says what happens meanwhile."
            )
        if policy is None:
            return (
                f"The {where} did not report a maxmemory-policy. Make sure it is "
                "'noeviction', or claim keys may be evicted when it runs out of memory."
            )
        if policy != "noeviction":
            return (
                f"The {where} has maxmemory-policy {policy!r}: when it reaches "
                "maxmemory it may evict claim keys, which have a timeout, and an occurrence "
                "whose claim was evicted is then kept from running twice by the history table "
                "alone. Set maxmemory-policy to 'noeviction' (CONFIG SET maxmemory-policy "
                "noeviction, and in redis.conf)."
            )
    return None


def _sentence(exc: BaseException) -> str:
    """The error's text, without the full stop that redis-py sometimes ends it with."""
    return str(exc).rstrip(".")
