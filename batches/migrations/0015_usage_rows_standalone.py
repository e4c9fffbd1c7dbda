"""Usage rows carry their batch's workspace, creation time and submitter, so that the usage pages
group them without joining the batches. Added empty, filled from the batches, then required."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_from_batches(apps, schema_editor):
    Batch = apps.get_model("batches", "Batch")
    BatchUsage = apps.get_model("batches", "BatchUsage")
    batch = Batch.objects.filter(pk=OuterRef("batch_id"))
    BatchUsage.objects.update(
        workspace_id=Subquery(batch.values("workspace_id")[:1]),
        created_at=Subquery(batch.values("created_at")[:1]),
        submitted_by_id=Subquery(batch.values("submitted_by_id")[:1]),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0014_result_by_custom_id"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="batchusage",
            name="workspace",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="batches.workspace",
            ),
        ),
        migrations.AddField(
            model_name="batchusage",
            name="created_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="batchusage",
            name="submitted_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(copy_from_batches, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="batchusage",
            name="workspace",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="batches.workspace",
            ),
        ),
        migrations.AlterField(
            model_name="batchusage",
            name="created_at",
            field=models.DateTimeField(),
        ),
        migrations.AddIndex(
            model_name="batchusage",
            index=models.Index(fields=["workspace", "created_at"], name="usage_by_time"),
        ),
    ]
