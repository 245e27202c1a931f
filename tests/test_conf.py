"""The settings schema: one reader for conf, the checks and the job parser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from django_oncejob import cache
from django_oncejob.cache.base import CacheAdapter
from django_oncejob.cache.django_redis import DjangoRedisAdapter
from django_oncejob.cache.memcached import MemcachedAdapter
from django_oncejob.checks import check_settings
from django_oncejob.conf import SCHEMA, conf, get_config
from django_oncejob.jobs.parser import parse_job

ROOT = Path(__file__).resolve().parent.parent


def test_every_key_has_a_default_and_every_checked_key_an_id_and_a_hint() -> None:
    for setting in SCHEMA:
        if setting.valid is None:
            assert setting.name in ("CACHE", "JOBS")
            continue
        assert setting.id.startswith("E"), setting.name
        assert str(setting.message) and str(setting.hint), setting.name
        # The default itself passes the schema.
        assert setting.valid(setting.default), setting.name


@pytest.mark.parametrize("setting", [s for s in SCHEMA if s.valid], ids=lambda s: s.name)
def test_a_value_the_checks_reject_reads_as_its_default(setting: object) -> None:
    name = setting.name  # type: ignore[attr-defined]
    with override_settings(ONCEJOB={name: object()}):
        errors = check_settings()
        assert [e.id for e in errors] == [f"django_oncejob.{setting.id}"]  # type: ignore[attr-defined]
        assert get_config()[name] == setting.default  # type: ignore[attr-defined]


def test_the_config_is_read_once_until_a_setting_changes() -> None:
    with override_settings(ONCEJOB={"MAX_WORKERS": 3}):
        first = get_config()
        assert get_config() is first
        assert conf.MAX_WORKERS == 3
        with override_settings(ONCEJOB={"MAX_WORKERS": 4}):
            assert conf.MAX_WORKERS == 4
        assert conf.MAX_WORKERS == 3


def test_a_job_takes_the_project_defaults_from_conf() -> None:
    with override_settings(ONCEJOB={"MISFIRE_GRACE_TIME": 5, "TIMEZONE": "Asia/Shanghai"}):
        job, errors = parse_job("report", {"func": "tests.jobs.record", "cron": "0 21 * * *"})
    assert errors == []
    assert job is not None
    assert (job.misfire_grace_time, job.timezone) == (5, "Asia/Shanghai")


def test_a_bad_project_default_is_reported_once_not_for_every_job() -> None:
    jobs = {f"job-{n}": {"func": "tests.jobs.record", "cron": "0 21 * * *"} for n in range(3)}
    with override_settings(ONCEJOB={"TIMEZONE": "Mars/Olympus", "JOBS": jobs}):
        assert [e.id for e in check_settings()] == ["django_oncejob.E008"]


@pytest.mark.parametrize(
    ("backend", "adapter"),
    [
        ("django_redis.cache.RedisCache", DjangoRedisAdapter),
        ("django.core.cache.backends.memcached.PyMemcacheCache", MemcachedAdapter),
        ("tests.no.such.Backend", CacheAdapter),
    ],
)
def test_each_cache_backend_has_its_adapter(backend: str, adapter: type[CacheAdapter]) -> None:
    with override_settings(CACHES={"default": {"BACKEND": backend}}):
        assert type(cache.adapter("default")) is adapter


def test_claims_on_another_cache_never_import_django_redis(tmp_path: Path) -> None:
    settings = tmp_path / "db.py"
    settings.write_text(
        "from tests.settings import *\n"
        "CACHES = {'default': {'BACKEND': "
        "'django.core.cache.backends.db.DatabaseCache', 'LOCATION': 'oncejob_cache'}}\n"
    )
    script = (
        "import sys, django; django.setup()\n"
        "from django_oncejob.cache import claim, locks\n"
        "from django_oncejob.checks import check_settings\n"
        "check_settings()\n"
        "print(sorted(m for m in sys.modules if m.startswith('django_redis')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}", "DJANGO_SETTINGS_MODULE": "db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
