from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Ids are written in full ("django_oncejob.E001") or as a quoted code that is
# prefixed later ("E023"); requiring the quote keeps ruff codes in noqa comments out.
CODE_ID = re.compile(r"""(?:django_oncejob\.|["'])([EW]\d{3})\b""")
DOCS_ID = re.compile(r"django_oncejob\.([EW]\d{3})\b")


def code_ids() -> set[str]:
    return {
        code
        for path in (ROOT / "django_oncejob").rglob("*.py")
        for code in CODE_ID.findall(path.read_text())
    }


def docs_ids() -> Counter[str]:
    return Counter(DOCS_ID.findall((ROOT / "docs" / "checks.rst").read_text()))


def test_code_ids_are_found() -> None:
    # Guards the pattern: both the full and the short spelling must be picked up.
    assert {"E001", "E009", "E013", "E020", "E023", "E038"} <= code_ids()


def test_every_check_id_is_documented_exactly_once() -> None:
    documented = docs_ids()
    ids = sorted(code_ids())
    assert {code: documented[code] for code in ids} == dict.fromkeys(ids, 1)


def test_every_documented_id_exists() -> None:
    assert set(docs_ids()) - code_ids() == set()


def test_documented_ids_are_in_order() -> None:
    listed = DOCS_ID.findall((ROOT / "docs" / "checks.rst").read_text())
    assert listed == sorted(listed)


SETTING = re.compile(r"^``(\w+)``\n~+\n(.*?)(?=^``\w+``\n~+\n|^\S.*\n-+\n|\Z)", re.M | re.S)


def documented_settings() -> dict[str, dict[str, str]]:
    text = (ROOT / "docs" / "settings.rst").read_text()
    settings_part, jobs_part = re.split(r"^Job keys\n-+\n", text, flags=re.M)
    return {
        "settings": dict(SETTING.findall(settings_part)),
        "jobs": dict(SETTING.findall(jobs_part)),
    }


def test_every_setting_is_documented_with_its_type() -> None:
    from django_oncejob.conf import DEFAULTS

    documented = documented_settings()["settings"]
    assert sorted(documented) == sorted(DEFAULTS)
    assert [key for key, body in documented.items() if ":Type:" not in body] == []


DEFAULT = re.compile(r"^:Default: ``(.+?)``", re.M)


def test_every_setting_is_documented_with_the_schemas_default_and_check_id() -> None:
    from django_oncejob.conf import SCHEMA

    documented = documented_settings()["settings"]
    checks = (ROOT / "docs" / "checks.rst").read_text()
    for setting in SCHEMA:
        [default] = DEFAULT.findall(documented[setting.name])
        assert ast.literal_eval(default) == setting.default, setting.name
        if setting.id:
            # The checks table names the setting in the row of its id.
            row = checks.split(f"``django_oncejob.{setting.id}``", 1)[1].split("   * - ", 1)[0]
            assert f"``{setting.name}``" in row, (setting.name, row)


def test_every_job_key_is_documented_with_its_type() -> None:
    from django_oncejob.jobs.parser import JOB_KEYS

    documented = documented_settings()["jobs"]
    assert sorted(documented) == sorted(JOB_KEYS)
    assert [key for key, body in documented.items() if ":Type:" not in body] == []


def test_the_layout_lists_every_module_of_the_package() -> None:
    text = (ROOT / "docs" / "internals.rst").read_text()
    tree = text.split(".. code-block:: text", 1)[1].split("\n\n", 2)[1]
    listed, folders = set(), []
    for line in tree.splitlines()[1:]:
        name = line.split()[0]
        depth = (len(line) - len(line.lstrip())) // 2 - 2  # below "django_oncejob/"
        del folders[depth:]
        if name.endswith("/"):
            folders.append(name)
        else:
            listed.add("".join(folders) + name)
    package = ROOT / "django_oncejob"
    modules = {
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "migrations" not in path.parts
        # Not the packages that only say what they hold.
        and not (path.name == "__init__.py" and len(ast.parse(path.read_text()).body) < 2)
    }
    assert sorted(listed) == sorted(modules - {"__init__.py", "apps.py", "admin/__init__.py"})
