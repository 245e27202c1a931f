"""The translations: complete, compiled, and used.

To update them after changing a marked string: ``nox -s messages``, translate what it
left empty in ``django.po``, then run ``nox -s messages`` again to compile.
"""

from __future__ import annotations

import gettext
import os
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib import admin
from django.core.management import CommandError, call_command, load_command_class
from django.test import override_settings
from django.utils import translation

from django_oncejob.admin import RunAdmin
from django_oncejob.checks import check_settings
from django_oncejob.jobs import registry
from django_oncejob.models import Run

PACKAGE = Path(__file__).resolve().parent.parent / "django_oncejob"
LOCALES = sorted((PACKAGE / "locale").glob("*/LC_MESSAGES/django.po"))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: install GNU gettext (apt-get install gettext).")
    return path


def catalog(mo: Path) -> dict[object, str]:
    with mo.open("rb") as file:
        return dict(gettext.GNUTranslations(file)._catalog)  # type: ignore[attr-defined]


def keys(entries: dict[object, str]) -> set[str]:
    """The msgids of a catalog, whose plural entries are keyed ``(msgid, index)``."""
    return {str(key[0] if isinstance(key, tuple) else key) for key in entries} - {""}


def test_there_are_translations() -> None:
    assert [po.parent.parent.name for po in LOCALES] == ["zh_Hans"]


@pytest.mark.parametrize("po", LOCALES, ids=lambda po: po.parent.parent.name)
def test_mo_is_compiled_from_po(po: Path, tmp_path: Path) -> None:
    # The .mo is committed, so that installing the package needs no gettext; it must
    # say what the .po says (compared as catalogs: msgfmt versions differ in bytes).
    assert catalog(po.with_suffix(".mo")) == compile_po(po, tmp_path / "django.mo", "--check")


def compile_po(po: Path, mo: Path, *options: str) -> dict[object, str]:
    subprocess.run(
        [tool("msgfmt"), *options, "-o", str(mo), str(po)],
        check=True,
        capture_output=True,
    )
    return catalog(mo)


def msgids(po: Path, tmp_path: Path) -> set[str]:
    """Every msgid of ``po``, translated or not: msgen fills each translation with its msgid."""
    english = tmp_path / f"{po.stem}-en.po"
    subprocess.run([tool("msgen"), "-o", str(english), str(po)], check=True, capture_output=True)
    return keys(compile_po(english, english.with_suffix(".mo"), "--use-fuzzy"))


@pytest.mark.parametrize("po", LOCALES, ids=lambda po: po.parent.parent.name)
def test_po_translates_every_marked_string(po: Path, tmp_path: Path) -> None:
    copy = tmp_path / "django_oncejob"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("locale", "__pycache__"))
    (copy / "locale").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    locale = po.parent.parent.name
    subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", locale],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
    )
    marked = msgids(copy / "locale" / locale / "LC_MESSAGES" / "django.po", tmp_path)
    translated = keys(compile_po(po, tmp_path / "django.mo", "--check"))
    assert sorted(marked - translated) == [], "untranslated or fuzzy: see nox -s messages"
    assert sorted(msgids(po, tmp_path) - marked) == [], "no longer in the code"


def test_models_admin_and_app_speak_chinese() -> None:
    with translation.override("zh-hans"):
        assert str(Run._meta.verbose_name) == "运行记录"
        assert str(Run._meta.get_field("scheduled_for").verbose_name) == "计划时间"
        assert str(Run.Status.SUCCEEDED.label) == "成功"
        assert str(RunAdmin.duration.short_description) == "耗时"  # type: ignore[attr-defined]
        assert str(apps.get_app_config("django_oncejob").verbose_name) == "定时任务"
        model_admin = admin.site._registry[Run]
        assert str(admin.utils.label_for_field("lateness", Run, model_admin)) == "延迟"
    assert str(Run._meta.verbose_name) == "run"


def test_check_messages_speak_chinese() -> None:
    broken = {
        "CLAIM_TIMEOUT": 0,
        "JOBS": {"report": {"func": "tests.jobs.record", "cron": "0 21 * *"}},
    }
    with override_settings(ONCEJOB=broken):
        errors = {error.id: error for error in check_settings()}
        with translation.override("zh-hans"):
            chinese = {key: (str(error.msg), str(error.hint)) for key, error in errors.items()}
        english = {key: (str(error.msg), str(error.hint)) for key, error in errors.items()}
    assert sorted(errors) == ["django_oncejob.E005", "django_oncejob.E029"]
    assert chinese["django_oncejob.E005"] == (
        "ONCEJOB['CLAIM_TIMEOUT'] 必须是 >= 1 的整数秒数，当前为 0。",
        "认领键的存活时间必须长于任何实例还可能运行这次触发的时间；默认值为 86400（一天）。",
    )
    # A job's message, with the trigger's own error and hint inside it.
    assert chinese["django_oncejob.E029"] == (
        "ONCEJOB['JOBS']['report']['cron']：cron 字符串有 5 个字段（分 时 日 月 星期），"
        "但 '0 21 * *' 中有 4 个。",
        "例如写成 '0 21 * * *'；需要精确到秒时，使用 {'second': '*'} 这样的 dict。",
    )
    # The jobs are parsed once for every language: each message reads in the active one.
    assert english["django_oncejob.E029"][0] == (
        "ONCEJOB['JOBS']['report']['cron']: a cron string has 5 fields "
        "(minute hour day month day-of-week), got 4 in '0 21 * *'."
    )


@pytest.mark.parametrize(
    ("cron", "chinese"),
    [
        ("0 24 * * *", "无效的 cron 字符串 '0 24 * * *'：时 '24' 无效：可取值为 0-23"),
        ({"minute": "0-60"}, "无效的 cron 字段 {'minute': '0-60'}：分 '0-60' 无效：可取值为 0-59"),
        ("0 0 * * funday", "星期 'funday' 无效：可取值为 0-7（从星期日起）或 sun-sat"),
    ],
)
def test_a_bad_cron_field_is_named_in_chinese_not_in_apschedulers_english(
    cron: object, chinese: str
) -> None:
    with override_settings(
        ONCEJOB={"JOBS": {"report": {"func": "tests.jobs.record", "cron": cron}}}
    ):
        [error] = check_settings()
        with translation.override("zh-hans"):
            message = str(error.msg)
    assert error.id == "django_oncejob.E029"
    assert chinese in message
    assert not any(word in message for word in ("Error", "value", "higher", "Invalid"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("definition", "chinese"),
    [
        ({"cron": "0 21 * * *"}, "每天 21:00（UTC）"),
        ({"cron": {"second": "*/20"}}, "每 20 秒（UTC）"),
        ({"cron": "*/5 9-17 * * *"}, "cron：时 9-17，分 */5，秒 0（UTC）"),
        ({"interval": {"minutes": 90}}, "每 1 小时 30 分钟"),
        ({"at": "2026-12-01T09:00:00+08:00"}, "于 2026-12-01 09:00:00+08:00 运行一次"),
    ],
)
def test_schedules_read_in_chinese(definition: dict[str, object], chinese: str) -> None:
    with override_settings(
        ONCEJOB={"JOBS": {"report": {"func": "tests.jobs.record", **definition}}}
    ):
        job = registry.get_jobs()["report"]
        with translation.override("zh-hans"):
            assert job.trigger_text == chinese
            out = StringIO()
            call_command("runjobs", "--list", stdout=out)
            assert f"report: {chinese}" in out.getvalue()


def test_one_parse_of_the_jobs_serves_every_language() -> None:
    broken = {"JOBS": {"report": {"func": "tests.jobs.record", "cron": "0 21 * *"}}}
    with override_settings(ONCEJOB=broken):
        with translation.override("zh-hans"):
            first = registry.parsed_jobs()
        assert registry.parsed_jobs() is first
        [error] = first[1]
        assert "cron string has 5 fields" in str(error.msg)
        with translation.override("zh-hans"):
            assert "cron 字符串有 5 个字段" in str(error.msg)


def flat(text: str) -> str:
    """``text`` without whitespace, which argparse rewraps to the terminal's width."""
    return "".join(text.split())


def test_command_help_speaks_chinese() -> None:
    with translation.override("zh-hans"):
        command = load_command_class("django_oncejob", "runjobs")
        text = flat(command.create_parser("manage.py", "runjobs").format_help())
    assert flat("在本实例上运行 settings.ONCEJOB 中的任务，直到收到 SIGTERM 或 SIGINT。") in text
    assert flat("输出每个任务、它的触发器和接下来的触发时间，然后退出。") in text
    english = load_command_class("django_oncejob", "runjobs")
    assert "Print each job" in english.create_parser("manage.py", "runjobs").format_help()


def test_command_errors_speak_chinese() -> None:
    with translation.override("zh-hans"), pytest.raises(CommandError) as error:
        call_command("oncejob_prune", "--days", "0")
    assert str(error.value) == "--days 必须大于等于 1，当前为 0。"
