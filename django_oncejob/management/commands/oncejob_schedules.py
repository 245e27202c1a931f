from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError
from django.utils.translation import gettext, gettext_lazy

from django_oncejob.admin.overrides import in_force
from django_oncejob.fleet import schedules
from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.registry import get_jobs
from django_oncejob.jobs.versions import OVERRIDE, merged
from django_oncejob.management.base import TranslatedCommand, require_migrated

#: What an export says it is, so that an import can tell.
FORMAT = "django-oncejob schedules 1"


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Export the jobs' schedules overridden in the admin as JSON, or import such a file: "
        "each override is checked as settings are, then saved, in force on every instance at "
        "once a few seconds later."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=["export", "import"])
        parser.add_argument(
            "file",
            nargs="?",
            default="-",
            help=gettext("The JSON file; - (the default) for stdout or stdin."),
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help=gettext("With import, check every override and save none."),
        )

    def handle(self, *, action: str, file: str, dry_run: bool, **options: Any) -> None:
        require_migrated()
        if action == "export":
            self.export(file)
        else:
            self.load(file, dry_run)

    def export(self, file: str) -> None:
        book = in_force(get_jobs())
        overrides = {}
        for job_id in book:
            span = book.schedule(job_id).spans[-1]
            if span.source == OVERRIDE and span.version is not None:
                overrides[job_id] = {
                    "override": span.version.definition,
                    "by": span.version.created_by,
                    "note": span.version.note,
                }
        text = json.dumps({"format": FORMAT, "overrides": overrides}, indent=2, sort_keys=True)
        if file == "-":
            self.stdout.write(text)
        else:
            Path(file).write_text(text + "\n", encoding="utf-8")

    def load(self, file: str, dry_run: bool) -> None:
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, ValueError) as exc:
            raise CommandError(
                gettext("Could not read %(file)s: %(error)s") % {"file": file, "error": exc}
            ) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CommandError(
                gettext("%(file)s is not an export of oncejob_schedules.") % {"file": file}
            )
        jobs = get_jobs()
        book = in_force(jobs)
        problems = []
        for job_id, item in sorted(data.get("overrides", {}).items()):
            job = jobs.get(job_id)
            if job is None:
                problems.append(gettext("%(job)s: no such job here.") % {"job": repr(job_id)})
                continue
            if not job.overridable:
                problems.append(
                    gettext("%(job)s: its definition does not allow overrides.")
                    % {"job": repr(job_id)}
                )
                continue
            override = item.get("override") if isinstance(item, dict) else None
            if not isinstance(override, dict) or "func" in override or "task" in override:
                problems.append(gettext("%(job)s: not an override.") % {"job": repr(job_id)})
                continue
            _spec, errors = parse_job(
                job_id, merged(book.deployed_definition(job_id), override), where=repr(job_id)
            )
            problems += [f"{error.msg} {error.hint}" for error in errors]
        if problems:
            raise CommandError(
                gettext("Nothing was imported:") + "".join(f"\n  {p}" for p in problems)
            )
        count = 0
        for job_id, item in sorted(data.get("overrides", {}).items()):
            count += 1
            if not dry_run:
                note = item.get("note") or gettext("imported")
                schedules.change(
                    job_id,
                    OVERRIDE,
                    item["override"],
                    f"oncejob_schedules import ({item.get('by', '?')})",
                    note,
                )
        self.stdout.write(
            (
                gettext("%(count)d override(s) checked; none saved (--dry-run).")
                if dry_run
                else gettext(
                    "%(count)d override(s) imported: every instance switches to them in a few "
                    "seconds."
                )
            )
            % {"count": count}
        )
