"""The supported Django and Python versions, each tested against the same Redis and database.

``nox -l`` lists the sessions. ``nox -r -t oldest newest`` runs the two that
``scripts/test`` runs; ``nox -r -s "tests(python='3.12', django='6.0')"`` runs one.
Arguments after ``--`` go to pytest.
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.4.15"
nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"
nox.options.sessions = ["tests"]

#: Each Django release with the Pythons it is tested on; the trove classifiers say the same.
MATRIX = {
    "4.2": ["3.11"],
    "5.2": ["3.11"],
    "6.0": ["3.12", "3.13"],
    "6.1": ["3.12", "3.13"],
}
TAGS = {("3.11", "4.2"): ["oldest"], ("3.13", "6.1"): ["newest"]}


@nox.session
@nox.parametrize(
    "python,django",
    [
        nox.param(python, django, tags=TAGS.get((python, django), []))
        for django, pythons in MATRIX.items()
        for python in pythons
    ],
)
def tests(session: nox.Session, django: str) -> None:
    """The test suite on one Django and Python."""
    session.install("-e", ".[test,dev]", f"django=={django}.*")
    # A django.tasks backend with a worker, for tests/test_handoff.py: django-tasks-db needs
    # Django 5.2+; on 4.2, django-tasks before 0.12 still has its own database backend.
    tasks_db = "django-tasks>=0.7,<0.12" if django == "4.2" else "django-tasks-db>=0.12"
    session.install(tasks_db, f"django=={django}.*")
    suffix = f"dj{django}_py{session.python}".replace(".", "")
    # Sessions may run at the same time: each gets its own test database and claim keys.
    session.env["ONCEJOB_TEST_DB_NAME"] = f"test_oncejob_{suffix}"
    session.env["ONCEJOB_TEST_PREFIX"] = f"oncejob-tests-{suffix}"
    for settings in ("tests.settings", "tests.settings_bigauto"):
        session.run(
            "python", "-m", "django", "makemigrations", "--check", "--dry-run",
            f"--settings={settings}",
        )  # fmt: skip
    # The long real-process tests of the scheduler's own logic ran in the main run; here
    # they would only add minutes. Arguments after -- can select them again: -m long.
    session.run(
        "python", "-m", "pytest", "-W", "error::DeprecationWarning", "-m", "not long",
        *session.posargs,
    )  # fmt: skip


@nox.session
def messages(session: nox.Session) -> None:
    """Update every django.po from the marked strings, and compile them (needs GNU gettext)."""
    session.install("-e", ".")
    session.chdir("django_oncejob")
    session.run("django-admin", "makemessages", "--all", "--add-location=file")
    session.run("django-admin", "compilemessages")
