"""The results explorer's text search: ResultText, and on PostgreSQL a trigram index of it.

pg_trgm is a trusted extension: a database owner may create it. Its GIN index answers ILIKE
'%text%' without reading every result. SQLite has no such index; its search reads the batch.
(Also records the outbound-address validators of the workspace URLs, which carried none.)
"""

import batches.outbound
import django.db.models.deletion
from django.db import migrations, models


def create_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS resulttext_trgm ON batches_resulttext "
        "USING gin (haystack gin_trgm_ops)"
    )


def drop_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS resulttext_trgm")


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0008_ingestion_checkpoints_and_actions"),
    ]

    operations = [
        migrations.AddField(
            model_name="batch",
            name="search_indexed_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="workspace",
            name="base_url",
            field=models.URLField(
                help_text="https://api.anthropic.com for the Anthropic API.",
                max_length=300,
                validators=[batches.outbound.validate_outbound_url],
                verbose_name="API base URL",
            ),
        ),
        migrations.AlterField(
            model_name="workspace",
            name="notify_webhook_url",
            field=models.URLField(
                blank=True,
                help_text="POST a JSON notice here when any batch ends.",
                max_length=500,
                validators=[batches.outbound.validate_outbound_url],
            ),
        ),
        migrations.CreateModel(
            name="ResultText",
            fields=[
                ("result_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("haystack", models.TextField()),
                (
                    "batch",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="batches.batch",
                    ),
                ),
            ],
        ),
        migrations.RunPython(create_trigram_index, drop_trigram_index, elidable=False),
    ]
