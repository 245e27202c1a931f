"""What the package's management commands share."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections, router
from django.db.migrations.loader import MigrationLoader
from django.utils.functional import Promise
from django.utils.translation import gettext


class TranslatedCommand(BaseCommand):
    """A command whose ``help`` is a lazy translation.

    argparse formats the description with ``str`` methods, so the parser gets the help
    as text, in the language active when the parser is built.
    """

    help: str | Promise = ""  # type: ignore[assignment]

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        if parser.description is not None:
            parser.description = str(parser.description)
        return parser


def require_migrated() -> None:
    """Raise :class:`CommandError` if the history's database lacks a migration of ours.

    An instance that starts before ``migrate`` has run (a container up before the
    migrate step finished) would otherwise run jobs with no history to fence into.
    A database that does not answer is let through, since nothing can be said of
    it: the instance then works on the cache claim alone until it answers.
    """
    from django_oncejob.models import Run

    alias = router.db_for_write(Run)
    try:
        loader = MigrationLoader(connections[alias], ignore_no_migrations=True)
    except DatabaseError:
        return
    missing = sorted(
        name
        for app, name in loader.graph.nodes
        if app == Run._meta.app_label and (app, name) not in loader.applied_migrations
    )
    if missing:
        raise CommandError(
            gettext(
                "The database %(alias)s is missing django_oncejob's migrations (%(missing)s): "
                "run manage.py migrate first. Nothing was started."
            )
            % {"alias": repr(alias), "missing": ", ".join(missing)}
        )
