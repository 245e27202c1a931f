from typing import Any

from django.db import migrations, models


def keep_the_first_waiting_request(apps: Any, schema_editor: Any) -> None:
    """Two waiting requests for one job asked for one run: the later ones go."""
    RunRequest = apps.get_model("django_oncejob", "RunRequest")
    waiting = RunRequest.objects.using(schema_editor.connection.alias).filter(taken_at__isnull=True)
    seen = set()
    for request in waiting.order_by("requested_at", "pk"):
        if request.job in seen:
            request.delete()
        seen.add(request.job)


class Migration(migrations.Migration):
    dependencies = [
        ("django_oncejob", "0004_rename_claim_run"),
    ]

    operations = [
        migrations.RunPython(keep_the_first_waiting_request, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="runrequest",
            constraint=models.UniqueConstraint(
                condition=models.Q(("taken_at__isnull", True)),
                fields=("job",),
                name="oncejob_runrequest_one_waiting",
            ),
        ),
    ]
