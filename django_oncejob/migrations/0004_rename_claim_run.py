from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_oncejob", "0003_instance_expiry"),
    ]

    operations = [
        migrations.RenameModel("Claim", "Run"),
        migrations.AlterModelOptions(
            name="run",
            options={
                "ordering": ["-scheduled_for", "job"],
                "verbose_name": "run",
                "verbose_name_plural": "runs",
            },
        ),
        migrations.RenameIndex(
            model_name="run",
            new_name="oncejob_run_scheduled_idx",
            old_name="oncejob_claim_scheduled_idx",
        ),
        migrations.RenameIndex(
            model_name="run",
            new_name="oncejob_run_status_idx",
            old_name="oncejob_claim_status_idx",
        ),
        migrations.RemoveConstraint(
            model_name="run",
            name="oncejob_claim_one_per_occurrence",
        ),
        migrations.AddConstraint(
            model_name="run",
            constraint=models.UniqueConstraint(
                fields=("job", "scheduled_for"), name="oncejob_run_one_per_occurrence"
            ),
        ),
    ]
