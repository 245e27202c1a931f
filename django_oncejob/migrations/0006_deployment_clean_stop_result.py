from typing import Any

import django.utils.timezone
from django.db import migrations, models

import django_oncejob.cache.deployment


def create_the_deployment(apps: Any, schema_editor: Any) -> None:
    """This database's deployment key, which every instance that uses it will read."""
    Deployment = apps.get_model("django_oncejob", "Deployment")
    Deployment.objects.using(schema_editor.connection.alias).get_or_create(
        pk=1, defaults={"key": django_oncejob.cache.deployment.new_key()}
    )


class Migration(migrations.Migration):
    dependencies = [
        ("django_oncejob", "0005_runrequest_one_waiting"),
    ]

    operations = [
        migrations.CreateModel(
            name="Deployment",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=32, unique=True, verbose_name="key")),
                (
                    "created_at",
                    models.DateTimeField(
                        default=django.utils.timezone.now, verbose_name="created at"
                    ),
                ),
            ],
            options={
                "verbose_name": "deployment",
                "verbose_name_plural": "deployments",
            },
        ),
        migrations.RunPython(create_the_deployment, migrations.RunPython.noop),
        migrations.AddField(
            model_name="instance",
            name="clean_stop",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "It stopped on SIGTERM or SIGINT and signed off, rather than going silent: "
                    "killed, or cut off from the database."
                ),
                verbose_name="stopped cleanly",
            ),
        ),
        migrations.AddField(
            model_name="run",
            name="result",
            field=models.TextField(
                blank=True,
                help_text="What the job returned, as repr() shows it; empty when it returned None.",
                verbose_name="result",
            ),
        ),
    ]
